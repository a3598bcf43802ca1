"""Dense convolutions through oneDNN (the ``onednn_conv`` switch of the fast path): same logits, same state dict,
no im2col convolution left at batch 1, the ordinary convolution while autograd is on."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

from ultralight3d import create_model
from ultralight3d.networks.layers.onednn import OneDNNConv3d, onednn_available, use_onednn_convs
from ultralight3d.networks.optimize import optimize_for_inference

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")


def _im2col_3x3(model: nn.Module, x: torch.Tensor) -> int:
    """How many 3x3x3 convolutions of one forward ran through PyTorch's im2col path."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(x)
    return sum(
        e.count
        for e in prof.key_averages(group_by_input_shape=True)
        if e.key == "aten::slow_conv3d_forward" and list(e.input_shapes[1][2:]) == [3, 3, 3]
    )


@pytest.mark.parametrize("name", ["egeunet3d", "segresnet"])
def test_fast_path_leaves_no_im2col_convolution_and_keeps_the_logits(name: str) -> None:
    torch.manual_seed(0)
    net = create_model(name, in_channels=1, out_channels=3).eval()
    x = torch.randn(1, 1, 32, 64, 64)
    assert _im2col_3x3(net, x) > 0  # PyTorch's own rule at batch 1 and small channel counts
    fast = optimize_for_inference(net, channels_last=False)
    assert _im2col_3x3(fast, x) == 0
    assert any(type(m) is OneDNNConv3d for m in fast.modules())
    assert not any(type(m) is OneDNNConv3d for m in net.modules())  # the original is untouched
    assert list(fast.state_dict()) == list(net.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), net(x), rtol=0, atol=1e-4)
    plain_switch = optimize_for_inference(net, channels_last=False, onednn_conv=False)
    assert not any(type(m) is OneDNNConv3d for m in plain_switch.modules())


def test_only_dense_small_kernel_convolutions_are_replaced() -> None:
    model = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1),  # replaced
        nn.Conv3d(4, 4, 3, padding=1, groups=4),  # grouped: oneDNN already
        nn.Conv3d(4, 4, 1),  # 1x1x1: not a spatial kernel
        nn.Conv3d(4, 2, 7, padding=3),  # kernel > 3: oneDNN already
        nn.Conv3d(2, 2, 3, padding="same"),  # string padding: left alone
    )
    assert use_onednn_convs(model) == 1
    assert [type(m) for m in model] == [OneDNNConv3d, nn.Conv3d, nn.Conv3d, nn.Conv3d, nn.Conv3d]


def test_training_uses_the_ordinary_convolution_and_gradients_flow() -> None:
    torch.manual_seed(0)
    ref = nn.Conv3d(2, 4, 3, padding=1)
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1))
    model[0].load_state_dict(ref.state_dict())
    use_onednn_convs(model)
    x = torch.randn(1, 2, 8, 8, 8, requires_grad=True)
    out = model(x)
    torch.testing.assert_close(out, ref(x), rtol=0, atol=0)  # grad on: exactly F.conv3d
    out.square().sum().backward()
    assert model[0].weight.grad is not None and torch.isfinite(model[0].weight.grad).all()
