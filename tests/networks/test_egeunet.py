"""EGE-UNet (2D faithful, 3D extension): shapes, backward, deep supervision, paper counts, export, GHPA/GAB blocks."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceCELoss

from ultralight3d import create_model, get_model_cfg, list_models
from ultralight3d.networks.blocks import ChannelLayerNorm
from ultralight3d.networks.nets.egeunet import (
    PAPER_GFLOPS,
    PAPER_INPUT_SIZE,
    PAPER_PARAMS_M,
    PAPER_SETTINGS,
    EGEUNet,
    GroupAggregationBridge,
    GroupedHadamardAttention,
    _AxisMap,
)
from ultralight3d.networks.optimize import optimize_for_inference


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _paper_net() -> EGEUNet:
    net = create_model("egeunet", **PAPER_SETTINGS)
    assert isinstance(net, EGEUNet)
    return net.eval()


def _conv_macs(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of the convolution weights only (no bias, norm, activation or resampling terms)."""
    total = 0

    def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        total += out.numel() * m.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return total


# ----------------------------------------------------------------------------------------------------------- registry


def test_registered_with_cfg() -> None:
    assert {"egeunet", "egeunet3d"} <= set(list_models())
    assert list_models("egeunet*") == ["egeunet", "egeunet3d"]
    cfg = get_model_cfg("egeunet")
    assert (cfg.family, cfg.divisor, cfg.paper_params_m, cfg.paper_gflops) == ("egeunet", 32, 0.053, 0.072)
    assert cfg.paper_settings == PAPER_SETTINGS and cfg.paper_input_size == PAPER_INPUT_SIZE == (256, 256)
    cfg3 = get_model_cfg("egeunet3d")
    assert (cfg3.divisor, cfg3.patch_size, cfg3.paper_params_m) == (32, (96, 96, 96), None)
    net2 = create_model("egeunet", spatial_dims=2, in_channels=3, out_channels=1)
    net3 = create_model("egeunet3d", in_channels=1, out_channels=5)
    assert isinstance(net2, EGEUNet) and isinstance(net3, EGEUNet)
    assert (net2.spatial_dims, net2.mask_channels, net2.divisor) == (2, 1, 32)
    assert (net3.spatial_dims, net3.mask_channels, net3.out_channels) == (3, 5, 5)
    # user kwargs override the table
    assert create_model("egeunet3d", out_channels=3, mask_channels=1).mask_channels == 1


# ----------------------------------------------------------------------------------------------------------------- 2D


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (256, 256), (128, 32)])
@pytest.mark.parametrize("out_channels", [1, 3])
def test_2d_shapes(size: tuple[int, int], out_channels: int) -> None:
    torch.manual_seed(0)
    net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=out_channels).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, *size))
    assert y.shape == (2, out_channels, *size)
    assert torch.isfinite(y).all()


def test_2d_backward_and_deep_supervision() -> None:
    torch.manual_seed(0)
    net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1, mask_channels=1, deep_supervision=True)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 6, 1, 64, 64)  # final logits + five heads (R/2 ... R/32), all at full size
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_2d_torchscript_round_trip() -> None:
    torch.manual_seed(0)
    net = _paper_net()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)
    with pytest.raises(Exception, match="multiple of 32"):  # the scripted module keeps the input checks
        loaded(torch.randn(1, 3, 48, 64))


def test_paper_parameter_count() -> None:
    n = _n_params(_paper_net())
    assert abs(n / 1e6 - PAPER_PARAMS_M) / PAPER_PARAMS_M < 0.02
    assert n == 53_374  # +0.7 % vs the paper's 0.053 M


def test_paper_flops() -> None:
    """The paper's 0.072 GFLOPs are the convolution-weight multiply-adds at 3x256² (0.0721 G, +0.1 %); ptflops
    (pytorch backend, the :mod:`ultralight3d.profile` convention) also counts bias adds, GroupNorm, GELU, pooling and
    resizing and reports 0.0799 G (+10.9 %)."""
    from ptflops import get_model_complexity_info

    net = _paper_net()
    macs = _conv_macs(net, torch.randn(1, 3, *PAPER_INPUT_SIZE))
    assert abs(macs / 1e9 - PAPER_GFLOPS) / PAPER_GFLOPS < 0.02
    pt, _ = get_model_complexity_info(
        net, (3, *PAPER_INPUT_SIZE), as_strings=False, print_per_layer_stat=False, verbose=False
    )
    assert pt is not None and abs(pt / 1e9 - 0.0799) < 0.0008


def test_returns_logits_not_probabilities() -> None:
    torch.manual_seed(0)
    net = _paper_net()
    with torch.no_grad():
        net.head.bias.fill_(-10.0)  # a sigmoid inside would keep the output in (0, 1)
        y = net(torch.randn(1, 3, 64, 64))
    assert y.max() < 0


# ----------------------------------------------------------------------------------------------------------------- 3D


@pytest.mark.parametrize("name", ["egeunet3d", "egeunet"])
def test_3d_shapes(name: str) -> None:
    torch.manual_seed(0)
    net = create_model(name, in_channels=1, out_channels=5).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 64, 96)).shape == (1, 5, 32, 64, 96)
        assert net(torch.randn(2, 1, 64, 32, 32)).shape == (2, 5, 64, 32, 32)


def test_3d_backward_and_deep_supervision_loss() -> None:
    torch.manual_seed(0)
    net = create_model("egeunet3d", in_channels=1, out_channels=5, deep_supervision=True)
    assert net.training
    x = torch.randn(1, 1, 32, 64, 96)
    out = net(x)
    assert out.shape == (1, 6, 5, 32, 64, 96)
    target = torch.randint(0, 5, (1, 1, 32, 64, 96))
    loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))(list(torch.unbind(out, dim=1)), target)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # no batch norm or dropout: the main output in training mode is the eval-mode output
    net.eval()
    with torch.no_grad():
        main = net(x)
    assert main.shape == (1, 5, 32, 64, 96)
    torch.testing.assert_close(main, out[:, 0].detach(), rtol=0, atol=1e-5)


def test_deep_supervision_heads_order() -> None:
    """Slots 1..5 are the mask heads from the shallowest (R/2) to the deepest (R/32), resized to the input."""
    torch.manual_seed(0)
    net = EGEUNet(spatial_dims=2, in_channels=1, out_channels=2, deep_supervision=True)
    masks: list[torch.Tensor] = []
    handles = [h.register_forward_hook(lambda m, a, o: masks.append(o)) for h in net.mask_heads]
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        out = net(x)
    for h in handles:
        h.remove()
    assert [m.shape[-1] for m in masks] == [2, 4, 8, 16, 32]  # deepest first in the forward
    for slot, m in zip(range(1, 6), masks[::-1], strict=True):
        ref = F.interpolate(m, size=(64, 64), mode="bilinear", align_corners=True)
        torch.testing.assert_close(out[:, slot], ref)


def test_onnx_export_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from ultralight3d.export import OnnxRuntimeModel, check_parity, export_onnx

    torch.manual_seed(0)
    net = create_model("egeunet3d", in_channels=1, out_channels=5).eval()
    path = export_onnx(net, tmp_path / "egeunet3d.onnx", example_size=(32, 64, 96))
    ort_model = OnnxRuntimeModel(path)
    for size in ((32, 64, 96), (64, 32, 64)):  # the example size and another one (dynamic axes)
        result = check_parity(net, ort_model, size=size, atol=1e-4)
        assert result.shape == (1, 5, *size) and result.passed, result


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_optimize_for_inference_passes_through(spatial_dims: int) -> None:
    torch.manual_seed(0)
    net = EGEUNet(spatial_dims=spatial_dims, in_channels=1, out_channels=3).eval()
    fast = optimize_for_inference(net)
    assert type(fast) is EGEUNet and fast is not net
    x = torch.randn((1, 1) + (32, 64, 32)[-spatial_dims:])
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- bad arguments


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        EGEUNet(spatial_dims=1)
    with pytest.raises(ValueError, match="6 stage widths"):
        EGEUNet(channels=(8, 16, 24))
    with pytest.raises(ValueError, match="multiple of 4"):
        EGEUNet(channels=(8, 16, 24, 32, 48, 66))
    with pytest.raises(ValueError, match=r"mask_channels \(1\) must equal out_channels \(3\)"):
        EGEUNet(out_channels=3, mask_channels=1, deep_supervision=True)
    with pytest.raises(ValueError, match="mask_channels must be >= 1"):
        EGEUNet(mask_channels=0)
    net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1).eval()
    with pytest.raises(ValueError, match=r"multiple of 32.*got \[48, 64\]"):
        net(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="built for in_channels=3 but the input has 1 channels"):
        net(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"expects input \(B, C, H, W\), got shape \[1, 3, 32, 32, 32\]"):
        net(torch.randn(1, 3, 32, 32, 32))


# ------------------------------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize(
    "spatial_dims, size, groups",
    [(2, (16, 24), [8, 8, 8, 8]), (3, (8, 12, 16), [7, 7, 6, 6, 6])],
)
def test_ghpa_shapes_groups_and_maps(spatial_dims: int, size: tuple[int, ...], groups: list[int]) -> None:
    block = GroupedHadamardAttention(spatial_dims, 32, 48)
    assert block.sizes == groups  # 2D: the paper's four equal groups; 3D: d + 2 = 5 groups
    y = block(torch.randn(2, 32, *size))
    assert y.shape == (2, 48, *size)
    assert block.spatial_map.shape == (1, groups[0]) + (8,) * spatial_dims
    assert len(block.axis_maps) == spatial_dims
    for axis_map, c in zip(block.axis_maps, groups[1:-1], strict=True):
        assert isinstance(axis_map, _AxisMap) and axis_map.weight.shape == (1, c, 8)
    maps = [block.spatial_map] + [m.weight for m in block.axis_maps if isinstance(m, _AxisMap)]
    for p in maps:
        assert torch.equal(p, torch.ones_like(p))  # learnable maps start at ones


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ghpa_has_no_residual(spatial_dims: int) -> None:
    block = GroupedHadamardAttention(spatial_dims, 16, 16)
    with torch.no_grad():
        last = block.proj[-1]
        assert isinstance(last, nn.Conv2d | nn.Conv3d)
        last.weight.zero_()
        assert last.bias is not None
        last.bias.zero_()
        y = block(torch.randn(1, 16, *(8,) * spatial_dims))
    assert torch.equal(y, torch.zeros_like(y))  # with a residual the input would come through


def test_ghpa_rejects_too_few_channels() -> None:
    with pytest.raises(ValueError, match="5 groups; got 4 channels"):
        GroupedHadamardAttention(3, 4, 8)


@pytest.mark.parametrize("axis", [0, 1])
def test_axis_map_broadcasts_and_matches_bilinear_plane_map(axis: int) -> None:
    """The (C, L) map varies along its axis only, and equals the spec's form: a (1, 1, c, 8) tensor bilinearly
    resized to (c, L) with align_corners=True, then Conv1d along L."""
    torch.manual_seed(0)
    c, h, w = 6, 12, 20
    am = _AxisMap(2, c, axis)
    with torch.no_grad():
        am.weight.copy_(torch.randn(1, c, 8))
        y = am(torch.ones(1, c, h, w))
        length = (h, w)[axis]
        plane = F.interpolate(am.weight[None], size=(c, length), mode="bilinear", align_corners=True)[0]
        ref = am.conv(plane)  # (1, c, L)
    assert y.shape == (1, c, h, w)
    other = 3 - axis  # the broadcast axis
    assert torch.equal(y, y.narrow(other, 0, 1).expand_as(y))
    torch.testing.assert_close(y.narrow(other, 0, 1).reshape(1, c, length), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("mask_channels", [1, 3])
def test_gab_shapes_and_layout(spatial_dims: int, mask_channels: int) -> None:
    gab = GroupAggregationBridge(spatial_dims, 32, 16, mask_channels)
    size = (8, 16, 12)[-spatial_dims:]
    low = tuple(s // 2 for s in size)
    xh = torch.randn(2, 32, *low)  # deeper, coarser
    xl = torch.randn(2, 16, *size)
    mask = torch.randn(2, mask_channels, *size)
    assert gab(xh, xl, mask).shape == (2, 16, *size)
    # four groups of dim_xl/2 + mask channels, dilations 1, 2, 5, 7 with 'same' padding
    for branch, d in zip(gab.branches, (1, 2, 5, 7), strict=True):
        assert isinstance(branch, nn.Sequential)
        norm, conv = branch[0], branch[1]
        assert isinstance(conv, nn.Conv2d | nn.Conv3d)
        assert isinstance(norm, ChannelLayerNorm) and norm.channels == 8 + mask_channels
        assert conv.groups == conv.in_channels == 8 + mask_channels
        assert conv.dilation == (d,) * spatial_dims and conv.padding == (d,) * spatial_dims
        assert conv.kernel_size == (3,) * spatial_dims
    assert gab.tail[0].channels == 2 * 16 + 4 * mask_channels
    # xh, xl and the mask all reach the output
    xs = [t.clone().requires_grad_(True) for t in (xh, xl, mask)]
    gab(*xs).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in xs)


def test_channel_layer_norm_matches_layer_norm() -> None:
    x = torch.randn(2, 6, 4, 5, 3)
    ln = ChannelLayerNorm(6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.normal_()
        ref = F.layer_norm(x.movedim(1, -1), [6], ln.weight, ln.bias, 1e-6).movedim(-1, 1)
        torch.testing.assert_close(ln(x), ref)
