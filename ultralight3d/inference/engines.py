"""Inference engines other than a torch module: an ONNX model run by ONNX Runtime, callable like a network.

:class:`OnnxRuntimeModel` is what ``Predictor(engine="onnxruntime")`` and ``ultralight3d predict --engine onnxruntime``
run; :func:`ultralight3d.export.export_onnx` writes the files it reads (with the metadata entry
:data:`ONNX_META_KEY`, which it checks inputs against).

Example::

    >>> from ultralight3d.inference.engines import OnnxRuntimeModel
    >>> model = OnnxRuntimeModel("bundles/feta_ultralight_unet3d/models/model.onnx")
    >>> model(torch.randn(1, 1, 96, 96, 96)).shape
    torch.Size([1, 8, 96, 96, 96])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserInputError

__all__ = ["ONNX_META_KEY", "OnnxRuntimeModel", "onnx_providers"]

#: key under which the export metadata (JSON) is stored in the ONNX file's ``metadata_props``.
ONNX_META_KEY = "ultralight3d"


def onnx_providers(device: torch.device | str | None) -> list[str] | None:
    """ONNX Runtime providers for a torch device: CUDA first (CPU fallback) on a GPU, else ONNX Runtime's default."""
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if torch.device(device or "cpu").type == "cuda" else None


class OnnxRuntimeModel:
    """An ONNX model run by ONNX Runtime, callable like a torch network: ``model(x) -> logits``.

    It can be used as the predictor's engine and inside ``monai.inferers.sliding_window_inference``. Inputs are
    moved to the CPU as float32 numpy arrays; the output tensor is returned on the input's device.

    Args:
        path: ``.onnx`` file written by :func:`export_onnx` (any ONNX model with one input and output works).
        providers: ONNX Runtime execution providers; defaults to ``["CPUExecutionProvider"]``.
        num_threads: intra-op threads (None: ONNX Runtime's default, all cores).

    Raises:
        UserInputError: the file is missing or not a loadable ONNX model.
    """

    def __init__(
        self, path: str | os.PathLike, providers: Sequence[str] | None = None, num_threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(f"ONNX model {self.path} not found; create it with `ultralight3d export`")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:  # any load failure: one line naming the file
            raise UserInputError(f"ONNX Runtime cannot load {self.path}: {str(err).splitlines()[0][:300]}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        raw = self.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
        self.metadata: dict[str, Any] = json.loads(raw) if raw else {}
        self.in_channels: int | None = self.metadata.get("in_channels")
        self.out_channels: int | None = self.metadata.get("out_channels")
        self.divisor: int = int(self.metadata.get("divisor", 1))
        self.training = False  # looks like an nn.Module in eval mode to code that checks

    def eval(self) -> OnnxRuntimeModel:
        """No-op (an ONNX graph is always in inference mode); returns self like ``nn.Module.eval``."""
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxRuntimeModel:
        """No-op: the device is chosen by ONNX Runtime's providers; returns self like ``nn.Module.to``."""
        return self

    def _check(self, x: torch.Tensor) -> None:
        spatial = self.metadata.get("spatial_dims")
        if spatial is not None and x.dim() != spatial + 2:
            raise UserInputError(
                f"{self.path.name} expects a (B, C, {spatial} spatial dims) input, got {list(x.shape)}"
            )
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            raise UserInputError(
                f"{self.path.name} was exported for {self.in_channels} input channel(s) but got {x.shape[1]}; check "
                "the image channels against the bundle"
            )
        if any(int(s) % self.divisor for s in x.shape[2:]):
            raise UserInputError(
                f"{self.path.name} needs spatial sizes that are multiples of {self.divisor}, got {list(x.shape[2:])}; "
                "use sliding-window inference with a ROI such as 96³"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, *S) tensor (any device/dtype).

        Returns:
            logits (B, out_channels, *S) float32 on ``x.device``.
        """
        self._check(x)
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run([self.output_name], {self.input_name: arr})[0]
        return torch.from_numpy(out).to(x.device)

    forward = __call__

    def __repr__(self) -> str:
        return f"OnnxRuntimeModel({str(self.path)!r}, providers={self.session.get_providers()})"
