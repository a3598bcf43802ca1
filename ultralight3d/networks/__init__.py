"""Networks: shared blocks and network families (importing this module fills the registry)."""

from __future__ import annotations

from .nets import EGEUNet, UltraLightUNet, UXNet

__all__ = ["EGEUNet", "UltraLightUNet", "UXNet"]
