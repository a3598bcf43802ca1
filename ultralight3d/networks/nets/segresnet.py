"""MONAI's SegResNet as a registered baseline, so it trains and predicts through the same bundles and CLI.

SegResNet (Myronenko 2018, MONAI :class:`monai.networks.nets.SegResNet`) is the standard dense baseline of MONAI's
model zoo. ``segresnet`` is MONAI's default configuration (8 initial filters, blocks (1, 2, 2, 4) down and (1, 1, 1)
up, GroupNorm(8)): with GroupNorm of 8 groups, 8 filters is also its smallest width. Only the input check of the
other families is added (one clear ``ValueError``); the layers and the state-dict keys are MONAI's.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import SegResNet

from ...registry import ModelCfg, register_model
from ..layers.checks import check_input

__all__ = ["SegResNetBaseline", "VARIANTS"]

#: variant table (MONAI's defaults; ``init_filters`` must be a multiple of the 8 GroupNorm groups).
VARIANTS: dict[str, dict[str, Any]] = {
    "8": {"init_filters": 8, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)},
}


class SegResNetBaseline(SegResNet):
    """MONAI SegResNet with the input check of the ultralight3d networks.

    Args:
        spatial_dims: 2 or 3. Defaults to 3.
        in_channels: input channels. Defaults to 1.
        out_channels: output classes (logits). Defaults to 2.
        kwargs: any other :class:`monai.networks.nets.SegResNet` argument (``init_filters``, ``blocks_down``...).

    Shapes: input (B, in_channels, *S) with every size a multiple of 2 ** (len(blocks_down) - 1); output
    (B, out_channels, *S).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2, **kwargs: Any) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)
        self.divisor = 2 ** (len(self.blocks_down) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "SegResNet", self.spatial_dims, self.in_channels, self.divisor)
        # MONAI's SegResNet.forward, spelled out (TorchScript cannot call super().forward)
        x, down_x = self.encode(x)
        down_x.reverse()
        return self.decode(x, down_x)


@register_model(ModelCfg(family="segresnet", variant="8", divisor=8))
def segresnet(**kwargs: Any) -> SegResNetBaseline:
    """MONAI SegResNet, its default (and smallest GroupNorm-compatible) width: 8 initial filters."""
    args: dict[str, Any] = dict(VARIANTS["8"])
    args.update(kwargs)
    return SegResNetBaseline(**args)
