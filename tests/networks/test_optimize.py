"""The CPU inference path (``ultralight3d.networks.optimize``) computes the same logits as the plain modules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import BasicUNet

import ultralight3d.networks  # noqa: F401  (fills the registry)
from ultralight3d.networks.blocks import (
    ConvNormAct,
    GroupedAttentionGate,
    MultiKernelDepthwiseConv,
    MultiKernelInvertedResidual,
)
from ultralight3d.networks.layers.fuse import FusedConvNormAct, InplaceAct, fuse_modules, fuse_switches
from ultralight3d.networks.layers.onednn import onednn_available
from ultralight3d.networks.nets.ultralight_unet import UltraLightUNet
from ultralight3d.networks.optimize import (
    OPTIMIZATIONS,
    is_optimized,
    optimize_for_inference,
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
    assert isinstance(fast.encoders[0], MultiKernelInvertedResidual) and fast.encoders[0].fused
    scale_branches = [b for blk in fast.encoders for b in blk.mkdc.branches if b.is_scale]
    assert len(scale_branches) == 5  # one 1x1x1 depthwise branch per encoder block became a per-channel affine
    plain_bn = sum(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert plain_bn > 0


def test_fast_paths_are_taken(monkeypatch) -> None:
    """With the defaults every MKIR with a 1x1 skip conv runs skip + projection as one matrix product, the shuffle
    is folded away, and activations stay channels-last inside the network."""
    from ultralight3d.networks.blocks import mk_conv

    net = _randomize(create_model("ultralight_unet3d_t"), shape=(2, 1, 64, 64, 64))
    fast = optimize_for_inference(net)
    blocks = list(fast.encoders) + list(fast.decoders)
    with_skip = [b for b in blocks if isinstance(b.skip, FusedConvNormAct)]
    assert len(with_skip) == 9  # every encoder and all but the last decoder change the width
    assert all(b.merged_weight is not None and b.shuffle_groups == 1 for b in with_skip)
    calls = []
    real = mk_conv.pointwise_linear
    monkeypatch.setattr(mk_conv, "pointwise_linear", lambda xs, w, b: calls.append(len(xs)) or real(xs, w, b))
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(11))
    diff, _ = _compare(net, fast, x)
    assert diff < TOL and calls == [2] * 9
    calls.clear()
    with torch.inference_mode():  # channels-first: the merged path steps aside, same logits
        out = optimize_for_inference(net, channels_last=False)(x)
    assert calls == [] and (out - net(x)).abs().max().item() < TOL


def test_one_forward_no_twin_classes() -> None:
    """The fused network is the training class with its own forward; blocks are rewritten in place, not swapped
    for parallel "fast" classes (the only new module types are the fused conv-norm-act and in-place act)."""
    net = create_model("ultralight_unet3d_t")
    fast = optimize_for_inference(net)
    assert type(fast) is UltraLightUNet and type(fast).forward is UltraLightUNet.forward
    plain_kinds = {type(m) for m in net.modules()}
    fast_kinds = {type(m) for m in fast.modules()}
    assert fast_kinds - plain_kinds == {FusedConvNormAct, InplaceAct}
    assert not any(k.__name__.startswith("Fast") for k in fast_kinds)
    assert all("forward" not in vars(m) for m in fast.modules())  # no patched forwards either
    for kind in (MultiKernelInvertedResidual, MultiKernelDepthwiseConv, GroupedAttentionGate):
        blocks = [m for m in fast.modules() if type(m) is kind]
        assert blocks and all(type(m).forward is kind.forward and m.fused for m in blocks)


def _bn_stats(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and running statistics (no calibration pass needed for a single block)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv3d | nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
            elif isinstance(m, nn.BatchNorm3d | nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module.eval()


_BLOCKS = {  # name: (factory(spatial_dims), input channels)
    "conv_norm_act": (lambda d: ConvNormAct(d, 6, 8, 3, 2, "batch", "relu6"), 6),
    "conv_norm_act_1x1_dw": (lambda d: ConvNormAct(d, 6, 6, 1, 6, "batch", "relu6"), 6),
    "conv_instance_norm": (lambda d: ConvNormAct(d, 6, 8, 1, 1, ("instance", {"affine": True}), "sigmoid"), 6),
    "mkir_skip_conv": (lambda d: MultiKernelInvertedResidual(d, 6, 8), 6),
    "mkir_identity_skip": (lambda d: MultiKernelInvertedResidual(d, 8, 8), 8),
    "mkir_concat_sequential": (lambda d: MultiKernelInvertedResidual(d, 4, 6, add=False, dw_parallel=False), 4),
    "mkir_no_mkdc_norm": (lambda d: MultiKernelInvertedResidual(d, 4, 6, mkdc_norm=False), 4),
    "gate": (lambda d: GroupedAttentionGate(d, 8, 8, 4, 3, groups=4), 8),
}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("block", list(_BLOCKS))
@pytest.mark.parametrize("channels_last", [True, False])
def test_each_block_fuse_equals_its_eval_output(block: str, spatial_dims: int, channels_last: bool) -> None:
    """``fuse()`` on one block (no walker, no network) returns a module with the block's eval output."""
    factory, cin = _BLOCKS[block]
    plain = _bn_stats(factory(spatial_dims), seed=7)
    fused = copy.deepcopy(plain).fuse(channels_last=channels_last)
    assert fused.fused and not fused.training
    gen = torch.Generator().manual_seed(8)
    size = (16,) * spatial_dims
    x = torch.randn((2, cin, *size), generator=gen)
    args = (torch.randn((2, 8, *size), generator=gen), x) if block == "gate" else (x,)
    with torch.no_grad():
        ref = plain(*args)
        fmt = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
        out = fused(*(a.contiguous(memory_format=fmt) for a in args) if channels_last else args)
    assert (out - ref).abs().max().item() < TOL
    assert ref.abs().max() > 0.1
    with pytest.raises(RuntimeError, match="optimised for inference"):
        fused.train()


def test_mkdc_fuse_and_forward_sum() -> None:
    mkdc = _bn_stats(MultiKernelDepthwiseConv(3, 6, dw_parallel=False), seed=3)
    x = torch.randn(1, 6, 8, 8, 8)
    with torch.no_grad():
        ref = mkdc(x)
        assert torch.equal(mkdc.forward_sum(x), ref[0] + ref[1] + ref[2])  # same additions, same order
        fused = copy.deepcopy(mkdc).fuse()
        assert all(isinstance(b, FusedConvNormAct) for b in fused.branches) and fused.inplace
        for a, b in zip(fused(x), ref, strict=True):
            assert (a - b).abs().max().item() < TOL
        assert (fused.forward_sum(x) - ref[0] - ref[1] - ref[2]).abs().max().item() < TOL


def test_network_fuse_in_place_and_walker() -> None:
    """``UltraLightUNet.fuse()`` fuses in place (channels-first still correct); the walker also finds fusable
    blocks nested in a model it does not know, and fusing twice changes nothing."""
    net = _randomize(create_model("ultralight_unet3d_t"), shape=(2, 1, 64, 64, 64))
    x = torch.randn(1, 1, 32, 32, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref = net(x)
    fused = copy.deepcopy(net)
    assert fused.fuse() is fused and fused.fuse() is fused and is_optimized(fused)
    with torch.no_grad():
        assert (fused(x) - ref).abs().max().item() < TOL

    wrapper = nn.Sequential(nn.Identity(), copy.deepcopy(net))
    assert fuse_modules(wrapper) is wrapper and is_optimized(wrapper) and wrapper[1].fused

    fast = optimize_for_inference(net)
    again = optimize_for_inference(fast)
    assert len(again._forward_pre_hooks) == 1 and len(again._forward_hooks) == 1  # hooks not stacked
    diff, _ = _compare(net, again, x)
    assert diff < TOL


def test_fuse_switches() -> None:
    assert fuse_switches() == {k: v for k, v in OPTIMIZATIONS.items() if k != "compile"}
    sw = fuse_switches(channels_last=False)
    assert not sw["pointwise_matmul"] and not sw["merge_skip"]  # both need a channels-last layout
    assert not fuse_switches(pointwise_matmul=False)["merge_skip"]
    with pytest.raises(TypeError, match="unknown fusion switch"):
        fuse_switches(fold_batchnorm=True)
    with pytest.raises(TypeError, match="unknown fusion switch"):
        MultiKernelInvertedResidual(3, 4, 4).fuse(typo=True)


def test_plain_state_dict_keys_unchanged() -> None:
    """The conv-norm-act blocks are Sequentials: checkpoints of the plain model keep their keys."""
    keys = set(create_model("ultralight_unet3d_t").state_dict())
    for k in (
        "encoders.0.expand.0.weight",
        "encoders.0.expand.1.running_var",
        "encoders.0.mkdc.branches.2.0.weight",
        "encoders.0.project.1.bias",
        "encoders.0.skip.weight",
        "gates.0.w_g.0.bias",
        "gates.0.psi.1.running_mean",
        "head.weight",
    ):
        assert k in keys, k
    assert not any("merged" in k for k in keys)


def test_compile_switch(monkeypatch) -> None:
    net = _randomize(create_model("ultralight_unet3d_t"), shape=(2, 1, 64, 64, 64))
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(10))
    monkeypatch.setattr("ultralight3d.networks.optimize.compile_available", lambda: False)
    with pytest.warns(UserWarning, match="torch.compile skipped"):
        plain_fast = optimize_for_inference(net, compile=True)
    assert type(plain_fast) is UltraLightUNet
    monkeypatch.undo()
    # the eager backend runs the dynamo trace (hooks, in-place flags, checks) without a C++ build
    compiled = optimize_for_inference(net, compile=True, compile_kwargs={"backend": "eager"})
    assert compiled is not plain_fast and is_optimized(compiled) and type(compiled) is not UltraLightUNet
    diff, _ = _compare(net, compiled, x)
    assert diff < TOL


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


def test_other_models_channels_last_and_onednn_convs_only() -> None:
    """Non-UltraLightUNet models keep their class and forward; channels-last in, contiguous out, dense convs
    through oneDNN (``onednn_conv``), same logits; without that switch nothing counts as optimised."""
    for net in (
        create_model("uxnet3d", feature_size=(8, 16, 32, 64), hidden_size=64),
        BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 8, 16, 32, 4)),
    ):
        x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(4))
        fast = optimize_for_inference(net)
        assert type(fast) is type(net) and fast is not net
        diff, _ = _compare(net, fast, x)
        assert diff < TOL
        assert is_optimized(fast) == onednn_available()
        assert not is_optimized(optimize_for_inference(net, onednn_conv=False))


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
