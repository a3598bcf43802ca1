"""Weight initialisation shared by the UltraLightUNet blocks."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["normal_init_"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm)


def normal_init_(module: nn.Module, std: float = 0.02) -> None:
    """The official MK-UNet scheme 'normal': conv weights ~ N(0, std), conv bias 0, norm weight 1, norm bias 0.

    Applied to every sub-module of ``module`` (2D and 3D layers alike).
    """
    for m in module.modules():
        if isinstance(m, _CONV):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORM) and getattr(m, "weight", None) is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
