"""Convolution blocks shared by the UltraLightUNet blocks: conv -> norm -> act with an inference-time fused form."""

from __future__ import annotations

import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

from ..layers.fuse import FusableModule, FusedConvNormAct

__all__ = ["ConvNormAct"]


class ConvNormAct(FusableModule, nn.Sequential):
    """conv -> [norm] -> [act] as an ``nn.Sequential`` (children ``0``, ``1``, ``2``: state-dict keys as for a plain
    Sequential), built with MONAI's layer factories.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel edge; padding ``kernel_size // 2`` keeps the size.
        groups: convolution groups.
        norm: MONAI norm name or (name, kwargs); None: no norm.
        act: MONAI activation name or (name, kwargs); None: no activation.
        bias: convolution bias.

    Shapes:
        forward(x: (B, in_channels, *S)) -> (B, out_channels, *S).

    Examples::

        >>> block = ConvNormAct(3, 8, 16, 3, norm="batch", act="relu6").eval()
        >>> fused = block.fuse()  # FusedConvNormAct: batch norm folded, ReLU6 in place under torch.no_grad
        >>> x = torch.randn(1, 8, 32, 32, 32)
        >>> torch.allclose(block(x), fused(x), atol=1e-5)
        True
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        groups: int = 1,
        norm: str | tuple | None = None,
        act: str | tuple | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.append(
            Conv[Conv.CONV, spatial_dims](
                in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=bias
            )
        )
        self.has_norm = norm is not None
        self.has_act = act is not None
        if norm is not None:
            self.append(get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=out_channels))
        if act is not None:
            self.append(get_act_layer(name=act))

    def parts(self) -> tuple[nn.Module, nn.Module | None, nn.Module | None]:
        """(conv, norm or None, act or None)."""
        mods = list(self)
        norm = mods[1] if self.has_norm else None
        act = mods[-1] if self.has_act else None
        return mods[0], norm, act

    def fuse(self, **switches: bool) -> FusedConvNormAct:
        """A :class:`FusedConvNormAct` computing the same function (``self`` is left unchanged)."""
        conv, norm, act = self.parts()
        return FusedConvNormAct(conv, norm, act, **switches)
