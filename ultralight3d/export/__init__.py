"""Deployment: export a trained model or bundle to TorchScript and ONNX and check that the exported model gives the
same logits as PyTorch.

- :mod:`.formats`: :func:`export_torchscript`, :func:`export_onnx` (dynamic batch and spatial axes);
- :mod:`.parity`: :func:`check_parity` / :class:`ParityResult`;
- :mod:`.api`: :func:`export_model`, :func:`export_checkpoint`, :func:`export_bundle` (what ``ultralight3d export``
  calls).

The ONNX Runtime wrapper lives with the other inference engines (:class:`ultralight3d.inference.engines.
OnnxRuntimeModel`), checkpoint reading in :mod:`ultralight3d.checkpoint` and bundle reading in
:func:`ultralight3d.inference.bundle_config.load_bundle`; they are re-exported here for existing callers.

Example::

    >>> from ultralight3d import create_model
    >>> from ultralight3d.export import export_onnx, OnnxRuntimeModel, check_parity
    >>> net = create_model("ultralight_unet3d_s", out_channels=3).eval()
    >>> export_onnx(net, "model.onnx", example_size=(96, 96, 96))
    >>> ort_model = OnnxRuntimeModel("model.onnx")
    >>> ort_model(torch.randn(1, 1, 96, 96, 128)).shape
    torch.Size([1, 3, 96, 96, 128])
    >>> check_parity(net, ort_model, size=(96, 96, 96)).max_abs_diff < 1e-3
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from ..checkpoint import load_state_dict, load_weights
from ..inference.engines import ONNX_META_KEY, OnnxRuntimeModel
from .api import FORMATS, export_bundle, export_checkpoint, export_model
from .formats import example_input, export_onnx, export_torchscript
from .parity import ParityResult, check_parity

__all__ = [
    "FORMATS",
    "ONNX_META_KEY",
    "ParityResult",
    "OnnxRuntimeModel",
    "load_state_dict",
    "load_bundle_network",
    "example_input",
    "export_torchscript",
    "export_onnx",
    "check_parity",
    "export_model",
    "export_checkpoint",
    "export_bundle",
]


def load_bundle_network(
    bundle_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    config_files: Sequence[str | os.PathLike] | None = None,
    overrides: dict[str, Any] | None = None,
) -> nn.Module:
    """The bundle's network with its trained weights, eval mode, CPU:
    ``load_bundle(bundle_dir, config_files, overrides, checkpoint).network``."""
    from ..inference.bundle_config import load_bundle

    return load_bundle(bundle_dir, config_files, overrides, checkpoint).network


def _load_weights(model: nn.Module, checkpoint: str | os.PathLike) -> None:
    """Old name of :func:`ultralight3d.checkpoint.load_weights` (``ultralight3d.distill`` still calls it)."""
    load_weights(model, checkpoint)
