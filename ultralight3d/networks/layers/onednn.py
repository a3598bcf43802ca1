"""Dense convolutions that always run through oneDNN on the CPU at inference.

PyTorch (2.13) sends a float32 CPU convolution to oneDNN only when one of these holds: it is grouped, strided or
dilated, its kernel is larger than 3 in both last axes, the batch is larger than 1, or ``N*C*D*H`` of the input
exceeds 20480; otherwise it takes its im2col path (``aten::slow_conv3d_forward``). The rule was made for 2D
images: in 3D it sends the full-resolution 3x3x3 convolutions of a small network at batch 1 (the sliding-window
case) to im2col, which is 2-20x slower there (measured on the CPU of ``benchmarks/results/cpu_speed.md``: 1->8
channels at 96³ 78.6 -> 37.0 ms, 8->16 at 48³ 100.3 -> 4.9 ms, 16->24 at 24³ 14.6 -> 2.2 ms; 2 threads).

:func:`use_onednn_convs` replaces each ungrouped convolution with a kernel of at most 3 in its last two axes by
:class:`OneDNNConv2d` / :class:`OneDNNConv3d`: the same class family (``isinstance(m, nn.Conv3d)`` holds), the same
parameters and state-dict keys, calling ``torch.ops.aten.mkldnn_convolution`` when the input is a float32 CPU
tensor and autograd is off, and the ordinary convolution otherwise (training, other dtypes and devices, ONNX
export and tracing). The result equals the im2col path up to float32 summation order.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

__all__ = ["OneDNNConv2d", "OneDNNConv3d", "use_onednn_convs", "onednn_available"]


def onednn_available() -> bool:
    """True when this PyTorch build has oneDNN (mkldnn) for the CPU."""
    return bool(torch.backends.mkldnn.is_available())


def _use_onednn(x: torch.Tensor) -> bool:
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()


class _OneDNNConv(_ConvNd):
    """The oneDNN forward both convolutions share; anything else goes to the torch convolution it is mixed into."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if _use_onednn(input):
            return torch.ops.aten.mkldnn_convolution(
                input, weight, bias, list(self.padding), list(self.stride), list(self.dilation), self.groups
            )
        return super()._conv_forward(input, weight, bias)  # nn.Conv3d/nn.Conv2d: padding modes and all


class OneDNNConv3d(_OneDNNConv, nn.Conv3d):
    """``nn.Conv3d`` that runs through oneDNN on the CPU at inference (see the module docstring)."""


class OneDNNConv2d(_OneDNNConv, nn.Conv2d):
    """``nn.Conv2d`` that runs through oneDNN on the CPU at inference (see the module docstring)."""


_REPLACE: dict[type[nn.Module], type[nn.Module]] = {nn.Conv3d: OneDNNConv3d, nn.Conv2d: OneDNNConv2d}


def _eligible(m: nn.Module) -> bool:
    if type(m) not in _REPLACE:
        return False
    conv: nn.Conv2d | nn.Conv3d = m  # type: ignore[assignment]
    return (
        conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.kernel_size[-1] <= 3
        and conv.kernel_size[-2] <= 3
        and any(k > 1 for k in conv.kernel_size)
    )


def _replacement(conv: nn.Module) -> nn.Module:
    kind = _REPLACE[type(conv)]
    c: nn.Conv2d | nn.Conv3d = conv  # type: ignore[assignment]
    new = kind(
        c.in_channels, c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
        dilation=c.dilation, groups=c.groups, bias=c.bias is not None, device="meta",
    )  # fmt: skip
    new.weight = c.weight
    new.bias = c.bias  # type: ignore[assignment]
    new.train(c.training)
    return new


def use_onednn_convs(model: nn.Module) -> int:
    """Replace (in place) every eligible dense convolution of ``model`` by its oneDNN form; returns the count.

    Parameters are shared with the replaced modules (no copy): call it on a copy to keep the original.
    """
    if not onednn_available():
        return 0
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _eligible(child):
                setattr(parent, name, _replacement(child))
                count += 1
    return count
