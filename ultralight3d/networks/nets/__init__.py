"""Network families; importing this module registers every variant."""

from __future__ import annotations

from .ultralight_unet import UltraLightUNet
from .uxnet import UXNet

__all__ = ["UltraLightUNet", "UXNet"]
