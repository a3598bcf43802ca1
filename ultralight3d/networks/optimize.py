"""Fast inference path for the UltraLightUNet family on CPU, computing the same logits as the plain modules.

Why this exists: on a CPU the ultra-light networks are bound by memory traffic and per-operator overhead, not by
multiply-adds. A depthwise ``Conv3d`` in the default channels-first layout runs through a slow oneDNN path (a
1x1x1 depthwise conv - a per-channel scale - costs as much as a 5x5x5 one), every batch norm and ReLU6 is one more
full pass over the tensor, and the channel shuffle is a full copy. :func:`optimize_for_inference` rewrites a deep
copy of the model so that each of those costs is removed, each behind one switch:

* ``fold_bn``: batch norm (eval mode, running statistics) folded into the preceding convolution (MKIR expand /
  depthwise / project convs, attention-gate convs).
* ``scale_1x1_dw``: the 1x1x1 depthwise MKDC branch becomes ``addcmul(bias, x, weight)`` (a per-channel affine).
* ``fuse_act``: ReLU6 / ReLU / sigmoid run in place on the fresh conv outputs; the MKDC branch sum, the residual
  add and the decoder's attention multiplies and gate adds accumulate in place (only while autograd is off:
  ``torch.no_grad`` / ``torch.inference_mode``).
* ``permute_shuffle``: the channel shuffle is folded into the input-channel order of the following 1x1 projection.
* ``pointwise_matmul``: 1x1x1 convolutions on channels-last tensors run as one ``F.linear`` over the channel axis
  (PyTorch sends batch < 16 1x1 convs to its im2col path, which copies channels-last tensors to channels-first and
  back, so channels-last alone gains nothing).
* ``merge_skip``: an MKIR block's 1x1 skip conv and its projection become one matrix product over the concatenated
  channels (one full-size output written instead of two plus an add).
* ``channels_last``: weights and activations in ``channels_last_3d`` (``channels_last`` in 2D) end to end; the input
  is converted once and the logits are returned in the default contiguous layout.
* ``onednn_conv``: ungrouped 3x3(x3) convolutions run through oneDNN even at batch 1, where PyTorch's own rule
  picks its much slower im2col path for small channel counts
  (:mod:`~ultralight3d.networks.layers.onednn`; this is what pays for EGE-UNet, SegResNet and 3D UX-Net).
* ``compile``: ``torch.compile`` (inductor; needs a C++ compiler, skipped with a warning when none is found).

How it is built (timm's ``RepVitBlock.fuse()`` / ``reparameterize_model()`` pattern): each block that has a fused
form knows how to fuse itself (``fuse(**switches)`` on ``ConvNormAct``, ``MultiKernelDepthwiseConv``,
``MultiKernelInvertedResidual``, ``GroupedAttentionGate`` and ``UltraLightUNet``), and one generic walker,
:func:`~ultralight3d.networks.layers.fuse.fuse_modules`, replaces each of them in the tree by what its ``fuse``
returns. The blocks and the network keep their class and their single ``forward``; the fused state is data
(folded weights, ``inplace`` flags, a merged skip weight). The channels-last layout is added to any model by two
forward hooks (input converted on entry, output made contiguous on exit).

Measured on UltraLightUNet3D-base at 1x1x96³ (1 thread, AMD EPYC AVX-512, torch 2.13): plain 0.76 s, all switches
0.30 s; see ``benchmarks/results/cpu_speed.md`` for each switch's share. During ``torch.onnx.export`` the graph is
traced channels-first with plain 1x1 convs (ONNX has no memory formats); folding and the affine branch remain.

Any other registered model (e.g. 3D UX-Net) has no fusable blocks and gets the generic part only: a deep copy in
eval mode with ``channels_last`` weights and input. Training always uses the plain modules; calling ``.train()`` on
an optimised UltraLightUNet raises.

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
from typing import Any

import torch
import torch.nn as nn

from .layers.fuse import (
    FUSE_SWITCHES,
    FusableModule,
    FusedConvNormAct,
    add_channels_last_io,
    fuse_modules,
    fuse_switches,
    weights_to_channels_last,
)
from .layers.onednn import OneDNNConv2d, OneDNNConv3d, use_onednn_convs

__all__ = [
    "OPTIMIZATIONS",
    "optimize_for_inference",
    "is_optimized",
    "set_cpu_threads",
    "compile_available",
    "FusedConvNormAct",
]

logger = logging.getLogger(__name__)

#: the switches of :func:`optimize_for_inference` with their defaults (``compile`` is off by default: it costs
#: tens of seconds of compilation per input shape).
OPTIMIZATIONS: dict[str, bool] = {**FUSE_SWITCHES, "compile": False}


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
    onednn_conv: bool = True,
    compile: bool = False,
    compile_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Return an eval-mode copy of ``model`` that computes the same logits faster on CPU.

    ``model`` itself is never modified (the work happens on a deep copy). Every fusable block in the copy
    (:class:`~ultralight3d.networks.layers.fuse.FusableModule`: the UltraLightUNet blocks and the network itself)
    is replaced by what its ``fuse(**switches)`` returns; a model without such blocks gets ``channels_last`` (and
    ``compile``) only. The returned UltraLightUNet is still an ``UltraLightUNet`` with the same attributes
    (``in_channels``, ``divisor``, ...), the same ``forward`` and the same input-size errors; it refuses
    ``.train()``. Logits agree with ``model.eval()(x)`` to float32 rounding (max abs difference well below 1e-4,
    checked in ``tests/networks/test_optimize.py``). An already optimised model is copied as it is.

    Args:
        model: any registered network (plain modules, trained or not).
        fold_bn: fold eval-mode batch norms into the preceding convolutions.
        scale_1x1_dw: run 1x1x1 depthwise convolutions as per-channel affines.
        fuse_act: activations, branch sums and residual adds in place (only while autograd is off).
        permute_shuffle: fold the MKIR channel shuffle into the projection weights.
        pointwise_matmul: 1x1x1 convolutions on channels-last tensors as one matrix product each (PyTorch's own
            1x1 path copies channels-last tensors to channels-first and back; needs ``channels_last``).
        merge_skip: where an MKIR block has a 1x1 skip conv, compute skip + projection as one matrix product over
            the concatenated channels (needs ``pointwise_matmul``).
        channels_last: ``channels_last_3d`` weights and activations; input converted on entry, output returned
            contiguous.
        onednn_conv: dense 3x3(x3) convolutions through oneDNN at any batch size (see
            :mod:`~ultralight3d.networks.layers.onednn`).
        compile: wrap the result in ``torch.compile`` (skipped with a warning when no C++ compiler is found). The
            first call per input shape then compiles for tens of seconds.
        compile_kwargs: extra keyword arguments for ``torch.compile`` (default ``{"dynamic": False}``).

    Returns:
        The optimised module, in eval mode.
    """
    switches = fuse_switches(
        fold_bn=fold_bn,
        scale_1x1_dw=scale_1x1_dw,
        fuse_act=fuse_act,
        permute_shuffle=permute_shuffle,
        pointwise_matmul=pointwise_matmul,
        merge_skip=merge_skip,
        channels_last=channels_last,
        onednn_conv=onednn_conv,
    )
    fast = fuse_modules(copy.deepcopy(model).eval(), **switches)
    if switches["onednn_conv"]:
        use_onednn_convs(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        weights_to_channels_last(fast)
        add_channels_last_io(fast)
    if compile:
        if not compile_available():
            warnings.warn(
                "torch.compile skipped: no C++ compiler (g++/clang++) found on PATH; install one or set CXX",
                stacklevel=2,
            )
        else:
            kwargs: dict[str, Any] = {"dynamic": False}
            kwargs.update(compile_kwargs or {})
            compiled: nn.Module = torch.compile(fast, **kwargs)  # type: ignore[assignment]
            return compiled
    return fast


def is_optimized(model: nn.Module) -> bool:
    """True for a module returned by :func:`optimize_for_inference` that has a fast form: fused blocks
    (UltraLightUNet) or oneDNN dense convolutions (EGE-UNet, SegResNet, 3D UX-Net); a ``torch.compile`` wrapper is
    looked through."""
    root = getattr(model, "_orig_mod", model)
    return isinstance(root, nn.Module) and any(
        (isinstance(m, FusableModule) and m.fused) or isinstance(m, (OneDNNConv2d, OneDNNConv3d))
        for m in root.modules()
    )


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
