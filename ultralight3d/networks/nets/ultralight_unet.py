"""UltraLightUNet / UltraLightUNet3D: multi-kernel inverted residual encoder, MKIRA decoder, grouped attention gates.

Paper: "UltraLightUNet: Rethinking U-shaped Network with Multi-kernel Lightweight Convolutions for Medical Image
Segmentation" (ICLR 2025 submission, OpenReview BefqqrgdZ1); the same authors' 2D code is published as MK-UNet.
No official 3D code exists: this is our own dimension-agnostic implementation of the wiring described in
``../shared/spec/architectures.md`` §1.4 (2D and 3D from one class, ``spatial_dims`` first).

Two switches decide whether the parameter/FLOP counts match the paper's Table 10 (see :data:`TABLE10_SETTINGS`):

* ``mkdc_norm``: batch norm inside each depthwise branch. True (default) is the faithful port of the official 2D
  code and has 0.5-2.6 % more parameters than the paper; False reproduces the paper's parameter counts.
* ``input_repeat``: repeat the input channels this many times before the stem, as the official 2D forward does for
  1-channel input (1 -> 3). 1 (default) adds no cost; 3 reproduces the paper's FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool

from ...registry import ModelCfg, register_model
from ..blocks import ChannelAttention, GroupedAttentionGate, MultiKernelInvertedResidual, SpatialAttention
from ..layers.checks import check_input
from ..layers.fuse import (
    FusableModule,
    FusedConvNormAct,
    fuse_children,
    fuse_switches,
    maybe_inplace_add,
    maybe_inplace_mul,
    maybe_inplace_relu,
)

__all__ = ["UltraLightUNet", "VARIANTS", "TABLE10_SETTINGS", "PAPER_TABLE10"]

#: channel lists [c0..c4] per variant (MK-UNet code comments; the paper's Table 10 suffixes).
VARIANTS: dict[str, list[int]] = {
    "t": [4, 8, 16, 24, 32],
    "s": [8, 16, 32, 48, 80],
    "base": [16, 32, 64, 96, 160],
    "m": [32, 64, 128, 192, 320],
    "l": [64, 128, 256, 384, 512],
}

#: the paper's Table 10 (96³ input): parameters in millions, GFLOPs (ptflops convention: multiply-adds).
PAPER_TABLE10: dict[str, tuple[float, float]] = {
    "t": (0.061, 1.45),
    "s": (0.163, 2.03),
    "base": (0.453, 3.42),
    "m": (1.42, 7.1),
    "l": (4.28, 18.0),
}

#: constructor settings under which our counts reproduce Table 10 (1-channel input repeated to 3, no MKDC norm,
#: 2 output classes). Measured with ``ultralight3d profile``.
TABLE10_SETTINGS: dict[str, Any] = {"in_channels": 1, "out_channels": 2, "input_repeat": 3, "mkdc_norm": False}

_CA_RATIOS = (16, 16, 16, 8, 4)  # decoder stages, deepest first


class UltraLightUNet(FusableModule):
    """UltraLightUNet for 2D or 3D segmentation.

    Encoder: five MKIR stages, each followed by a 2x max-pool (the pooled map is the skip). Decoder: five stages of
    channel attention -> shared spatial attention -> MKIR -> 2x (bi/tri)linear upsampling -> ReLU, each but the last
    adding a grouped attention gate over the skip. A 1x1 head gives the logits at full resolution.

    Args:
        spatial_dims: 2 or 3. Defaults to 3.
        in_channels: input channels. Defaults to 1.
        out_channels: output classes (logits, no activation). Defaults to 2.
        channels: [c0, c1, c2, c3, c4]. Defaults to the "base" variant [16, 32, 64, 96, 160].
        kernel_sizes: MKDC kernel sizes. Defaults to (1, 3, 5).
        expansion_factor: MKIR expansion. Defaults to 2.
        gag_kernel: kernel of the grouped attention gate convs. Defaults to 3.
        norm: MONAI norm name or (name, kwargs). Defaults to "batch".
        mkdc_norm: norm inside the MKDC branches (True: faithful port; False: paper parameter counts).
        input_repeat: repeat the input channels this many times before the stem (3 with in_channels=1: paper FLOPs).
        deep_supervision: in training mode also return the three auxiliary heads (upsampled to full resolution),
            stacked as (B, 4, out_channels, *S) with the main output first (as MONAI's DynUNet does).

    Raises:
        ValueError: on a wrong channel count or a spatial size that is not a multiple of 32 (checked in forward).

    Examples::

        # 3D, two-channel prostate MRI, three classes
        >>> net = UltraLightUNet(spatial_dims=3, in_channels=2, out_channels=3, channels=[32, 64, 128, 192, 320])
        >>> net(torch.randn(1, 2, 96, 96, 96)).shape
        torch.Size([1, 3, 96, 96, 96])
        # 2D
        >>> UltraLightUNet(spatial_dims=2, in_channels=3, out_channels=1)(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    divisor = 32

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 96, 160),
        kernel_sizes: Sequence[int] = (1, 3, 5),
        expansion_factor: float = 2,
        gag_kernel: int = 3,
        norm: str | tuple = "batch",
        mkdc_norm: bool = True,
        input_repeat: int = 1,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) != 5:
            raise ValueError(f"channels must list 5 stage widths [c0..c4], got {list(channels)}")
        if in_channels < 1 or out_channels < 1 or input_repeat < 1:
            raise ValueError("in_channels, out_channels and input_repeat must be >= 1")
        self.spatial_dims = spatial_dims
        self.divisor = type(self).divisor
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_repeat = input_repeat
        self.deep_supervision = deep_supervision
        self.interp_mode = "trilinear" if spatial_dims == 3 else "bilinear"
        self.inplace = False  # set by fuse(fuse_act=True): decoder multiplies, ReLU and gate adds run in place
        c = [int(v) for v in channels]
        self.channels = c

        def mkir(cin: int, cout: int) -> MultiKernelInvertedResidual:
            return MultiKernelInvertedResidual(
                spatial_dims, cin, cout, expansion_factor, kernel_sizes, norm=norm, mkdc_norm=mkdc_norm
            )

        enc_in = [in_channels * input_repeat] + c[:4]
        self.encoders = nn.ModuleList(mkir(i, o) for i, o in zip(enc_in, c, strict=True))
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        dec_io = [(c[4], c[3]), (c[3], c[2]), (c[2], c[1]), (c[1], c[0]), (c[0], c[0])]
        self.decoders = nn.ModuleList(mkir(i, o) for i, o in dec_io)
        self.channel_attn = nn.ModuleList(
            ChannelAttention(spatial_dims, i, ratio) for (i, _), ratio in zip(dec_io, _CA_RATIOS, strict=True)
        )
        self.spatial_attn = SpatialAttention(spatial_dims, 7)  # one instance shared by all decoder stages
        # one gate per decoder stage; the last stage has no skip, so its slot holds a no-op placeholder
        # F_int = F // 2 with groups = F // 2 (each group maps 2 channels to 1); odd or tiny widths, as in width
        # scans, fall back to the largest group count that divides both sides
        gates: list[nn.Module] = [
            GroupedAttentionGate(
                spatial_dims, f, f, max(f // 2, 1), gag_kernel, groups=math.gcd(f, max(f // 2, 1)), norm=norm
            )
            for f in (c[3], c[2], c[1], c[0])
        ]
        self.gates = nn.ModuleList(gates + [_NoGate()])
        conv = Conv[Conv.CONV, spatial_dims]
        # auxiliary (deep-supervision) heads after decoder stages 2, 3, 4 (R/8, R/4, R/2); placeholders elsewhere
        self.aux_heads = nn.ModuleList(
            [nn.Identity()] + [conv(ch, out_channels, 1) for ch in (c[2], c[1], c[0])] + [nn.Identity()]
        )
        self.head = conv(c[0], out_channels, 1)

    def _check_input(self, x: torch.Tensor) -> None:
        check_input(x, "UltraLightUNet", self.spatial_dims, self.in_channels, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S), every spatial size a multiple of 32.

        Returns:
            logits (B, out_channels, *S); with ``deep_supervision`` in training mode (B, 4, out_channels, *S).
        """
        if torch.jit.is_scripting():
            self._check_input(x)
        elif not (torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()):
            self._check_input(x)  # skipped while tracing for export/compile (dynamic sizes)
        if self.input_repeat > 1:
            x = x.repeat_interleave(self.input_repeat, dim=1)
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            x = self.pool(encoder(x))
            skips.append(x)
        out = skips.pop()  # bottleneck at R/32; skips now hold t1..t4
        aux: list[torch.Tensor] = []
        want_aux = self.deep_supervision and self.training
        i = 0
        inplace = self.inplace  # only while autograd is off (checked by the maybe_inplace_* helpers)
        for ca, decoder, gate, aux_head in zip(
            self.channel_attn, self.decoders, self.gates, self.aux_heads, strict=True
        ):
            out = maybe_inplace_mul(out, ca(out), inplace)
            out = maybe_inplace_mul(out, self.spatial_attn(out), inplace)
            out = maybe_inplace_relu(F.interpolate(decoder(out), scale_factor=2.0, mode=self.interp_mode), inplace)
            if want_aux and 1 <= i <= 3:
                aux.append(aux_head(out))
            if i < 4:
                out = maybe_inplace_add(out, gate(out, skips[3 - i]), inplace)
            i += 1
        logits = self.head(out)
        if want_aux:
            size = logits.shape[2:]
            ups = [F.interpolate(a, size=size, mode=self.interp_mode) for a in aux[::-1]]
            return torch.stack([logits] + ups, dim=1)
        return logits

    def fuse(self, **switches: bool) -> UltraLightUNet:
        """Fuse for inference in place and return ``self`` (same class, same ``forward``; ``train()`` raises after).

        Every MKIR block and attention gate fuses itself (see their ``fuse``), the head becomes a
        :class:`~ultralight3d.networks.layers.fuse.FusedConvNormAct`, and with ``fuse_act`` the decoder's
        attention multiplies, ReLU and gate adds run in place while autograd is off. Use
        :func:`~ultralight3d.networks.optimize.optimize_for_inference` to keep the original (it fuses a deep copy
        and adds the channels-last layout).

        Args:
            switches: fusion switches, see :func:`~ultralight3d.networks.layers.fuse.fuse_switches`.

        Returns:
            ``self``, in eval mode.
        """
        if self.fused:
            return self
        sw = fuse_switches(**switches)
        fuse_children(self, **sw)
        if isinstance(self.head, nn.modules.conv._ConvNd):
            self.head = FusedConvNormAct.from_conv(self.head, **sw)
        self.inplace = sw["fuse_act"]
        self.fused = True
        return self.eval()


class _NoGate(nn.Module):
    """Placeholder for the last decoder stage, which has no skip connection (never called)."""

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x


def _create(variant: str, **kwargs: Any) -> UltraLightUNet:
    args: dict[str, Any] = {"channels": VARIANTS[variant]}
    args.update(kwargs)
    return UltraLightUNet(**args)


def _cfg(variant: str) -> ModelCfg:
    params_m, gflops = PAPER_TABLE10[variant]
    return ModelCfg(
        family="ultralight_unet",
        variant=variant,
        divisor=32,
        paper_params_m=params_m,
        paper_gflops=gflops,
        paper_settings=dict(TABLE10_SETTINGS),
    )


@register_model(_cfg("t"))
def ultralight_unet3d_t(**kwargs: Any) -> UltraLightUNet:
    """UltraLightUNet3D-T, channels [4, 8, 16, 24, 32] (paper: 0.061 M params, 1.45 GFLOPs at 96³)."""
    return _create("t", **kwargs)


@register_model(_cfg("s"))
def ultralight_unet3d_s(**kwargs: Any) -> UltraLightUNet:
    """UltraLightUNet3D-S, channels [8, 16, 32, 48, 80] (paper: 0.163 M, 2.03 G)."""
    return _create("s", **kwargs)


@register_model(_cfg("base"))
def ultralight_unet3d_base(**kwargs: Any) -> UltraLightUNet:
    """UltraLightUNet3D (base), channels [16, 32, 64, 96, 160] (paper: 0.453 M, 3.42 G)."""
    return _create("base", **kwargs)


@register_model(_cfg("m"))
def ultralight_unet3d_m(**kwargs: Any) -> UltraLightUNet:
    """UltraLightUNet3D-M, channels [32, 64, 128, 192, 320] (paper: 1.42 M, 7.1 G)."""
    return _create("m", **kwargs)


@register_model(_cfg("l"))
def ultralight_unet3d_l(**kwargs: Any) -> UltraLightUNet:
    """UltraLightUNet3D-L, channels [64, 128, 256, 384, 512] (paper: 4.28 M, 18.0 G)."""
    return _create("l", **kwargs)
