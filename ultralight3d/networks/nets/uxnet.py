"""3D UX-Net: a ConvNeXt-style large-kernel depthwise encoder with a UNETR-style decoder built from MONAI blocks.

Paper: Lee et al., "3D UX-Net: A Large Kernel Volumetric ConvNet Modernizing Hierarchical Transformer for Medical
Image Segmentation", ICLR 2023. The original repository has no licence file; this is our own implementation from
the description in ``../shared/spec/architectures.md`` §2 (53.0 M parameters with the default widths).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from monai.networks.layers import DropPath
from monai.networks.layers.factories import Conv

from ...registry import ModelCfg, register_model
from ..blocks.norm import ChannelLayerNorm
from ..layers.checks import check_input

__all__ = ["UXNet"]


class _UXBlock(nn.Module):
    """Depthwise 7^d conv -> LayerNorm -> grouped 1x1 (C -> 4C, groups C) -> GELU -> grouped 1x1 (4C -> C) -> layer
    scale -> residual. 360·C parameters in 3D."""

    def __init__(
        self, spatial_dims: int, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.dwconv = conv(dim, dim, 7, padding=3, groups=dim)
        self.norm = ChannelLayerNorm(dim)
        self.pwconv1 = conv(dim, 4 * dim, 1, groups=dim)
        self.act = nn.GELU()
        self.pwconv2 = conv(4 * dim, dim, 1, groups=dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.scale_shape = [1, dim] + [1] * spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.drop_path(self.gamma.view(self.scale_shape) * out)


class _UXEncoder(nn.Module):
    """Stem (7^d conv, stride 2) and three 2x downsamplings, each stage ``depths[i]`` UX blocks; returns the four
    normalised stage outputs at R/2, R/4, R/8, R/16."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        depths: Sequence[int],
        dims: Sequence[int],
        drop_path_rate: float,
        layer_scale_init_value: float,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.downsample = nn.ModuleList(
            [nn.Sequential(conv(in_channels, dims[0], 7, stride=2, padding=3), ChannelLayerNorm(dims[0]))]
            + [
                nn.Sequential(ChannelLayerNorm(dims[i - 1]), conv(dims[i - 1], dims[i], 2, stride=2))
                for i in range(1, 4)
            ]
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages, k = [], 0
        for i in range(4):
            stages.append(
                nn.Sequential(
                    *[_UXBlock(spatial_dims, dims[i], rates[k + j], layer_scale_init_value) for j in range(depths[i])]
                )
            )
            k += depths[i]
        self.stages = nn.ModuleList(stages)
        self.norms = nn.ModuleList(ChannelLayerNorm(d) for d in dims)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        for down, stage, norm in zip(self.downsample, self.stages, self.norms, strict=True):
            x = stage(down(x))
            outs.append(norm(x))
        return outs


class UXNet(nn.Module):
    """3D UX-Net (2D also works: every layer is built for ``spatial_dims``).

    Args:
        spatial_dims: 2 or 3. Defaults to 3.
        in_channels: input channels. Defaults to 1.
        out_channels: output classes (logits). Defaults to 2.
        depths: UX blocks per encoder stage. Defaults to (2, 2, 2, 2).
        feature_size: encoder widths; the first must be 48... any value works here (the original hard-codes 48).
        hidden_size: bottleneck width. Defaults to 768.
        drop_path_rate: stochastic depth (0 in the original training). Defaults to 0.
        layer_scale_init_value: initial layer scale. Defaults to 1e-6.
        norm_name: decoder norm (MONAI name). Defaults to "instance".

    Raises:
        ValueError: wrong channel count or spatial size not a multiple of 16 (checked in forward).

    Examples::

        >>> net = UXNet(spatial_dims=3, in_channels=1, out_channels=14)
        >>> sum(p.numel() for p in net.parameters())  # 53.0 M
        53006755
        >>> net(torch.randn(1, 1, 32, 32, 32)).shape
        torch.Size([1, 14, 32, 32, 32])
    """

    divisor = 16

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        depths: Sequence[int] = (2, 2, 2, 2),
        feature_size: Sequence[int] = (48, 96, 192, 384),
        hidden_size: int = 768,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        norm_name: str | tuple = "instance",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(depths) != 4 or len(feature_size) != 4:
            raise ValueError("depths and feature_size must each have 4 entries")
        self.spatial_dims = spatial_dims
        self.divisor = type(self).divisor
        self.in_channels = in_channels
        self.out_channels = out_channels
        f = [int(v) for v in feature_size]
        self.encoder = _UXEncoder(spatial_dims, in_channels, depths, f, drop_path_rate, layer_scale_init_value)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(
                spatial_dims, cin, cout, kernel_size=3, stride=1, norm_name=norm_name, res_block=True
            )

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(
                spatial_dims, cin, cout, kernel_size=3, upsample_kernel_size=2, norm_name=norm_name, res_block=True
            )

        self.encoder1 = basic(in_channels, f[0])
        self.encoder2 = basic(f[0], f[1])
        self.encoder3 = basic(f[1], f[2])
        self.encoder4 = basic(f[2], f[3])
        self.encoder5 = basic(f[3], hidden_size)
        self.decoder5 = up(hidden_size, f[3])
        self.decoder4 = up(f[3], f[2])
        self.decoder3 = up(f[2], f[1])
        self.decoder2 = up(f[1], f[0])
        self.decoder1 = basic(f[0], f[0])
        self.out = UnetOutBlock(spatial_dims, f[0], out_channels)

    def _check_input(self, x: torch.Tensor) -> None:
        check_input(x, "UXNet", self.spatial_dims, self.in_channels, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S), every spatial size a multiple of 16.

        Returns:
            logits (B, out_channels, *S).
        """
        if torch.jit.is_scripting():
            self._check_input(x)
        elif not (torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()):
            self._check_input(x)  # skipped while tracing for export/compile (dynamic sizes)
        outs = self.encoder(x)
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(outs[0])
        enc3 = self.encoder3(outs[1])
        enc4 = self.encoder4(outs[2])
        hidden = self.encoder5(outs[3])
        dec = self.decoder5(hidden, enc4)
        dec = self.decoder4(dec, enc3)
        dec = self.decoder3(dec, enc2)
        dec = self.decoder2(dec, enc1)
        return self.out(self.decoder1(dec))


@register_model(ModelCfg(family="uxnet", variant="base", divisor=16, paper_params_m=53.0, paper_gflops=639.4))
def uxnet3d(**kwargs: Any) -> UXNet:
    """3D UX-Net with the published widths (48, 96, 192, 384; hidden 768): 53.0 M parameters, 639.4 GFLOPs at 96³."""
    return UXNet(**kwargs)
