"""Attention blocks of UltraLightUNet: channel attention, spatial attention and the grouped attention gate.

2D and 3D from one class (``spatial_dims`` first); semantics as in ``../shared/spec/architectures.md`` §1.3.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer

from ..layers.fuse import FusableModule, InplaceAct, fuse_children, fuse_switches, maybe_inplace_add
from .conv import ConvNormAct
from .init import normal_init_

__all__ = ["ChannelAttention", "SpatialAttention", "GroupedAttentionGate"]


class ChannelAttention(nn.Module):
    """Channel attention map ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with a shared bias-free 1x1 MLP.

    Args:
        spatial_dims: 2 or 3.
        channels: input channels C.
        ratio: reduction ratio, capped at C (so the hidden width is at least 1).
        act: hidden activation. Defaults to ReLU.

    Shapes:
        forward(x: (B, C, *S)) -> attention map (B, C, 1, ...); the caller multiplies it with ``x``.
    """

    def __init__(self, spatial_dims: int, channels: int, ratio: int = 16, act: str | tuple = "relu") -> None:
        super().__init__()
        ratio = min(ratio, channels)
        hidden = channels // ratio
        self.avg_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.max_pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        conv = Conv[Conv.CONV, spatial_dims]
        self.mlp = nn.Sequential(
            conv(channels, hidden, 1, bias=False), get_act_layer(act), conv(hidden, channels, 1, bias=False)
        )
        normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(self.avg_pool(x)) + self.mlp(self.max_pool(x)))


class SpatialAttention(nn.Module):
    """Spatial attention map ``sigmoid(conv_k([mean_c(x), max_c(x)]))`` (2 -> 1 channels, no bias).

    Args:
        spatial_dims: 2 or 3.
        kernel_size: 3, 7 or 11. Defaults to 7.

    Shapes:
        forward(x: (B, C, *S)) -> attention map (B, 1, *S).
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size not in (3, 7, 11):
            raise ValueError(f"SpatialAttention kernel_size must be 3, 7 or 11, got {kernel_size}")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class GroupedAttentionGate(FusableModule):
    """GAG: ``x * sigmoid(BN(conv1x1(act(BN(gconv_k(g)) + BN(gconv_k(x))))))``.

    Args:
        spatial_dims: 2 or 3.
        gate_channels: channels of the gating (decoder) feature ``g``.
        skip_channels: channels of the skip (encoder) feature ``x``.
        inter_channels: channels of the intermediate maps.
        kernel_size: kernel of the grouped convs (3 in UltraLightUNet); 1 forces ``groups=1``.
        groups: groups of the grouped convs.
        norm: norm after each conv. Defaults to batch norm.
        act: activation after the sum. Defaults to ReLU.

    Shapes:
        forward(g: (B, gate_channels, *S), x: (B, skip_channels, *S)) -> (B, skip_channels, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        gate_channels: int,
        skip_channels: int,
        inter_channels: int,
        kernel_size: int = 3,
        groups: int = 1,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if kernel_size == 1:
            groups = 1
        self.inplace = False  # set by fuse(fuse_act=True): the sum of the two branches runs in place
        self.w_g = ConvNormAct(spatial_dims, gate_channels, inter_channels, kernel_size, groups, norm, bias=True)
        self.w_x = ConvNormAct(spatial_dims, skip_channels, inter_channels, kernel_size, groups, norm, bias=True)
        self.psi = ConvNormAct(spatial_dims, inter_channels, 1, 1, 1, norm, "sigmoid", bias=True)
        self.act = get_act_layer(act)
        normal_init_(self)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(self.act(maybe_inplace_add(self.w_g(g), self.w_x(x), self.inplace)))

    def fuse(self, **switches: bool) -> GroupedAttentionGate:
        """Fuse in place (eval only afterwards): the three conv -> norm (-> sigmoid) become
        :class:`FusedConvNormAct` (batch norm folded); with ``fuse_act`` the branch sum and the activation run in
        place (while autograd is off).

        Returns:
            ``self``.
        """
        if self.fused:
            return self
        sw = fuse_switches(**switches)
        fuse_children(self, **sw)
        if sw["fuse_act"]:
            self.act = InplaceAct(self.act)
        self.inplace = sw["fuse_act"]
        self.fused = True
        return self.eval()
