"""Networks: shared blocks and network families (importing this module fills the registry)."""

from __future__ import annotations

from .nets import UltraLightUNet, UXNet

__all__ = ["UltraLightUNet", "UXNet"]
