"""Multi-kernel convolution blocks of UltraLightUNet / MK-UNet: MKDC and MKIR (2D and 3D from one class).

Reference: the UltraLightUNet paper (ICLR 2025 submission) and the same authors' MK-UNet; module semantics as in
``../shared/spec/architectures.md`` §1.3 (our own implementation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv

from ..layers.fuse import (
    FusableModule,
    FusedConvNormAct,
    fuse_children,
    fuse_switches,
    is_channels_last,
    maybe_inplace_add,
    pointwise_linear,
)
from .conv import ConvNormAct
from .init import normal_init_

__all__ = ["channel_shuffle", "MultiKernelDepthwiseConv", "MultiKernelInvertedResidual"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


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


class MultiKernelDepthwiseConv(FusableModule):
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
        forward(x: (B, C, *S)) -> list of ``len(kernel_sizes)`` tensors (B, C, *S);
        forward_sum(x: (B, C, *S)) -> their sum (B, C, *S).
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
        self.inplace = False  # set by fuse(fuse_act=True): the branch sum accumulates in place
        self.branches = nn.ModuleList(
            ConvNormAct(spatial_dims, channels, channels, int(k), channels, norm, act) for k in kernel_sizes
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

    def forward_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the branch outputs, accumulated branch by branch (one full-size sum alive at a time).

        Equals ``sum(self(x))`` to the bit (same order of additions).
        """
        acc = x  # placeholder: the first branch's output replaces it
        for i, branch in enumerate(self.branches):
            out = branch(x)
            acc = out if i == 0 else maybe_inplace_add(acc, out, self.inplace)
            if not self.dw_parallel:
                x = x + out
        return acc

    def fuse(self, **switches: bool) -> MultiKernelDepthwiseConv:
        """Fuse in place (eval only afterwards): each branch becomes a :class:`FusedConvNormAct` (batch norm
        folded, a 1x1 branch a per-channel affine, ReLU6 in place), and with ``fuse_act`` the branch sum
        accumulates in place.

        Returns:
            ``self``.
        """
        if self.fused:
            return self
        sw = fuse_switches(**switches)
        fuse_children(self, **sw)
        self.inplace = sw["fuse_act"]
        self.fused = True
        return self.eval()


class MultiKernelInvertedResidual(FusableModule):
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
        self.inplace = False  # set by fuse(fuse_act=True): the residual add runs in place
        self.expand = ConvNormAct(spatial_dims, in_channels, ex_c, 1, 1, norm, act)
        self.mkdc = MultiKernelDepthwiseConv(
            spatial_dims, ex_c, kernel_sizes, norm=norm if mkdc_norm else None, act=act, dw_parallel=dw_parallel
        )
        combined = ex_c if add else ex_c * len(kernel_sizes)
        self.shuffle_groups = _gcd(combined, out_channels)
        self.project = ConvNormAct(spatial_dims, combined, out_channels, 1, 1, norm, None)
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else Conv[Conv.CONV, spatial_dims](in_channels, out_channels, 1, bias=False)
        )
        # set by fuse(merge_skip=True): [project | skip] weights for one matrix product over [out, x]
        self.register_buffer("merged_weight", None)
        self.register_buffer("merged_bias", None)
        normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x)
        if self.add:
            out = self.mkdc.forward_sum(h)
        else:
            out = torch.cat(self.mkdc(h), dim=1)
        out = channel_shuffle(out, self.shuffle_groups)
        if not torch.jit.is_scripting():
            merged = cast("torch.Tensor | None", self.merged_weight)
            if merged is not None and is_channels_last(out) and is_channels_last(x):
                # fused form: skip conv + projection as one matrix product (one full-size output written, not two)
                return pointwise_linear([out, x], merged, cast("torch.Tensor | None", self.merged_bias))
        return maybe_inplace_add(self.project(out), self.skip(x), self.inplace)

    def fuse(self, **switches: bool) -> MultiKernelInvertedResidual:
        """Fuse in place (eval only afterwards), keeping this class and its ``forward``.

        * every conv -> norm -> act becomes a :class:`FusedConvNormAct` (``fold_bn``, ``scale_1x1_dw``,
          ``fuse_act``, ``pointwise_matmul``); the MKDC fuses itself;
        * ``permute_shuffle``: the channel shuffle is folded into the input-channel order of the projection;
        * ``merge_skip``: a 1x1 skip conv and the projection become one matrix product over ``[out, x]``;
        * ``fuse_act``: the residual add runs in place (while autograd is off).

        Returns:
            ``self``.
        """
        if self.fused:
            return self
        sw = fuse_switches(**switches)
        fuse_children(self, **sw)  # expand, MKDC, project
        if isinstance(self.skip, _CONV):
            self.skip = FusedConvNormAct.from_conv(self.skip, **sw)
        project = self.project
        assert isinstance(project, FusedConvNormAct)
        conv = project.conv
        if sw["permute_shuffle"] and conv is not None and conv.groups == 1 and self.shuffle_groups > 1:
            combined = conv.in_channels
            perm = channel_shuffle(torch.arange(combined).view(1, combined, 1), self.shuffle_groups).flatten()
            project.permute_input_(perm)
            self.shuffle_groups = 1  # folded into the weights
        skip = self.skip
        if (
            sw["merge_skip"]
            and isinstance(skip, FusedConvNormAct)
            and skip.is_pointwise
            and skip.norm is None
            and skip.act is None
            and project.is_pointwise
            and project.norm is None
            and project.act is None
        ):
            wp, bp = project.matmul_weight()
            ws, bs = skip.matmul_weight()
            self.merged_weight = torch.cat([wp.detach(), ws.detach()], dim=1).contiguous()
            if bp is not None or bs is not None:
                zero = torch.zeros_like(wp[:, 0])
                bias = (bp.detach() if bp is not None else zero) + (bs.detach() if bs is not None else zero)
                self.merged_bias = bias
        self.inplace = sw["fuse_act"]
        self.fused = True
        return self.eval()


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
