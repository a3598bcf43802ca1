"""Network families; importing this module registers every variant."""

from __future__ import annotations

from .egeunet import EGEUNet
from .segresnet import SegResNetBaseline
from .ultralight_unet import UltraLightUNet
from .uxnet import UXNet

__all__ = ["EGEUNet", "SegResNetBaseline", "UltraLightUNet", "UXNet"]
