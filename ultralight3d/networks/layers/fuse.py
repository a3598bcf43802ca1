"""Inference-time fusion primitives (the timm ``RepVitBlock.fuse()`` / ``reparameterize_model()`` pattern).

A block that has a faster inference form subclasses :class:`FusableModule` and implements ``fuse(**switches)``,
which returns the module that replaces it: a new module (``blocks.conv.ConvNormAct.fuse`` returns a
:class:`FusedConvNormAct`) or the block itself after it has rewritten its own children
(``MultiKernelDepthwiseConv``, ``MultiKernelInvertedResidual``, ``GroupedAttentionGate``, ``UltraLightUNet``: same
class, same single ``forward``, which reads the fused state - folded weights, ``inplace`` flags, a merged skip
weight - and eval only from then on). :func:`fuse_modules` is the one walker: it replaces every
:class:`FusableModule` in a tree by what its ``fuse`` returns and descends into every other module.
:func:`~ultralight3d.networks.optimize.optimize_for_inference` runs it on a deep copy.

The switches (all on by default, see :data:`FUSE_SWITCHES` and
:func:`~ultralight3d.networks.optimize.optimize_for_inference` for what each one does) are plain keyword booleans;
each ``fuse`` reads the ones it needs through :func:`fuse_switches`.

Also here: the low-level helpers the fused forms share (batch-norm folding, activations and element-wise ops that
run in place while autograd is off, channels-last conversion).
"""

from __future__ import annotations

import copy
from typing import Any, Self

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.conv import _ConvNd

__all__ = [
    "FUSE_SWITCHES",
    "FusableModule",
    "FusedConvNormAct",
    "InplaceAct",
    "fuse_switches",
    "fuse_modules",
    "fuse_children",
    "fold_conv_bn",
    "channels_last_format",
    "to_channels_last",
    "is_channels_last",
    "weights_to_channels_last",
    "add_channels_last_io",
    "inplace_ok",
    "maybe_inplace_add",
    "maybe_inplace_mul",
    "maybe_inplace_relu",
    "pointwise_linear",
]

#: the fusion switches with their defaults (``optimize_for_inference`` adds ``compile``).
FUSE_SWITCHES: dict[str, bool] = {
    "fold_bn": True,
    "scale_1x1_dw": True,
    "fuse_act": True,
    "permute_shuffle": True,
    "pointwise_matmul": True,
    "merge_skip": True,
    "channels_last": True,
    "onednn_conv": True,
}

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRAIN_ERROR = (
    "this module was optimised for inference (batch norm folded into the convolutions) and cannot be trained; "
    "train the plain model and call optimize_for_inference() again afterwards"
)


def fuse_switches(**switches: bool) -> dict[str, bool]:
    """All fusion switches, defaults filled in and dependencies applied.

    ``pointwise_matmul`` needs ``channels_last`` (a 1x1 conv is one matrix product only over a channels-last
    tensor) and ``merge_skip`` needs ``pointwise_matmul``.

    Args:
        switches: any subset of :data:`FUSE_SWITCHES`.

    Returns:
        dict with every key of :data:`FUSE_SWITCHES`.

    Raises:
        TypeError: on a name that is not a fusion switch.
    """
    unknown = sorted(set(switches) - set(FUSE_SWITCHES))
    if unknown:
        raise TypeError(f"unknown fusion switch(es) {unknown}; choose from {list(FUSE_SWITCHES)}")
    sw = {**FUSE_SWITCHES, **{k: bool(v) for k, v in switches.items()}}
    sw["pointwise_matmul"] = sw["pointwise_matmul"] and sw["channels_last"]
    sw["merge_skip"] = sw["merge_skip"] and sw["pointwise_matmul"]
    return sw


class FusableModule(nn.Module):
    """Base of modules with an inference-time fused form.

    Subclasses implement :meth:`fuse`. A block that fuses in place sets ``self.fused = True``; from then on
    ``train(True)`` raises (its weights are folded), before any flag in the tree is touched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fused = False

    def fuse(self, **switches: bool) -> nn.Module:
        """Return the fused replacement of this module (possibly ``self``, rewritten in place; eval mode).

        Args:
            switches: fusion switches (see :func:`fuse_switches`); the ones a block does not use are ignored.
        """
        raise NotImplementedError(f"{type(self).__name__} has no fused form")

    def train(self, mode: bool = True) -> Self:
        if mode and self.fused:
            raise RuntimeError(_TRAIN_ERROR)
        return super().train(mode)


def fuse_modules(module: nn.Module, **switches: bool) -> nn.Module:
    """Replace every :class:`FusableModule` in ``module`` (``module`` included) by what its ``fuse`` returns.

    A fusable module is responsible for its own subtree (its ``fuse`` calls :func:`fuse_children` for the generic
    part); every other module is descended into. Works in place: call it on a copy to keep the original.

    Args:
        module: any module tree.
        switches: fusion switches passed to every ``fuse``.

    Returns:
        The fused tree (``module`` itself unless ``module`` is fusable and replaces itself).
    """
    return _fuse(module, switches, {})


def fuse_children(module: nn.Module, **switches: bool) -> None:
    """:func:`fuse_modules` applied to each child of ``module`` (in place), not to ``module`` itself."""
    _fuse_children(module, switches, {})


def _fuse(module: nn.Module, switches: dict[str, bool], memo: dict[int, nn.Module]) -> nn.Module:
    if id(module) in memo:  # a shared module (e.g. the spatial attention of UltraLightUNet) is fused once
        return memo[id(module)]
    if isinstance(module, FusableModule):
        fused = module.fuse(**switches)
    else:
        _fuse_children(module, switches, memo)
        fused = module
    memo[id(module)] = fused
    return fused


def _fuse_children(module: nn.Module, switches: dict[str, bool], memo: dict[int, nn.Module]) -> None:
    for name, child in list(module.named_children()):
        fused = _fuse(child, switches, memo)
        if fused is not child:
            setattr(module, name, fused)


# ----------------------------------------------------------------------------------------------------------------
# element-wise work in place while autograd is off


def inplace_ok() -> bool:
    """In-place element-wise work is only safe while autograd does not record (it may need the overwritten input)."""
    return not torch.is_grad_enabled()


def maybe_inplace_add(a: torch.Tensor, b: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``a + b``, written into ``a`` when ``inplace`` and autograd is off (``a`` must be a fresh tensor)."""
    if inplace and not torch.is_grad_enabled():
        return a.add_(b)
    return a + b


def maybe_inplace_mul(a: torch.Tensor, b: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``a * b``, written into ``a`` when ``inplace`` and autograd is off (``a`` must be a fresh tensor)."""
    if inplace and not torch.is_grad_enabled():
        return a.mul_(b)
    return a * b


def maybe_inplace_relu(a: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``relu(a)``, written into ``a`` when ``inplace`` and autograd is off (``a`` must be a fresh tensor)."""
    if inplace and not torch.is_grad_enabled():
        return a.relu_()
    return F.relu(a)


def _act_kind(act: nn.Module | None) -> str | None:
    if act is None or isinstance(act, nn.Identity):
        return None
    if isinstance(act, nn.ReLU6):
        return "relu6"
    if isinstance(act, nn.ReLU):
        return "relu"
    if isinstance(act, nn.Sigmoid):
        return "sigmoid"
    return "module"


class InplaceAct(nn.Module):
    """An activation that runs in place on its (fresh) input while autograd is off.

    ReLU, ReLU6 and sigmoid are applied with ``relu_`` / ``clamp_`` / ``sigmoid_`` under ``torch.no_grad`` /
    ``torch.inference_mode`` and out of place otherwise; any other activation module is called as it is.

    Args:
        act: the activation module to replace.

    Shapes:
        forward(x: any) -> same shape as ``x``.
    """

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.kind = _act_kind(act)
        self.act = act if self.kind == "module" else None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        inplace = inplace_ok()
        if self.kind is None:
            return y
        if self.kind == "relu6":
            return y.clamp_(0.0, 6.0) if inplace else y.clamp(0.0, 6.0)
        if self.kind == "relu":
            return y.relu_() if inplace else y.relu()
        if self.kind == "sigmoid":
            return y.sigmoid_() if inplace else y.sigmoid()
        assert self.act is not None
        return self.act(y)


# ----------------------------------------------------------------------------------------------------------------
# channels-last layout


def channels_last_format(ndim: int) -> torch.memory_format | None:
    """channels-last memory format for a tensor with ``ndim`` dimensions (None where there is none)."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def to_channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last layout (``channels_last_3d`` for 5D, ``channels_last`` for 4D, unchanged otherwise)."""
    fmt = channels_last_format(t.dim())
    return t if fmt is None else t.contiguous(memory_format=fmt)


def is_channels_last(t: torch.Tensor) -> bool:
    """True when ``t`` is a 4D/5D tensor laid out channels-last (and no ONNX export is tracing)."""
    fmt = channels_last_format(t.dim())
    return fmt is not None and t.is_contiguous(memory_format=fmt) and not torch.onnx.is_in_onnx_export()


def pointwise_linear(xs: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution of the channel concatenation of channels-last tensors as one matrix product.

    Args:
        xs: tensors (B, C_i, *S), channels-last.
        weight: (C_out, sum C_i).
        bias: (C_out,) or None.

    Returns:
        (B, C_out, *S), channels-last.
    """
    if len(xs) == 1:
        inp = xs[0].movedim(1, -1)
    else:
        inp = torch.cat([x.movedim(1, -1) for x in xs], dim=-1)
    return F.linear(inp, weight, bias).movedim(-1, 1)


def weights_to_channels_last(model: nn.Module) -> None:
    """Convert the weight of every 2D/3D convolution in ``model`` to channels-last (in place)."""
    for m in model.modules():
        if isinstance(m, _CONV):
            fmt = channels_last_format(m.weight.dim())
            if fmt is not None:
                m.weight.data = m.weight.data.contiguous(memory_format=fmt)


def _channels_last_pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if torch.onnx.is_in_onnx_export():  # ONNX has no memory formats
        return args
    return tuple(to_channels_last(a) if isinstance(a, torch.Tensor) else a for a in args)


def _contiguous_post_hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    if torch.onnx.is_in_onnx_export():
        return output
    if isinstance(output, torch.Tensor):
        return output.contiguous()
    if isinstance(output, (list, tuple)):
        return type(output)(o.contiguous() if isinstance(o, torch.Tensor) else o for o in output)
    return output


def add_channels_last_io(model: nn.Module) -> None:
    """Forward hooks on ``model``: inputs to channels-last on entry, outputs back to the default layout on exit.

    Idempotent (a model that already has the hooks is left as it is). The hooks do nothing during
    ``torch.onnx.export``.
    """
    if _channels_last_pre_hook not in model._forward_pre_hooks.values():
        model.register_forward_pre_hook(_channels_last_pre_hook)
    if _contiguous_post_hook not in model._forward_hooks.values():
        model.register_forward_hook(_contiguous_post_hook)


# ----------------------------------------------------------------------------------------------------------------
# conv -> norm -> act and its fused form


def fold_conv_bn(conv: _ConvNd, norm: nn.Module | None) -> tuple[_ConvNd, nn.Module | None]:
    """Fold an eval-mode batch norm into the convolution before it (computed in float64).

    Args:
        conv: ``nn.Conv{1,2,3}d`` (weight (O, I/groups, *k)); never modified.
        norm: the norm that follows it, or None.

    Returns:
        (a copy of ``conv`` with the folded weight and bias, None) when ``norm`` is a batch norm with running
        statistics; otherwise (a copy of ``conv``, ``norm``).
    """
    conv = copy.deepcopy(conv)
    if not (
        isinstance(norm, _BN)
        and norm.track_running_stats
        and norm.running_mean is not None
        and norm.running_var is not None
    ):
        return conv, norm
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    if norm.affine:
        scale = scale * norm.weight.detach().double()
        beta = norm.bias.detach().double()
    else:
        beta = torch.zeros_like(scale)
    new_w = w * scale.view([-1] + [1] * (w.dim() - 1))
    new_b = (b - norm.running_mean.double()) * scale + beta
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(new_w.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_b.to(dtype), requires_grad=False)
    return conv, None


def _padding(conv: _ConvNd) -> tuple[int, ...]:
    pad = conv.padding
    if isinstance(pad, str):
        return (0,) if pad == "valid" else (1,)
    return tuple(pad)


class FusedConvNormAct(FusableModule):
    """conv -> [norm] -> [act] with the batch norm folded and the activation applied in place (eval only).

    A 1x1x1 depthwise convolution (``groups == in == out channels``) becomes a per-channel affine
    ``addcmul(bias, x, weight)`` when ``scale_1x1_dw`` is set; an ungrouped 1x1 convolution on a channels-last input
    runs as one ``F.linear`` over the channel axis when ``pointwise_matmul`` is set.

    Args:
        conv: the convolution (copied, never modified).
        norm: the norm after it (folded when it is an eval-mode batch norm, kept otherwise), or None.
        act: the activation after the norm, or None.
        switches: fusion switches (see :func:`fuse_switches`); this module reads ``fold_bn``, ``scale_1x1_dw``,
            ``fuse_act`` and ``pointwise_matmul``.

    Shapes:
        forward(x: (B, C_in, *S)) -> (B, C_out, *S).
    """

    conv: _ConvNd | None
    norm: nn.Module | None
    act: nn.Module | None
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self, conv: nn.Module, norm: nn.Module | None = None, act: nn.Module | None = None, **switches: bool
    ) -> None:
        super().__init__()
        if not isinstance(conv, _ConvNd):
            raise TypeError(f"FusedConvNormAct needs a convolution, got {type(conv).__name__}")
        sw = fuse_switches(**switches)
        if sw["fold_bn"]:
            conv, norm = fold_conv_bn(conv, norm)
        else:
            conv, norm = copy.deepcopy(conv), copy.deepcopy(norm)
        self.norm = norm
        if act is None or _act_kind(act) is None:
            self.act = None
        else:
            self.act = InplaceAct(copy.deepcopy(act)) if sw["fuse_act"] else copy.deepcopy(act)
        ks = tuple(conv.kernel_size)
        unit = (
            all(k == 1 for k in ks)
            and all(s == 1 for s in conv.stride)
            and all(p == 0 for p in _padding(conv))
            and all(d == 1 for d in conv.dilation)
        )
        self.is_scale = bool(sw["scale_1x1_dw"] and unit and conv.groups == conv.in_channels == conv.out_channels)
        # a 1x1x1 convolution in channels-last layout is a matrix product over the channel axis; PyTorch routes
        # batch < 16 1x1 convs to its im2col path, which copies a channels-last input to channels-first and back
        self.is_pointwise = bool(sw["pointwise_matmul"] and not self.is_scale and unit and conv.groups == 1)
        if self.is_scale:
            shape = [1, conv.out_channels] + [1] * len(ks)
            weight = conv.weight.detach()
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(weight.flatten())
            self.register_buffer("scale", weight.reshape(shape).clone())
            self.register_buffer("shift", bias.reshape(shape).clone())
            self.conv = None
        else:
            self.conv = conv
        self.fused = True
        nn.Module.train(self, False)

    def fuse(self, **switches: bool) -> FusedConvNormAct:
        """Already fused: ``self``."""
        return self

    def permute_input_(self, perm: torch.Tensor) -> None:
        """Fold a permutation of the input channels into the weight (in place).

        Afterwards the module computes ``before(x[:, perm])`` from ``x`` (used for the channel shuffle in front of
        a 1x1 projection).

        Raises:
            ValueError: for a grouped convolution or a per-channel affine.
        """
        if self.conv is None or self.conv.groups != 1:
            raise ValueError("an input-channel permutation can only be folded into an ungrouped convolution")
        w = self.conv.weight.detach()
        new_w = torch.empty_like(w)
        new_w[:, perm] = w  # before(x[:, perm]) = sum_j W[:, j] x[perm[j]] -> W'[:, perm[j]] = W[:, j]
        self.conv.weight = nn.Parameter(new_w, requires_grad=False)

    def matmul_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight (C_out, C_in), bias (C_out,) or None) of a pointwise convolution, for :func:`pointwise_linear`."""
        assert self.conv is not None
        w = self.conv.weight.reshape(self.conv.out_channels, self.conv.in_channels)
        return w, self.conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            y = torch.addcmul(self.shift, x, self.scale)
        elif self.is_pointwise and is_channels_last(x):
            w, b = self.matmul_weight()
            y = pointwise_linear([x], w, b)
        else:
            y = self.conv(x)
        if self.norm is not None:
            y = self.norm(y)
        if self.act is not None:
            y = self.act(y)
        return y

    @classmethod
    def from_conv(cls, conv: nn.Module, **switches: bool) -> FusedConvNormAct:
        """A lone convolution (no norm, no activation) in fused form."""
        return cls(conv, None, None, **switches)
