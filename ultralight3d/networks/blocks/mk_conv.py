"""Multi-kernel convolution blocks of UltraLightUNet / MK-UNet: MKDC and MKIR (2D and 3D from one class).

Reference: the UltraLightUNet paper (ICLR 2025 submission) and the same authors' MK-UNet; module semantics as in
``../shared/spec/architectures.md`` §1.3 (our own implementation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

from .init import normal_init_

__all__ = ["channel_shuffle", "MultiKernelDepthwiseConv", "MultiKernelInvertedResidual"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Shuffle channels across ``groups`` for any number of spatial axes.

    Args:
        x: (B, C, *spatial) with C divisible by ``groups``.
        groups: number of groups; ``groups == C`` or ``groups == 1`` leaves ``x`` unchanged.

    Returns:
        (B, C, *spatial): channels reordered as (groups, C/groups) -> (C/groups, groups).
    """
    shape = x.shape
    c = shape[1]
    if groups <= 1 or c // groups == 1:
        return x
    spatial = list(shape[2:])
    x = x.reshape([shape[0], groups, c // groups] + spatial).transpose(1, 2)
    return x.reshape([shape[0], c] + spatial)


def _conv_norm_act(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    groups: int,
    norm: str | tuple | None,
    act: str | tuple | None,
    bias: bool = False,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        Conv[Conv.CONV, spatial_dims](
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=bias
        )
    ]
    if norm is not None:
        layers.append(get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=out_channels))
    if act is not None:
        layers.append(get_act_layer(name=act))
    return nn.Sequential(*layers)


class MultiKernelDepthwiseConv(nn.Module):
    """MKDC: parallel depthwise convolutions with different kernel sizes (k, k[, k]) -> norm -> act.

    Args:
        spatial_dims: 2 or 3.
        channels: input = output channels of every branch.
        kernel_sizes: one branch per kernel size. Defaults to (1, 3, 5).
        norm: norm after each depthwise conv; ``None`` drops it (one of the settings that reproduce the paper's
            parameter counts, see :class:`~ultralight3d.networks.nets.ultralight_unet.UltraLightUNet`).
        act: activation of each branch. Defaults to ReLU6.
        dw_parallel: True: every branch sees the block input; False: each branch's output is added to the next
            branch's input (sequential mode of the reference code).

    Shapes:
        forward(x: (B, C, *S)) -> list of ``len(kernel_sizes)`` tensors (B, C, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu6",
        dw_parallel: bool = True,
    ) -> None:
        super().__init__()
        self.dw_parallel = dw_parallel
        self.branches = nn.ModuleList(
            _conv_norm_act(spatial_dims, channels, channels, int(k), channels, norm, act) for k in kernel_sizes
        )
        normal_init_(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for branch in self.branches:
            out = branch(x)
            outputs.append(out)
            if not self.dw_parallel:
                x = x + out
        return outputs


class MultiKernelInvertedResidual(nn.Module):
    """MKIR: 1x1 expand -> MKDC -> sum (or concat) -> channel shuffle -> 1x1 project, plus a residual path.

    ``MKIR(x) = BN(PWC2(Shuffle(sum_k MKDC_k(ReLU6(BN(PWC1(x))))))) + skip(x)``, where ``skip`` is the identity when
    ``in_channels == out_channels`` and a bias-free 1x1 conv otherwise. There is no activation after the sum.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        expansion_factor: expanded channels = ``int(in_channels * expansion_factor)``. Defaults to 2.
        kernel_sizes: MKDC kernel sizes. Defaults to (1, 3, 5).
        add: sum the MKDC branches (True, used everywhere) or concatenate them.
        dw_parallel: see :class:`MultiKernelDepthwiseConv`.
        norm: norm after the pointwise convs (and, unless ``mkdc_norm`` is False, in the MKDC branches).
        act: activation after the expansion and in the MKDC branches. Defaults to ReLU6.
        mkdc_norm: keep the norm inside the MKDC branches (faithful port of the official 2D code).

    Shapes:
        forward(x: (B, in_channels, *S)) -> (B, out_channels, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        expansion_factor: float = 2,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        add: bool = True,
        dw_parallel: bool = True,
        norm: str | tuple = "batch",
        act: str | tuple = "relu6",
        mkdc_norm: bool = True,
    ) -> None:
        super().__init__()
        ex_c = int(in_channels * expansion_factor)
        self.add = add
        self.expand = _conv_norm_act(spatial_dims, in_channels, ex_c, 1, 1, norm, act)
        self.mkdc = MultiKernelDepthwiseConv(
            spatial_dims, ex_c, kernel_sizes, norm=norm if mkdc_norm else None, act=act, dw_parallel=dw_parallel
        )
        combined = ex_c if add else ex_c * len(kernel_sizes)
        self.shuffle_groups = _gcd(combined, out_channels)
        self.project = _conv_norm_act(spatial_dims, combined, out_channels, 1, 1, norm, None)
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else Conv[Conv.CONV, spatial_dims](in_channels, out_channels, 1, bias=False)
        )
        normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = self.mkdc(self.expand(x))
        if self.add:
            out = branches[0]
            for b in branches[1:]:
                out = out + b
        else:
            out = torch.cat(branches, dim=1)
        out = channel_shuffle(out, self.shuffle_groups)
        return self.skip(x) + self.project(out)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
