"""Fast inference path for the UltraLightUNet family on CPU, computing the same logits as the plain modules.

Why this exists: on a CPU the ultra-light networks are bound by memory traffic and per-operator overhead, not by
multiply-adds. A depthwise ``Conv3d`` in the default channels-first layout runs through a slow oneDNN path (a
1x1x1 depthwise conv - a per-channel scale - costs as much as a 5x5x5 one), every batch norm and ReLU6 is one more
full pass over the tensor, and the channel shuffle is a full copy. :func:`optimize_for_inference` rewrites a deep
copy of the model so that each of those costs is removed, each behind one switch:

* ``fold_bn``: batch norm (eval mode, running statistics) folded into the preceding convolution (MKIR expand /
  depthwise / project convs, attention-gate convs).
* ``scale_1x1_dw``: the 1x1x1 depthwise MKDC branch becomes ``addcmul(bias, x, weight)`` (a per-channel affine).
* ``fuse_act``: ReLU6 / ReLU / sigmoid run in place on the fresh conv outputs; the MKDC branch sum and the residual
  add accumulate in place (only while autograd is off: ``torch.no_grad`` / ``torch.inference_mode``).
* ``permute_shuffle``: the channel shuffle is folded into the input-channel order of the following 1x1 projection.
* ``pointwise_matmul``: 1x1x1 convolutions on channels-last tensors run as one ``F.linear`` over the channel axis
  (PyTorch sends batch < 16 1x1 convs to its im2col path, which copies channels-last tensors to channels-first and
  back, so channels-last alone gains nothing).
* ``merge_skip``: an MKIR block's 1x1 skip conv and its projection become one matrix product over the concatenated
  channels (one full-size output written instead of two plus an add).
* ``channels_last``: weights and activations in ``channels_last_3d`` (``channels_last`` in 2D) end to end; the input
  is converted once and the logits are returned in the default contiguous layout.
* ``compile``: ``torch.compile`` (inductor; needs a C++ compiler, skipped with a warning when none is found).

Measured on UltraLightUNet3D-base at 1x1x96³ (1 thread, AMD EPYC AVX-512, torch 2.13): plain 0.76 s, all switches
0.30 s; see ``benchmarks/results/cpu_speed.md`` for each switch's share. During ``torch.onnx.export`` the graph is
traced channels-first with plain 1x1 convs (ONNX has no memory formats); folding and the affine branch remain.

Any other registered model (e.g. 3D UX-Net) gets the generic part only: a deep copy in eval mode with
``channels_last`` weights and input. Training always uses the plain modules; calling ``.train()`` on an optimised
UltraLightUNet raises.

Example::

    >>> import torch
    >>> from ultralight3d import create_model
    >>> from ultralight3d.networks.optimize import optimize_for_inference, set_cpu_threads
    >>> net = create_model("ultralight_unet3d_base")          # trained weights loaded here
    >>> fast = optimize_for_inference(net)                    # net itself is left untouched
    >>> with torch.inference_mode():
    ...     logits = fast(torch.randn(1, 1, 96, 96, 96))      # (1, 2, 96, 96, 96), same as net.eval()(x)
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks.attention import GroupedAttentionGate
from .blocks.mk_conv import MultiKernelInvertedResidual, channel_shuffle
from .nets.ultralight_unet import UltraLightUNet

__all__ = [
    "OPTIMIZATIONS",
    "optimize_for_inference",
    "is_optimized",
    "set_cpu_threads",
    "compile_available",
    "FusedConvNormAct",
    "FastMKIR",
    "FastGroupedAttentionGate",
]

logger = logging.getLogger(__name__)

#: the switches of :func:`optimize_for_inference` with their defaults (``compile`` is off by default: it costs
#: tens of seconds of compilation per input shape).
OPTIMIZATIONS: dict[str, bool] = {
    "fold_bn": True,
    "scale_1x1_dw": True,
    "fuse_act": True,
    "permute_shuffle": True,
    "pointwise_matmul": True,
    "merge_skip": True,
    "channels_last": True,
    "compile": False,
}

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _memory_format(ndim: int) -> torch.memory_format | None:
    """channels-last memory format for a tensor with ``ndim`` dimensions (None where there is none)."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def _to_channels_last(t: torch.Tensor) -> torch.Tensor:
    fmt = _memory_format(t.dim())
    return t if fmt is None else t.contiguous(memory_format=fmt)


def _inplace_ok() -> bool:
    """In-place element-wise work is only safe while autograd does not record (it may need the overwritten input)."""
    return not torch.is_grad_enabled()


class _EvalOnly:
    """Mixin: the optimised modules hold folded weights and have no training behaviour."""

    def train(self, mode: bool = True):  # type: ignore[no-untyped-def]
        if mode:
            raise RuntimeError(
                "this module was optimised for inference (batch norm folded into the convolutions) and cannot be "
                "trained; train the plain model and call optimize_for_inference() again afterwards"
            )
        return super().train(False)  # type: ignore[misc]


def _fold_conv_bn(conv: nn.Module, norm: nn.Module | None) -> tuple[nn.Module, nn.Module | None]:
    """Fold an eval-mode batch norm into the convolution before it.

    Args:
        conv: ``nn.Conv{1,2,3}d`` (weight (O, I/groups, *k)).
        norm: the norm that follows it, or None.

    Returns:
        (conv with folded weight and bias, None) when ``norm`` is a batch norm with running statistics; otherwise
        (a copy of ``conv``, ``norm``) unchanged.
    """
    conv = copy.deepcopy(conv)
    if not (
        isinstance(norm, _BN) and norm.track_running_stats and norm.running_mean is not None
        and norm.running_var is not None and isinstance(conv, _CONV)
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


class FusedConvNormAct(_EvalOnly, nn.Module):
    """conv -> [norm] -> [act] with the batch norm folded and the activation applied in place.

    A 1x1x1 depthwise convolution (``groups == in == out channels``) becomes a per-channel affine
    ``addcmul(bias, x, weight)`` when ``scale_1x1_dw`` is set.

    Args:
        conv: the convolution.
        norm: the norm after it (folded when it is an eval-mode batch norm, kept otherwise), or None.
        act: the activation after the norm, or None.
        fold_bn: fold a batch norm into the convolution.
        scale_1x1_dw: run a 1x1x1 depthwise convolution as a per-channel affine.
        fuse_act: apply ReLU / ReLU6 / sigmoid in place when autograd is off.
        pointwise_matmul: run an ungrouped 1x1x1 convolution on a channels-last input as one matrix product
            (``F.linear`` over the channel axis, output stays channels-last).
        in_perm: permutation of the input channels folded into the weight: the module then computes
            ``original(x[:, in_perm])`` from ``x`` (used for the channel shuffle before a 1x1 projection).

    Shapes:
        forward(x: (B, C_in, *S)) -> (B, C_out, *S).
    """

    def __init__(
        self,
        conv: nn.Module,
        norm: nn.Module | None = None,
        act: nn.Module | None = None,
        *,
        fold_bn: bool = True,
        scale_1x1_dw: bool = True,
        fuse_act: bool = True,
        pointwise_matmul: bool = True,
        in_perm: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if fold_bn:
            conv, norm = _fold_conv_bn(conv, norm)
        else:
            conv, norm = copy.deepcopy(conv), copy.deepcopy(norm)
        if in_perm is not None:
            if conv.groups != 1:
                raise ValueError("an input-channel permutation can only be folded into an ungrouped convolution")
            w = conv.weight.detach()
            new_w = torch.empty_like(w)
            new_w[:, in_perm] = w  # original(x[:, perm]) = sum_j W[:, j] x[perm[j]] -> W'[:, perm[j]] = W[:, j]
            conv.weight = nn.Parameter(new_w, requires_grad=False)
        self.norm = norm
        self.act_kind = _act_kind(act) if fuse_act else ("module" if _act_kind(act) is not None else None)
        self.act = act if self.act_kind == "module" else None
        ks = tuple(conv.kernel_size)
        self.is_scale = bool(
            scale_1x1_dw and all(k == 1 for k in ks) and conv.groups == conv.in_channels == conv.out_channels
            and all(s == 1 for s in conv.stride) and all(p == 0 for p in _padding(conv))
        )
        # a 1x1x1 convolution in channels-last layout is a matrix product over the channel axis; PyTorch routes
        # batch < 16 1x1 convs to its im2col path, which copies a channels-last input to channels-first and back
        self.is_pointwise = bool(
            pointwise_matmul and not self.is_scale and all(k == 1 for k in ks) and conv.groups == 1
            and all(s == 1 for s in conv.stride) and all(p == 0 for p in _padding(conv))
            and all(d == 1 for d in conv.dilation)
        )
        if self.is_scale:
            nd = len(ks)
            shape = [1, conv.out_channels] + [1] * nd
            self.register_buffer("scale", conv.weight.detach().reshape(shape).clone())
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(conv.weight.detach().flatten())
            self.register_buffer("shift", bias.reshape(shape).clone())
            self.conv = None
        else:
            self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            y = torch.addcmul(self.shift, x, self.scale)
        elif (
            self.is_pointwise and x.dim() in (4, 5) and x.is_contiguous(memory_format=_memory_format(x.dim()))
            and not torch.onnx.is_in_onnx_export()
        ):
            w = self.conv.weight.reshape(self.conv.out_channels, self.conv.in_channels)
            y = F.linear(x.movedim(1, -1), w, self.conv.bias).movedim(-1, 1)
        else:
            y = self.conv(x)
        if self.norm is not None:
            y = self.norm(y)
        return _apply_act(y, self.act_kind, self.act)


def _padding(conv: nn.Module) -> tuple[int, ...]:
    pad = conv.padding
    if isinstance(pad, str):
        return (0,) if pad == "valid" else (1,)
    return tuple(pad)


def _apply_act(y: torch.Tensor, kind: str | None, module: nn.Module | None) -> torch.Tensor:
    if kind is None:
        return y
    inplace = _inplace_ok()
    if kind == "relu6":
        return y.clamp_(0.0, 6.0) if inplace else y.clamp(0.0, 6.0)
    if kind == "relu":
        return y.relu_() if inplace else y.relu()
    if kind == "sigmoid":
        return y.sigmoid_() if inplace else y.sigmoid()
    assert module is not None
    return module(y)


def _split_cna(seq: nn.Module) -> tuple[nn.Module, nn.Module | None, nn.Module | None]:
    """Split a ``_conv_norm_act`` Sequential [conv, norm?, act?] into its parts."""
    mods = list(seq.children()) if isinstance(seq, nn.Sequential) else [seq]
    conv, rest = mods[0], mods[1:]
    norm = act = None
    for m in rest:
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)) and act is None:
            norm = m
        else:
            act = m
    return conv, norm, act


class FastMKIR(_EvalOnly, nn.Module):
    """Inference version of :class:`~ultralight3d.networks.blocks.mk_conv.MultiKernelInvertedResidual`.

    Same function; batch norms folded, 1x1x1 depthwise branch as a per-channel affine, ReLU6 and the branch sum
    in place, channel shuffle folded into the projection weights (see :func:`optimize_for_inference` switches).

    Shapes:
        forward(x: (B, in_channels, *S)) -> (B, out_channels, *S).
    """

    def __init__(self, block: MultiKernelInvertedResidual, **switches: bool) -> None:
        super().__init__()
        fold = {k: switches[k] for k in ("fold_bn", "scale_1x1_dw", "fuse_act", "pointwise_matmul")}
        self.add = block.add
        self.dw_parallel = block.mkdc.dw_parallel
        self.fuse_act = switches["fuse_act"]
        self.expand = FusedConvNormAct(*_split_cna(block.expand), **fold)
        self.branches = nn.ModuleList(FusedConvNormAct(*_split_cna(b), **fold) for b in block.mkdc.branches)
        conv, norm, act = _split_cna(block.project)
        combined = conv.in_channels
        self.shuffle_groups = block.shuffle_groups
        perm = None
        if switches["permute_shuffle"] and conv.groups == 1:
            perm = channel_shuffle(torch.arange(combined).view(1, combined, 1), block.shuffle_groups).flatten()
            self.shuffle_groups = 1  # folded into the weights
        self.project = FusedConvNormAct(conv, norm, act, **fold, in_perm=perm)
        skip = block.skip
        self.skip = FusedConvNormAct(skip, **fold) if isinstance(skip, _CONV) else copy.deepcopy(skip)
        # skip conv + projection as one matrix product over [out, x] (saves writing one full-size tensor)
        self.register_buffer("merged_weight", None)
        self.register_buffer("merged_bias", None)
        if (
            switches["merge_skip"] and isinstance(self.skip, FusedConvNormAct) and self.skip.is_pointwise
            and self.project.is_pointwise and self.project.norm is None and self.project.act_kind is None
            and self.skip.norm is None and self.skip.act_kind is None
        ):
            wp = self.project.conv.weight.detach().flatten(1)
            ws = self.skip.conv.weight.detach().flatten(1)
            self.register_buffer("merged_weight", torch.cat([wp, ws], dim=1).contiguous())
            bp, bs = self.project.conv.bias, self.skip.conv.bias
            bias = (bp.detach() if bp is not None else 0) + (bs.detach() if bs is not None else 0)
            self.register_buffer("merged_bias", bias if isinstance(bias, torch.Tensor) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = self.fuse_act and _inplace_ok()
        h = self.expand(x)
        outputs: list[torch.Tensor] = []
        acc: torch.Tensor | None = None
        for branch in self.branches:
            b = branch(h)
            if self.add:
                if acc is None:
                    acc = b
                elif inplace:
                    acc.add_(b)
                else:
                    acc = acc + b
            else:
                outputs.append(b)
            if not self.dw_parallel:
                h = h + b
        out = acc if self.add else torch.cat(outputs, dim=1)
        assert out is not None
        out = channel_shuffle(out, self.shuffle_groups)
        fmt = _memory_format(x.dim())
        if (
            self.merged_weight is not None and fmt is not None and not torch.onnx.is_in_onnx_export()
            and out.is_contiguous(memory_format=fmt) and x.is_contiguous(memory_format=fmt)
        ):
            both = torch.cat([out.movedim(1, -1), x.movedim(1, -1)], dim=-1)
            return F.linear(both, self.merged_weight, self.merged_bias).movedim(-1, 1)
        y = self.project(out)
        s = self.skip(x)
        return y.add_(s) if inplace else s + y


class FastGroupedAttentionGate(_EvalOnly, nn.Module):
    """Inference version of :class:`~ultralight3d.networks.blocks.attention.GroupedAttentionGate` (BN folded).

    Shapes:
        forward(g: (B, gate_channels, *S), x: (B, skip_channels, *S)) -> (B, skip_channels, *S).
    """

    def __init__(self, gate: GroupedAttentionGate, **switches: bool) -> None:
        super().__init__()
        fold = {k: switches[k] for k in ("fold_bn", "scale_1x1_dw", "fuse_act", "pointwise_matmul")}
        self.fuse_act = switches["fuse_act"]
        self.w_g = FusedConvNormAct(*_split_cna(gate.w_g), **fold)
        self.w_x = FusedConvNormAct(*_split_cna(gate.w_x), **fold)
        self.act_kind = _act_kind(gate.act) if self.fuse_act else "module"
        self.act_module = copy.deepcopy(gate.act)
        self.psi = FusedConvNormAct(*_split_cna(gate.psi), **fold)  # conv -> BN -> sigmoid

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        inplace = self.fuse_act and _inplace_ok()
        a = self.w_g(g)
        a = a.add_(self.w_x(x)) if inplace else a + self.w_x(x)
        a = _apply_act(a, self.act_kind, self.act_module)
        return x * self.psi(a)


class _FastUltraLightUNet(_EvalOnly, UltraLightUNet):
    """An :class:`UltraLightUNet` whose blocks were swapped for their inference versions (built by
    :func:`optimize_for_inference`, never directly). Same attributes and input checks as the plain network."""

    _fast_switches: dict[str, bool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S), every spatial size a multiple of 32.

        Returns:
            logits (B, out_channels, *S), contiguous (default layout).
        """
        if torch.jit.is_scripting() or not (torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()):
            self._check_input(x)
        sw = self._fast_switches
        inplace = sw["fuse_act"] and _inplace_ok()
        # ONNX has no memory formats: an export traces the channels-first graph (ONNX Runtime picks its own layout)
        channels_last = sw["channels_last"] and not torch.onnx.is_in_onnx_export()
        if channels_last:
            x = _to_channels_last(x)
        if self.input_repeat > 1:
            x = x.repeat_interleave(self.input_repeat, dim=1)
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            x = self.pool(encoder(x))
            skips.append(x)
        out = skips.pop()
        i = 0
        for ca, decoder, gate in zip(self.channel_attn, self.decoders, self.gates):
            out = out.mul_(ca(out)) if inplace else ca(out) * out
            out = out.mul_(self.spatial_attn(out)) if inplace else self.spatial_attn(out) * out
            out = F.interpolate(decoder(out), scale_factor=2.0, mode=self.interp_mode)
            out = out.relu_() if inplace else F.relu(out)
            if i < 4:
                g = gate(out, skips[3 - i])
                out = out.add_(g) if inplace else out + g
            i += 1
        logits = self.head(out)
        return logits.contiguous() if channels_last else logits


class _ChannelsLastHooks:
    """Forward pre/post hooks: input to channels-last, output back to the default contiguous layout."""

    @staticmethod
    def pre(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_to_channels_last(a) if isinstance(a, torch.Tensor) else a for a in args)

    @staticmethod
    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return output.contiguous()
        if isinstance(output, (list, tuple)):
            return type(output)(o.contiguous() if isinstance(o, torch.Tensor) else o for o in output)
        return output


def compile_available() -> bool:
    """True when ``torch.compile`` can build CPU kernels here (a C++ compiler is on PATH or named by ``CXX``)."""
    cxx = os.environ.get("CXX")
    return bool((cxx and shutil.which(cxx)) or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"))


def optimize_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    scale_1x1_dw: bool = True,
    fuse_act: bool = True,
    permute_shuffle: bool = True,
    pointwise_matmul: bool = True,
    merge_skip: bool = True,
    channels_last: bool = True,
    compile: bool = False,
    compile_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Return an eval-mode copy of ``model`` that computes the same logits faster on CPU.

    ``model`` itself is never modified (the work happens on a deep copy). For an
    :class:`~ultralight3d.networks.nets.ultralight_unet.UltraLightUNet` every switch applies; any other model gets
    ``channels_last`` (and ``compile``) only. The returned UltraLightUNet is still an ``UltraLightUNet`` instance
    with the same attributes (``in_channels``, ``divisor``, ...) and the same input-size errors; it refuses
    ``.train()``. Logits agree with ``model.eval()(x)`` to float32 rounding (max abs difference well below 1e-4,
    checked in ``tests/networks/test_optimize.py``).

    Args:
        model: any registered network (plain modules, trained or not).
        fold_bn: fold eval-mode batch norms into the preceding convolutions.
        scale_1x1_dw: run 1x1x1 depthwise convolutions as per-channel affines.
        fuse_act: activations, branch sums and residual adds in place (only while autograd is off).
        permute_shuffle: fold the MKIR channel shuffle into the projection weights.
        pointwise_matmul: 1x1x1 convolutions on channels-last tensors as one matrix product each (PyTorch's own
            1x1 path copies channels-last tensors to channels-first and back).
        merge_skip: where an MKIR block has a 1x1 skip conv, compute skip + projection as one matrix product over
            the concatenated channels (needs ``pointwise_matmul``).
        channels_last: ``channels_last_3d`` weights and activations; input converted on entry, output returned
            contiguous.
        compile: wrap the result in ``torch.compile`` (skipped with a warning when no C++ compiler is found). The
            first call per input shape then compiles for tens of seconds.
        compile_kwargs: extra keyword arguments for ``torch.compile`` (default ``{"dynamic": False}``).

    Returns:
        The optimised module, in eval mode.
    """
    switches = {
        "fold_bn": fold_bn,
        "scale_1x1_dw": scale_1x1_dw,
        "fuse_act": fuse_act,
        "permute_shuffle": permute_shuffle,
        "pointwise_matmul": pointwise_matmul and channels_last,
        "merge_skip": merge_skip and pointwise_matmul and channels_last,
        "channels_last": channels_last,
    }
    if isinstance(model, _FastUltraLightUNet):
        fast: nn.Module = copy.deepcopy(model)
    elif isinstance(model, UltraLightUNet):
        fast = _optimize_ultralight(model, switches)
    else:
        fast = copy.deepcopy(model).eval()
        if channels_last:
            fast.register_forward_pre_hook(_ChannelsLastHooks.pre)
            fast.register_forward_hook(_ChannelsLastHooks.post)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        _weights_to_channels_last(fast)
    if compile:
        if not compile_available():
            warnings.warn("torch.compile skipped: no C++ compiler (g++/clang++) found on PATH; install one or set CXX")
        else:
            kwargs = {"dynamic": False}
            kwargs.update(compile_kwargs or {})
            compiled: Callable[..., Any] = torch.compile(fast, **kwargs)
            return compiled  # type: ignore[return-value]
    return fast


def is_optimized(model: nn.Module) -> bool:
    """True for a module returned by :func:`optimize_for_inference` for an UltraLightUNet."""
    return isinstance(getattr(model, "_orig_mod", model), _FastUltraLightUNet)


def _weights_to_channels_last(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, _CONV) and _memory_format(m.weight.dim()) is not None:
            m.to(memory_format=_memory_format(m.weight.dim()))


def _optimize_ultralight(model: UltraLightUNet, switches: dict[str, bool]) -> UltraLightUNet:
    was_training = model.training
    model.eval()  # only to read the modules in eval form; restored below
    try:
        fast = copy.deepcopy(model)
    finally:
        model.train(was_training)
    fast.eval()
    fast.encoders = nn.ModuleList(FastMKIR(b, **switches) for b in fast.encoders)
    fast.decoders = nn.ModuleList(FastMKIR(b, **switches) for b in fast.decoders)
    fast.gates = nn.ModuleList(
        FastGroupedAttentionGate(g, **switches) if isinstance(g, GroupedAttentionGate) else g for g in fast.gates
    )
    fold = {k: switches[k] for k in ("fold_bn", "scale_1x1_dw", "fuse_act", "pointwise_matmul")}
    fast.head = FusedConvNormAct(fast.head, **fold)
    fast.__class__ = _FastUltraLightUNet
    fast._fast_switches = dict(switches)
    nn.Module.train(fast, False)
    return fast


def set_cpu_threads(num_threads: int | None = None, interop_threads: int | None = None) -> int:
    """Set the intra-op thread count of PyTorch (and, once per process, the inter-op count).

    Args:
        num_threads: intra-op threads; None: the number of CPU cores this process may use.
        interop_threads: inter-op threads; ignored (with a debug log line) once parallel work has started.

    Returns:
        The previous intra-op thread count.
    """
    prev = torch.get_num_threads()
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(int(num_threads))
    if interop_threads is not None:
        try:
            torch.set_num_interop_threads(int(interop_threads))
        except RuntimeError as err:  # only allowed before the first parallel work
            logger.debug("inter-op threads left unchanged: %s", err)
    return prev
