"""EGE-UNet: grouped multi-axis Hadamard-product attention (GHPA) and group aggregation bridges (GAB), 2D and 3D.

Paper: Ruan et al., "EGE-UNet: an Efficient Group Enhanced UNet for skin lesion segmentation", MICCAI 2023
(https://arxiv.org/abs/2307.08473). The official code (``JCruan519/EGE-UNet``) is 2D only; this is our own
implementation from the description in ``../shared/spec/architectures.md`` §4. With ``spatial_dims=2``, the paper's
widths (8, 16, 24, 32, 48, 64), 3 input channels and 1 class it is the paper's network: 53,374 parameters (paper
0.053 M) and, at 256², 0.0721 G convolution-weight multiply-adds (paper 0.072 GFLOPs). The paper's number counts
convolution weights only: ptflops (pytorch backend, the convention of :mod:`ultralight3d.profile`, which matches
the UltraLightUNet papers) also counts bias adds, GroupNorm, GELU, pooling and resizing and reports 0.0799 G
(+10.9 %); LayerNorm is not counted by either.

Differences from the official 2D code, none of which changes the parameter count:

* the network returns logits; the official applies a sigmoid to the output and to the deep-supervision maps. The
  loss (e.g. MONAI's ``DiceCELoss(sigmoid=True)`` for one class, ``softmax=True`` for several) or the bundle's
  post-processing applies the activation. The bridges receive the mask logits (before the sigmoid), as in the
  official code;
* the channel-axis maps are stored as (1, c, m) and resized along one axis with linear interpolation; the official
  stores (1, 1, c, m) and resizes bilinearly to (c, L), which leaves the channel axis untouched (align_corners=True,
  same length), so the values are the same;
* convolutions keep PyTorch's default initialisation (the spec names no scheme).

Encoder 6 is followed by GELU only: spec §4.3 puts "GroupNorm(4) -> max-pool 2 -> GELU" after each encoder and "no
pool after encoder 6"; we read the latter as "the bottleneck has neither norm nor pool" (five encoder GroupNorms,
five decoder GroupNorms). A GroupNorm there would add 2·c5 = 128 parameters (+0.24 %).

Design choices for 3D (spec §4.4 leaves them open; all reduce to the paper when ``spatial_dims=2``):

* **GHPA groups: option (b), one group per axis family.** The input is split into ``spatial_dims + 2`` channel
  groups: (1) a learnable map over all spatial axes, one per channel of the group ((H, W) in 2D, (D, H, W) in 3D),
  resized (bi/tri)linearly with align_corners=True and refined by a depthwise 3^d conv -> GELU -> 1x1 conv;
  (2 .. d+1) one channel-axis map per spatial axis ((C, H), (C, W) in 2D; (C, D), (C, H), (C, W) in 3D), each
  broadcast over the other spatial axes and refined by a Conv1d (depthwise k3 -> GELU -> 1x1) along its axis;
  (d+2) the map-free group, 1x1 conv -> GELU -> depthwise 3^d conv. 2D keeps the paper's four groups; 3D has five.
  Option (a) (one group per 2-axis plane: six planes plus the depthwise group, seven groups) was not taken: the
  spatial-plane maps (D, H), (D, W), (H, W) would each be broadcast over one spatial axis, and seven groups of
  at most nine channels at width 64 leave each branch very narrow.
* **Uneven groups.** Widths need not be multiples of the group count: channels are dealt out as evenly as
  possible, the first groups taking one extra (widths 24, 32, 48, 64 give 5+5+5+5+4, 7+7+6+6+6, 10+10+10+9+9,
  13+13+13+13+12 channels in 3D; equal quarters in 2D).
* **Learnable-map size.** ``map_size`` (8, as in the paper) per axis: an 8³ volume map per channel in 3D (512
  values instead of 64), interpolated down to the stage's size (3³ at R/32 of a 96³ patch) like the 2D maps.
* **GAB** is unchanged in 3D: four groups, depthwise 3³ convs with dilations 1, 2, 5, 7 and padding
  (k + (k - 1)(d - 1)) // 2, trilinear resizing of the deeper bridge output.
* **Masks for several classes.** ``mask_channels`` sets the channels of the five deep-supervision heads, which
  each bridge group concatenates: ``None`` (default, ``egeunet3d``) uses ``out_channels`` (one logit map per class,
  so each head can be supervised like the final output); 1 (``egeunet``) is the paper's single foreground map.
  A bridge group then has ``dim_xl / 2 + mask_channels`` channels.
* **Resampling** is (bi/tri)linear with align_corners=True everywhere (maps, bridges, decoder and final ×2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool

from ...registry import ModelCfg, register_model
from ..blocks.norm import ChannelLayerNorm
from ..layers.checks import check_input

__all__ = [
    "EGEUNet",
    "GroupedHadamardAttention",
    "GroupAggregationBridge",
    "VARIANTS",
    "PAPER_SETTINGS",
    "PAPER_INPUT_SIZE",
    "PAPER_PARAMS_M",
    "PAPER_GFLOPS",
]

#: variant table: ``egeunet`` is the paper's network (single-channel masks), ``egeunet3d`` the 3D extension with one
#: mask channel per class. Both default to ``spatial_dims=3`` like every registered model.
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"channels": (8, 16, 24, 32, 48, 64), "mask_channels": 1},
    "3d": {"channels": (8, 16, 24, 32, 48, 64), "mask_channels": None},
}

#: constructor settings of the paper's counts (ISIC 2017/2018: RGB input, binary lesion mask) ...
PAPER_SETTINGS: dict[str, Any] = {"spatial_dims": 2, "in_channels": 3, "out_channels": 1}
#: ... at this input size ...
PAPER_INPUT_SIZE: tuple[int, ...] = (256, 256)
#: ... give these (paper: "0.053M" parameters, "0.072 GFLOPs").
PAPER_PARAMS_M: float = 0.053
PAPER_GFLOPS: float = 0.072


def _split_sizes(channels: int, groups: int) -> list[int]:
    """``channels`` dealt out over ``groups`` as evenly as possible, the first groups taking one extra."""
    base, extra = divmod(channels, groups)
    return [base + (1 if i < extra else 0) for i in range(groups)]


def _interp_mode(spatial_dims: int) -> str:
    return ("linear", "bilinear", "trilinear")[spatial_dims - 1]


class _AxisMap(nn.Module):
    """Channel-axis Hadamard map of one GHPA group: a learnable (1, C, m) map, linearly resized to the length L of
    spatial axis ``axis`` (align_corners=True), refined by Conv1d depthwise k -> GELU -> Conv1d 1x1, and multiplied
    with the group features, broadcast over the other spatial axes.

    Shapes:
        forward(x: (B, C, *S)) -> (B, C, *S).
    """

    def __init__(self, spatial_dims: int, channels: int, axis: int, map_size: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        self.axis = axis
        self.weight = nn.Parameter(torch.ones(1, channels, map_size))
        self.conv = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels),
            nn.GELU(),
            nn.Conv1d(channels, channels, 1),
        )
        shape = [1, channels] + [1] * spatial_dims
        shape[2 + axis] = -1
        self.view_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[2 + self.axis]
        m = self.conv(F.interpolate(self.weight, size=[length], mode="linear", align_corners=True))
        return x * m.reshape(self.view_shape)


class GroupedHadamardAttention(nn.Module):
    """Grouped multi-axis Hadamard-product attention (GHPA, spec §4.1), 2D or 3D.

    ChannelLayerNorm -> split into ``spatial_dims + 2`` channel groups -> per group: Hadamard product with a
    learnable spatial map / one channel-axis map per spatial axis / a map-free 1x1 -> GELU -> depthwise conv ->
    concatenate -> ChannelLayerNorm -> depthwise conv -> GELU -> 1x1 conv (in -> out). No residual connection.
    Learnable maps start at ones and are resized to the input with align_corners=True (see the module docstring for
    the 3D groups).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (at least ``spatial_dims + 2``).
        out_channels: output channels.
        map_size: edge of the learnable maps before resizing. Defaults to 8.
        kernel_size: depthwise kernel edge. Defaults to 3.

    Shapes:
        forward(x: (B, in_channels, *S)) -> (B, out_channels, *S).
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, map_size: int = 8, kernel_size: int = 3
    ) -> None:
        super().__init__()
        groups = spatial_dims + 2
        if in_channels < groups:
            raise ValueError(
                f"GHPA in {spatial_dims}D splits its input into {groups} groups; got {in_channels} channels"
            )
        self.sizes = _split_sizes(in_channels, groups)
        self.interp_mode = _interp_mode(spatial_dims)
        conv = Conv[Conv.CONV, spatial_dims]
        pad = kernel_size // 2
        self.norm_in = ChannelLayerNorm(in_channels)
        c = self.sizes[0]
        self.spatial_map = nn.Parameter(torch.ones((1, c) + (map_size,) * spatial_dims))
        self.spatial_conv = nn.Sequential(conv(c, c, kernel_size, padding=pad, groups=c), nn.GELU(), conv(c, c, 1))
        self.axis_maps = nn.ModuleList(
            _AxisMap(spatial_dims, self.sizes[1 + a], a, map_size, kernel_size) for a in range(spatial_dims)
        )
        c = self.sizes[-1]
        self.local = nn.Sequential(conv(c, c, 1), nn.GELU(), conv(c, c, kernel_size, padding=pad, groups=c))
        self.norm_out = ChannelLayerNorm(in_channels)
        self.proj = nn.Sequential(
            conv(in_channels, in_channels, kernel_size, padding=pad, groups=in_channels),
            nn.GELU(),
            conv(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x)
        parts = torch.split(x, self.sizes, dim=1)
        spatial = F.interpolate(self.spatial_map, size=x.shape[2:], mode=self.interp_mode, align_corners=True)
        outs = [parts[0] * self.spatial_conv(spatial)]
        for i, axis_map in enumerate(self.axis_maps):
            outs.append(axis_map(parts[i + 1]))
        outs.append(self.local(parts[len(parts) - 1]))
        return self.proj(self.norm_out(torch.cat(outs, dim=1)))


class GroupAggregationBridge(nn.Module):
    """Group aggregation bridge (GAB, spec §4.2), 2D or 3D.

    The deeper feature ``xh`` is projected to ``low_channels`` (1x1 conv) and resized to ``xl`` ((bi/tri)linear,
    align_corners=True). ``xh`` and ``xl`` are split into ``len(dilations)`` groups; group i concatenates
    [xh_i, xl_i, mask] -> ChannelLayerNorm -> depthwise conv with dilation d_i. The groups are concatenated ->
    ChannelLayerNorm -> 1x1 conv to ``low_channels``. The caller adds the result to the decoder feature.

    Args:
        spatial_dims: 2 or 3.
        high_channels: channels of ``xh``.
        low_channels: channels of ``xl`` and of the output.
        mask_channels: channels of ``mask`` (1 in the paper). Defaults to 1.
        kernel_size: depthwise kernel edge. Defaults to 3.
        dilations: one dilation per group. Defaults to (1, 2, 5, 7).

    Shapes:
        forward(xh: (B, high_channels, *S'), xl: (B, low_channels, *S), mask: (B, mask_channels, *S))
        -> (B, low_channels, *S).
    """

    def __init__(
        self,
        spatial_dims: int,
        high_channels: int,
        low_channels: int,
        mask_channels: int = 1,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 5, 7),
    ) -> None:
        super().__init__()
        if low_channels < len(dilations):
            raise ValueError(f"GAB splits into {len(dilations)} groups; got low_channels={low_channels}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.interp_mode = _interp_mode(spatial_dims)
        self.pre = conv(high_channels, low_channels, 1)
        self.sizes = _split_sizes(low_channels, len(dilations))
        branches = []
        for s, d in zip(self.sizes, dilations, strict=True):
            ch = 2 * s + mask_channels
            pad = (kernel_size + (kernel_size - 1) * (d - 1)) // 2
            branches.append(
                nn.Sequential(ChannelLayerNorm(ch), conv(ch, ch, kernel_size, padding=pad, dilation=d, groups=ch))
            )
        self.branches = nn.ModuleList(branches)
        total = 2 * low_channels + len(dilations) * mask_channels
        self.tail = nn.Sequential(ChannelLayerNorm(total), conv(total, low_channels, 1))

    def forward(self, xh: torch.Tensor, xl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xh = F.interpolate(self.pre(xh), size=xl.shape[2:], mode=self.interp_mode, align_corners=True)
        hs = torch.split(xh, self.sizes, dim=1)
        ls = torch.split(xl, self.sizes, dim=1)
        outs: list[torch.Tensor] = []
        for i, branch in enumerate(self.branches):
            outs.append(branch(torch.cat([hs[i], ls[i], mask], dim=1)))
        return self.tail(torch.cat(outs, dim=1))


class EGEUNet(nn.Module):
    """EGE-UNet for 2D or 3D segmentation (spec §4.3; 3D choices in the module docstring).

    Encoder: three 3^d convs and three GHPA blocks (widths c0..c5); after each of the first five:
    GroupNorm(4) -> 2x max-pool -> GELU; after the sixth (R/32): GELU. Decoder, deepest first: GHPA (c5 -> c4) ->
    GroupNorm -> GELU at R/32, then GHPA (c4 -> c3), GHPA (c3 -> c2), conv (c2 -> c1), conv (c1 -> c0), each ->
    GroupNorm -> 2x (bi/tri)linear upsampling -> GELU. After every decoder stage a 1x1 head predicts the mask logits,
    and a group aggregation bridge, fed with the previous bridge's output (encoder 6 for the first), the encoder
    skip at that resolution and the mask, adds its output to the decoder feature. A final 1x1 conv and 2x
    upsampling give the logits at the input size.

    The network returns logits: apply the sigmoid (one class, as in the paper) or softmax in the loss or the
    post-processing.

    Args:
        spatial_dims: 2 or 3. Defaults to 3.
        in_channels: input channels. Defaults to 1.
        out_channels: output classes (logits). Defaults to 2.
        channels: widths [c0..c5], multiples of 4 (GroupNorm(4)). Defaults to the paper's (8, 16, 24, 32, 48, 64).
        mask_channels: channels of the deep-supervision heads that feed the bridges: None (default) uses
            ``out_channels`` (a logit map per class); 1 is the paper's single foreground map.
        deep_supervision: in training mode also return the five head outputs, resized to the input size
            (align_corners=True) and stacked as (B, 6, out_channels, *S): the final logits first, then the heads
            from the shallowest (R/2) to the deepest (R/32), as UltraLightUNet and MONAI's DynUNet do
            (``torch.unbind(out, 1)`` gives the list ``DeepSupervisionLoss`` takes; :attr:`supervision_weights`
            holds the paper's weights for it). Needs ``mask_channels`` equal to ``out_channels``.
            In eval mode only the logits are returned. Defaults to False.
        map_size: edge of the GHPA learnable maps. Defaults to 8.
        dilations: GAB dilations, one per bridge group. Defaults to (1, 2, 5, 7).

    Raises:
        ValueError: on bad constructor arguments, a wrong input channel count or a spatial size that is not a
            multiple of 32 (checked in forward).

    Examples::

        # the paper's 2D network: 3-channel 256² input, one class
        >>> net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1, mask_channels=1)
        >>> net(torch.randn(2, 3, 256, 256)).shape
        torch.Size([2, 1, 256, 256])
        # 3D, CT, five classes, deep supervision
        >>> net = EGEUNet(spatial_dims=3, in_channels=1, out_channels=5, deep_supervision=True)
        >>> net(torch.randn(2, 1, 32, 64, 96)).shape
        torch.Size([2, 6, 5, 32, 64, 96])
    """

    divisor = 32
    #: loss weight of each slot of the deep-supervision output: 1 for the final logits, then the paper's
    #: GT_BceDiceLoss weights 0.5 ... 0.1 from the shallowest head to the deepest (spec §4.3).
    supervision_weights: tuple[float, ...] = (1.0, 0.5, 0.4, 0.3, 0.2, 0.1)

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
        mask_channels: int | None = None,
        deep_supervision: bool = False,
        map_size: int = 8,
        dilations: Sequence[int] = (1, 2, 5, 7),
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) != 6:
            raise ValueError(f"channels must list 6 stage widths [c0..c5], got {list(channels)}")
        c = [int(v) for v in channels]
        if any(v < 4 or v % 4 for v in c):
            raise ValueError(f"every width must be a positive multiple of 4 (GroupNorm(4)), got {c}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError("in_channels and out_channels must be >= 1")
        masks = out_channels if mask_channels is None else int(mask_channels)
        if masks < 1:
            raise ValueError(f"mask_channels must be >= 1 or None, got {mask_channels}")
        if deep_supervision and masks != out_channels:
            raise ValueError(
                f"deep_supervision returns the mask heads stacked with the logits, so mask_channels ({masks}) must "
                f"equal out_channels ({out_channels}); use mask_channels=None"
            )
        if map_size < 1 or not dilations:
            raise ValueError("map_size must be >= 1 and dilations non-empty")
        self.spatial_dims = spatial_dims
        self.divisor = type(self).divisor
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mask_channels = masks
        self.channels = c
        self.deep_supervision = deep_supervision
        self.interp_mode = _interp_mode(spatial_dims)
        conv = Conv[Conv.CONV, spatial_dims]
        pool = Pool[Pool.MAX, spatial_dims]

        def ghpa(cin: int, cout: int) -> GroupedHadamardAttention:
            return GroupedHadamardAttention(spatial_dims, cin, cout, map_size)

        def up() -> nn.Upsample:
            return nn.Upsample(scale_factor=2.0, mode=self.interp_mode, align_corners=True)

        blocks: list[nn.Module] = [conv(i, o, 3, padding=1) for i, o in zip([in_channels] + c[:2], c[:3], strict=True)]
        blocks += [ghpa(c[2], c[3]), ghpa(c[3], c[4])]
        self.encoders = nn.ModuleList(
            nn.Sequential(b, nn.GroupNorm(4, o), pool(kernel_size=2, stride=2), nn.GELU())
            for b, o in zip(blocks, c[:5], strict=True)
        )
        self.bottleneck = nn.Sequential(ghpa(c[4], c[5]), nn.GELU())
        self.decoders = nn.ModuleList(
            [
                nn.Sequential(ghpa(c[5], c[4]), nn.GroupNorm(4, c[4]), nn.GELU()),
                nn.Sequential(ghpa(c[4], c[3]), nn.GroupNorm(4, c[3]), up(), nn.GELU()),
                nn.Sequential(ghpa(c[3], c[2]), nn.GroupNorm(4, c[2]), up(), nn.GELU()),
                nn.Sequential(conv(c[2], c[1], 3, padding=1), nn.GroupNorm(4, c[1]), up(), nn.GELU()),
                nn.Sequential(conv(c[1], c[0], 3, padding=1), nn.GroupNorm(4, c[0]), up(), nn.GELU()),
            ]
        )
        dec_out = [c[4], c[3], c[2], c[1], c[0]]
        self.mask_heads = nn.ModuleList(conv(ch, masks, 1) for ch in dec_out)
        self.bridges = nn.ModuleList(
            GroupAggregationBridge(spatial_dims, hi, lo, masks, 3, dilations)
            for hi, lo in zip([c[5]] + dec_out[:4], dec_out, strict=True)
        )
        self.head = conv(c[0], out_channels, 1)
        self.final_up = up()

    def _check_input(self, x: torch.Tensor) -> None:
        check_input(x, "EGEUNet", self.spatial_dims, self.in_channels, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S), every spatial size a multiple of 32.

        Returns:
            logits (B, out_channels, *S); with ``deep_supervision`` in training mode (B, 6, out_channels, *S).
        """
        if torch.jit.is_scripting():
            self._check_input(x)
        elif not (torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()):
            self._check_input(x)  # skipped while tracing for export/compile (dynamic sizes)
        skips: list[torch.Tensor] = []
        out = x
        for encoder in self.encoders:
            out = encoder(out)
            skips.append(out)  # R/2 .. R/32
        high = self.bottleneck(out)  # encoder 6 at R/32: the first bridge's deeper input
        out = high
        masks: list[torch.Tensor] = []
        i = 0
        for decoder, mask_head, bridge in zip(self.decoders, self.mask_heads, self.bridges, strict=True):
            out = decoder(out)
            mask = mask_head(out)
            high = bridge(high, skips[4 - i], mask)
            out = out + high
            masks.append(mask)
            i += 1
        logits = self.final_up(self.head(out))
        if self.deep_supervision and self.training:
            size = logits.shape[2:]
            ups = [F.interpolate(m, size=size, mode=self.interp_mode, align_corners=True) for m in masks[::-1]]
            return torch.stack([logits] + ups, dim=1)
        return logits


def _create(variant: str, **kwargs: Any) -> EGEUNet:
    args: dict[str, Any] = dict(VARIANTS[variant])
    args.update(kwargs)
    return EGEUNet(**args)


@register_model(
    ModelCfg(
        family="egeunet",
        variant="paper",
        divisor=32,
        paper_params_m=PAPER_PARAMS_M,
        paper_gflops=PAPER_GFLOPS,
        paper_settings=dict(PAPER_SETTINGS),
        paper_input_size=PAPER_INPUT_SIZE,
    )
)
def egeunet(**kwargs: Any) -> EGEUNet:
    """EGE-UNet with the paper's widths (8, 16, 24, 32, 48, 64) and single-channel masks. ``spatial_dims=2,
    in_channels=3, out_channels=1`` is the paper's network (0.053 M params, 0.072 GFLOPs at 256²); like every
    registered model it defaults to ``spatial_dims=3``."""
    return _create("paper", **kwargs)


@register_model(ModelCfg(family="egeunet", variant="3d", divisor=32, deep_supervision=True))
def egeunet3d(**kwargs: Any) -> EGEUNet:
    """3D EGE-UNet, the paper's widths, one mask channel per class (so ``deep_supervision=True`` works for any
    number of classes); default patch 96³."""
    return _create("3d", **kwargs)
