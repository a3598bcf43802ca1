"""The CPU inference path (``ultralight3d.networks.optimize``) computes the same logits as the plain modules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import BasicUNet

import ultralight3d.networks  # noqa: F401  (fills the registry)
from ultralight3d.networks.nets.ultralight_unet import UltraLightUNet
from ultralight3d.networks.optimize import (
    OPTIMIZATIONS,
    FastMKIR,
    optimize_for_inference,
    is_optimized,
    set_cpu_threads,
)
from ultralight3d.registry import create_model, list_models

TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _randomize(model: nn.Module, seed: int = 0, shape: tuple[int, ...] | None = None) -> nn.Module:
    """Random weights and batch-norm statistics calibrated on random data of ``shape`` (use >= 64³ and batch 2 so
    that the 2³ bottleneck has a meaningful variance) (as training would leave them), with
    non-trivial affine parameters, so that folding, the ReLU6 clamps and the attention gates are really exercised
    at realistic activation scales (the 0.02-std init alone makes every logit tiny)."""
    gen = torch.Generator().manual_seed(seed)
    bns = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d | nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
            elif isinstance(m, nn.BatchNorm3d | nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.momentum = 1.0  # one train-mode pass sets the running statistics
                bns.append(m)
        if shape is not None:
            model.train()
            model(torch.randn(shape, generator=gen) * 2.0 + 0.5)
        for m in bns:
            m.momentum = 0.1
            # a little disagreement between calibration data and test data, as with real scans
            m.running_var.mul_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
    return model.eval()


def _compare(plain: nn.Module, fast: nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    plain.eval()
    with torch.inference_mode():
        ref = plain(x)
        out = fast(x)
    assert out.shape == ref.shape
    assert out.is_contiguous()  # returned in the default layout, whatever the internal one
    return (out - ref).abs().max().item(), ref


@pytest.mark.parametrize("name", list_models("ultralight_unet3d_*"))
def test_every_variant_same_logits(name: str) -> None:
    big = name.endswith(("_m", "_l"))
    shape = (1, 1, *((32, 32, 64) if big else (64, 64, 64)))
    # batch-norm statistics from 64³ patches (a 32³ bottleneck is 1 voxel: its variance would be meaningless)
    net = _randomize(create_model(name, in_channels=1, out_channels=2), shape=(2, 1, 64, 64, 64))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    fast = optimize_for_inference(net)
    diff, ref = _compare(net, fast, x)
    assert ref.abs().max() > 0.5, "test weights give trivial logits; the comparison would prove nothing"
    assert diff < TOL, f"{name}: max abs diff {diff:.3g}"
    assert is_optimized(fast) and not is_optimized(net)


@pytest.mark.parametrize("name", ["ultralight_unet3d_t", "ultralight_unet3d_base"])
def test_float64_exact_algebra(name: str) -> None:
    """In float64 the rewritten graph agrees to 1e-9: every rewrite is exact algebra, and the float32 differences
    above are rounding only (the plain float32 model itself is ~1e-4 away from its float64 result at 64³)."""
    shape = (1, 2, 32, 32, 64)
    net = _randomize(create_model(name, in_channels=2, out_channels=3), shape=(2, 2, 64, 64, 64)).double()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    diff, ref = _compare(net, optimize_for_inference(net), x)
    assert ref.dtype == torch.float64 and ref.abs().max() > 0.5
    assert diff < 1e-9, f"{name}: {diff:.3g}"


def test_multichannel_paper_settings_and_batch() -> None:
    # two input channels, repeated 3x (paper FLOPs setting), no MKDC norm, 3 classes, batch of 2
    shape = (2, 2, 32, 64, 32)
    net = _randomize(
        create_model("ultralight_unet3d_s", in_channels=2, out_channels=3, input_repeat=3, mkdc_norm=False),
        shape=(2, 2, 64, 64, 64),
    )
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    diff, ref = _compare(net, optimize_for_inference(net), x)
    assert ref.shape == (2, 3, 32, 64, 32)
    assert diff < TOL


@pytest.mark.parametrize("switch", [k for k in OPTIMIZATIONS if k != "compile"])
def test_each_switch_alone_and_all_but_one(switch: str) -> None:
    shape = (1, 2, 32, 32, 64)
    net = _randomize(create_model("ultralight_unet3d_t", in_channels=2, out_channels=2), shape=(2, 2, 64, 64, 64))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    others = {k: False for k in OPTIMIZATIONS if k not in ("compile", switch)}
    only = optimize_for_inference(net, **{switch: True}, **others)
    all_but = optimize_for_inference(net, **{switch: False})
    for fast in (only, all_but):
        diff, _ = _compare(net, fast, x)
        assert diff < TOL, f"{switch}: {diff:.3g}"


def test_same_result_with_autograd_on_and_2d() -> None:
    """Out of ``no_grad`` the in-place element-wise work is skipped, so a gradient still flows; 2D works too."""
    net = create_model("ultralight_unet3d_t", spatial_dims=2, in_channels=1, out_channels=2)
    net = _randomize(net, shape=(4, 1, 64, 96))
    fast = optimize_for_inference(net)
    x = torch.randn(2, 1, 64, 96, requires_grad=True)
    net.eval()
    ref = net(x)
    out = fast(x)
    assert (out - ref).abs().max().item() < TOL
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fold_actually_changes_modules() -> None:
    net = create_model("ultralight_unet3d_t")
    fast = optimize_for_inference(net)
    kinds = {type(m) for m in fast.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert isinstance(fast.encoders[0], FastMKIR)
    scale_branches = [b for blk in fast.encoders for b in blk.branches if b.is_scale]
    assert len(scale_branches) == 5  # one 1x1x1 depthwise branch per encoder block became a per-channel affine
    plain_bn = sum(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert plain_bn > 0


def test_original_model_untouched() -> None:
    net = _randomize(create_model("ultralight_unet3d_t"), shape=(2, 1, 64, 64, 64))
    net.train()
    before = copy.deepcopy(net.state_dict())
    fast = optimize_for_inference(net)
    assert net.training and type(net) is UltraLightUNet
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert all(p.requires_grad for p in net.parameters())
    assert net.encoders[0].expand[0].weight.is_contiguous()  # not switched to channels-last
    assert not fast.training and isinstance(fast, UltraLightUNet)
    assert (fast.in_channels, fast.out_channels, fast.divisor) == (net.in_channels, net.out_channels, 32)


def test_rejects_bad_input_like_plain() -> None:
    net = create_model("ultralight_unet3d_t", in_channels=2).eval()
    fast = optimize_for_inference(net)
    for bad in (torch.zeros(1, 2, 40, 64, 64), torch.zeros(1, 1, 64, 64, 64), torch.zeros(2, 64, 64, 64)):
        with pytest.raises(ValueError) as plain_err:
            net(bad)
        with pytest.raises(ValueError) as fast_err:
            fast(bad)
        assert str(fast_err.value) == str(plain_err.value)
    with pytest.raises(RuntimeError, match="optimised for inference"):
        fast.train()


def test_other_models_channels_last_only() -> None:
    """Non-UltraLightUNet models keep their modules; channels-last in, contiguous out, same logits."""
    for net in (
        create_model("uxnet3d", feature_size=(8, 16, 32, 64), hidden_size=64),
        BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 8, 16, 32, 4)),
    ):
        x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(4))
        fast = optimize_for_inference(net)
        assert type(fast) is type(net) and fast is not net
        diff, _ = _compare(net, fast, x)
        assert diff < TOL
        assert not is_optimized(fast)


def test_set_cpu_threads() -> None:
    prev = set_cpu_threads(2)
    assert prev == 1 and torch.get_num_threads() == 2
    assert set_cpu_threads(1) == 2
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        set_cpu_threads(0)


def test_onnx_export_of_optimised_model(tmp_path) -> None:
    """The optimised graph exports (channels-first, BN folded) and ONNX Runtime reproduces the plain logits."""
    ort = pytest.importorskip("onnxruntime")
    shape = (1, 2, 32, 32, 64)
    net = _randomize(create_model("ultralight_unet3d_t", in_channels=2, out_channels=3), shape=(2, 2, 64, 64, 64))
    fast = optimize_for_inference(net)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    path = tmp_path / "fast.onnx"
    torch.onnx.export(fast, (x,), str(path), dynamo=False, input_names=["image"], output_names=["logits"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"image": x.numpy()})
    with torch.inference_mode():
        ref = net.eval()(x)
    assert y.shape == (1, 3, 32, 32, 64)
    assert float(abs(y - ref.numpy()).max()) < TOL
    assert ref.abs().max() > 0.5
