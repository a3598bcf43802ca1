"""Inference engines: how a network's forward passes run. A torch module, an ONNX model run by ONNX Runtime, or the
network compiled by OpenVINO for the CPU, each callable like a network (``model(x) -> logits``).

* ``torch``: the torch module (on the CPU through the fast path, :func:`~ultralight3d.networks.optimize.
  optimize_for_inference`).
* ``openvino``: :class:`OpenVINOModel`, the network's ONNX graph compiled by OpenVINO's CPU plugin. For a torch
  network the graph is exported once and kept in the cache (:func:`cached_onnx`, :func:`cache_dir`), keyed by the
  architecture and the weights, so later runs only compile it (~0.3-0.5 s per window shape). On the 2-core AMD
  EPYC of ``benchmarks/results/predict_cpu_engines.md`` it runs UltraLightUNet3D's windows about 2x faster than the
  torch fast path at float32, with the same logits to float32 rounding.
* ``onnxruntime``: :class:`OnnxRuntimeModel`, an exported ``.onnx`` file run by ONNX Runtime (slower than the torch
  fast path on the CPU; it is there for ``.onnx`` files and for CUDA without torch).
* ``auto`` (the default): on the CPU with OpenVINO installed (:func:`resolve_engine`), the predictor runs OpenVINO
  for cases with enough windows to repay its compile time (``AUTO_OPENVINO_VOXELS`` in
  :mod:`ultralight3d.inference.predictor`) and the torch fast path for smaller ones; else torch.

``precision="bf16"`` runs OpenVINO (or torch's CPU autocast) in bfloat16 where the CPU has native bf16 arithmetic
(AVX512_BF16/AMX); it is faster again but changes the logits by ~1e-3. ``precision="auto"`` (the predictor's default)
runs OpenVINO in bf16 on such CPUs, as CUDA runs float16 autocast by default, and everything else in float32 (torch's
CPU autocast is no faster than its float32 fast path); agreement with float32 on the trained models is in
``benchmarks/results/engines_cpu.md``.

:func:`ultralight3d.export.export_onnx` writes the ONNX files both engines read (with the metadata entry
:data:`ONNX_META_KEY`, which they check inputs against).

Example::

    >>> from ultralight3d.inference.engines import OnnxRuntimeModel
    >>> model = OnnxRuntimeModel("bundles/feta_ultralight_unet3d/models/model.onnx")
    >>> model(torch.randn(1, 1, 96, 96, 96)).shape
    torch.Size([1, 8, 96, 96, 96])
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserInputError
from .engine_names import CACHE_ENV, ENGINES, PRECISIONS, cache_dir, openvino_available

__all__ = [
    "CACHE_ENV",
    "ENGINES",
    "ONNX_META_KEY",
    "PRECISIONS",
    "OnnxRuntimeModel",
    "OpenVINOModel",
    "cache_dir",
    "cached_onnx",
    "cpu_has_bf16",
    "export_form",
    "onnx_providers",
    "openvino_available",
    "resolve_engine",
]

logger = logging.getLogger(__name__)

#: key under which the export metadata (JSON) is stored in the ONNX file's ``metadata_props``.
ONNX_META_KEY = "ultralight3d"


def onnx_providers(device: torch.device | str | None) -> list[str] | None:
    """ONNX Runtime providers for a torch device: CUDA first (CPU fallback) on a GPU, else ONNX Runtime's default."""
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if torch.device(device or "cpu").type == "cuda" else None


@functools.cache
def cpu_has_bf16() -> bool:
    """True when this CPU computes in bfloat16 natively (AVX512_BF16 or AMX), so ``precision="bf16"`` is faster.

    OpenVINO's CPU plugin says so in its ``OPTIMIZATION_CAPABILITIES`` (and runs a bf16 request in float32 on other
    CPUs); without OpenVINO, oneDNN's bf16 support check in torch decides. Asked once per process.
    """
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # not installed, or its CPU plugin cannot start: ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class _ExportedModel:
    """What the ONNX-graph engines share: the export metadata (channels, divisor, spatial dims), the input checks
    against it, and the ``nn.Module``-like no-ops the predictor calls (``eval``, ``to``)."""

    path: Path
    metadata: dict[str, Any]

    def _set_metadata(self, raw: str | None) -> None:
        self.metadata = json.loads(raw) if raw else {}
        self.in_channels: int | None = self.metadata.get("in_channels")
        self.out_channels: int | None = self.metadata.get("out_channels")
        self.divisor: int = int(self.metadata.get("divisor", 1))
        self.training = False  # looks like an nn.Module in eval mode to code that checks

    def eval(self) -> Any:
        """No-op (an ONNX graph is always in inference mode); returns self like ``nn.Module.eval``."""
        return self

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """No-op: the engine chooses its device; returns self like ``nn.Module.to``."""
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

    @staticmethod
    def _array(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


class OnnxRuntimeModel(_ExportedModel):
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
        self._set_metadata(self.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, *S) tensor (any device/dtype).

        Returns:
            logits (B, out_channels, *S) float32 on ``x.device``.
        """
        self._check(x)
        out = self.session.run([self.output_name], {self.input_name: self._array(x)})[0]
        return torch.from_numpy(out).to(x.device)

    forward = __call__

    def __repr__(self) -> str:
        return f"OnnxRuntimeModel({str(self.path)!r}, providers={self.session.get_providers()})"


class OpenVINOModel(_ExportedModel):
    """An ONNX model compiled by OpenVINO for the CPU, callable like a torch network: ``model(x) -> logits``.

    The graph is compiled once per input shape (the sliding window's ``(sw_batch_size, C, *roi)`` and the smaller
    last batch), with OpenVINO's model cache in :func:`cache_dir` so a later process loads the compiled form.

    Args:
        path: ``.onnx`` file written by :func:`export_onnx` (or :func:`cached_onnx` for a torch network).
        num_threads: CPU threads (None: OpenVINO's default, every core).
        precision: ``"fp32"`` (logits equal to torch's to float32 rounding) or ``"bf16"`` (bfloat16 arithmetic on
            CPUs that have it; OpenVINO's own default there, faster, logits differ by ~1e-3). The predictor resolves
            ``"auto"`` before it builds the engine (:meth:`~ultralight3d.inference.Predictor.engine_precision`).

    Raises:
        UserInputError: the file is missing or OpenVINO cannot read it, or ``precision`` is unknown.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None, precision: str = "fp32") -> None:
        import openvino as ov

        if precision not in PRECISIONS or precision == "auto":
            raise UserInputError(f"precision must be fp32 or bf16, got {precision!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(f"ONNX model {self.path} not found; create it with `ultralight3d export`")
        self.core = ov.Core()
        try:
            self.core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})
        except Exception:  # pragma: no cover  (a read-only home: compile every time)
            pass
        try:
            self.graph = self.core.read_model(str(self.path))
        except Exception as err:  # any load failure: one line naming the file
            raise UserInputError(f"OpenVINO cannot read {self.path}: {str(err).splitlines()[0][:300]}") from err
        raw = None
        if self.graph.has_rt_info(["framework", ONNX_META_KEY]):
            raw = self.graph.get_rt_info(["framework", ONNX_META_KEY]).astype(str)
        self._set_metadata(raw)
        self.precision = precision
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if num_threads:
            self.config["INFERENCE_NUM_THREADS"] = int(num_threads)
        self._requests: dict[tuple[int, ...], Any] = {}

    def _static_ir(self, shape: tuple[int, ...]) -> Path:
        """Where the graph reshaped to ``shape`` is kept as OpenVINO IR: named by the ONNX file (path, size, mtime),
        the shape and the OpenVINO version, in ``cache_dir()/openvino/ir``."""
        import openvino as ov

        stat = self.path.stat()
        digest = hashlib.sha256(
            repr((str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, shape, ov.__version__)).encode()
        ).hexdigest()[:24]
        return cache_dir() / "openvino" / "ir" / f"{self.path.stem}-{digest}.xml"

    def _compile(self, shape: tuple[int, ...]) -> Any:
        """The graph compiled for ``shape``. The reshaped graph is saved once as IR in the cache and compiled from
        that file, every time: OpenVINO then loads its compiled form from its own cache without reading, reshaping
        and hashing the graph (0.09 s against 0.16-0.20 s for UltraLightUNet3D-base at 96³ on the 2-core EPYC,
        2026-12-07). Where the cache cannot be written the graph is compiled as it is."""
        ir = self._static_ir(shape)
        if not (ir.is_file() and ir.with_suffix(".bin").is_file()):
            self._save_ir(shape, ir)
        if ir.is_file():
            try:
                return self.core.compile_model(str(ir), "CPU", self.config)
            except Exception:  # a damaged cache entry: write it again from the graph
                logger.warning("OpenVINO could not compile the cached %s; writing it again", ir)
                if self._save_ir(shape, ir):
                    return self.core.compile_model(str(ir), "CPU", self.config)
        return self.core.compile_model(self._reshaped(shape), "CPU", self.config)

    def _reshaped(self, shape: tuple[int, ...]) -> Any:
        graph = self.graph.clone()
        graph.reshape({graph.inputs[0].get_any_name(): list(shape)})
        return graph

    def _save_ir(self, shape: tuple[int, ...], ir: Path) -> bool:
        """Write the graph reshaped to ``shape`` to ``ir`` (and its ``.bin``); False where the cache is read-only.
        Both files go to a temporary folder, are synced, then renamed into place, bin first: the xml marks a whole
        entry, so a crash never leaves an xml beside a half-written bin."""
        import openvino as ov

        from ..utils import fsync_dir, fsync_file

        try:
            ir.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=ir.parent, prefix=".tmp-") as tmp:
                ov.save_model(self._reshaped(shape), str(Path(tmp) / "graph.xml"), compress_to_fp16=False)
                for part in ("graph.bin", "graph.xml"):
                    fsync_file(Path(tmp) / part)
                os.replace(Path(tmp) / "graph.bin", ir.with_suffix(".bin"))
                os.replace(Path(tmp) / "graph.xml", ir)
                fsync_dir(ir.parent)
        except OSError:
            return False
        return True

    def _request(self, shape: tuple[int, ...]) -> Any:
        request = self._requests.get(shape)
        if request is None:
            try:
                request = self._compile(shape).create_infer_request()
            except Exception as err:
                raise UserInputError(
                    f"OpenVINO cannot compile {self.path.name} for input {list(shape)}: "
                    f"{str(err).splitlines()[0][:300]}"
                ) from err
            self._requests[shape] = request
        return request

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, *S) tensor (any device/dtype).

        Returns:
            logits (B, out_channels, *S) float32 on ``x.device`` (a copy: the engine reuses its buffers).
        """
        self._check(x)
        arr = self._array(x)
        # one window per inference: on the 2-core EPYC a batch of two 96³ windows took 1.0-1.4x the time of two
        # single-window calls (bf16 165 ms against 2 x 60 ms), and one input shape means one compile per ROI
        request = self._request((1, *arr.shape[1:]))
        out: np.ndarray | None = None
        for i in range(len(arr)):
            # OpenVINO reads the window and hands back its output buffer without copies; each output is copied once,
            # into the batch's array (3 ms a 96³ window less than copying the output twice and concatenating)
            logits = request.infer({0: arr[i : i + 1]}, share_inputs=True, share_outputs=True)[0]
            if out is None:
                out = np.empty((len(arr), *logits.shape[1:]), dtype=np.float32)
            np.copyto(out[i : i + 1], logits)
        assert out is not None
        return torch.from_numpy(out).to(x.device)

    forward = __call__

    def __repr__(self) -> str:
        return f"OpenVINOModel({str(self.path)!r}, precision={self.precision!r})"


def _network_key(model: nn.Module, example_size: Sequence[int], in_channels: int | None) -> str:
    """A digest of everything the exported graph depends on: the architecture (class and module tree), the weights
    and buffers, the tracing input and the versions that write the graph."""
    from .. import __version__

    digest = hashlib.sha256()
    parts = (
        type(model).__qualname__,
        repr(model),
        __version__,
        torch.__version__,
        list(example_size),
        in_channels,
        sorted(EXPORT_SWITCHES.items()),
    )
    for part in parts:
        digest.update(repr(part).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(str((t.dtype, tuple(t.shape))).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:24]


#: the fast-path switches that change the exported graph (not only torch's execution): batch norms folded, the 1x1
#: depthwise branch as a per-channel affine, the channel shuffle folded into the projection weights. The shuffle's
#: reshape/transpose was OpenVINO's costliest copy (a 16 ms reorder at 96³); base fp32 went from 138 to 115 ms
#: per 96³ window (2-core EPYC, 2026-12-02). Layout and in-place switches mean nothing in ONNX and stay off.
EXPORT_SWITCHES: dict[str, bool] = {
    "fold_bn": True,
    "scale_1x1_dw": True,
    "permute_shuffle": True,
    "fuse_act": False,
    "pointwise_matmul": False,
    "merge_skip": False,
    "channels_last": False,
    "onednn_conv": False,
}


def export_form(model: nn.Module) -> nn.Module:
    """The copy of ``model`` that :func:`cached_onnx` and ``ultralight3d export`` write to ONNX:
    :data:`EXPORT_SWITCHES` applied (same logits to float32 rounding; a network without fusable blocks is an
    eval-mode copy; ``model`` itself is not touched)."""
    from ..networks.optimize import optimize_for_inference

    return optimize_for_inference(model, **EXPORT_SWITCHES)  # type: ignore[arg-type]


def cached_onnx(model: nn.Module, example_size: Sequence[int] = (96, 96, 96), in_channels: int | None = None) -> Path:
    """The ONNX graph of a torch network (plain modules, eval mode), exported once into ``cache_dir()/onnx`` and
    reused while the architecture and weights are unchanged (:func:`_network_key`). Written atomically, so
    concurrent runs never read half a file; falls back to a temporary folder when the cache is not writable.

    Args:
        model: the network (not modified; exported in eval mode on the CPU).
        example_size: spatial size of the tracing input (the sliding-window ROI); axes stay dynamic.
        in_channels: channels of the tracing input (default: the model's).

    Returns:
        the ``.onnx`` path.
    """
    from ..export.formats import export_onnx

    key = _network_key(model, example_size, in_channels)
    folder = cache_dir() / "onnx"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="ultralight3d-onnx-"))
    path = folder / f"{type(model).__name__.lower()}-{key}.onnx"
    if not path.is_file():
        logger.info("exporting the network to ONNX for OpenVINO (once per network and weights): %s", path)
        export_onnx(export_form(model), path, example_size=tuple(example_size), in_channels=in_channels, overwrite=True)
    return path


def resolve_engine(engine: str, device: torch.device | str | None, model: Any) -> str:
    """The engine that runs ``model``: ``engine`` itself, or for ``"auto"`` OpenVINO when the network is a torch
    module on the CPU of an x86-64/ARM64 machine and ``openvino`` is installed, else ``"torch"``.

    Raises:
        UserInputError: an unknown engine, or ``openvino`` asked for but not installed, or on a GPU.
    """
    if engine not in ENGINES:
        raise UserInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    on_cpu = torch.device(device or "cpu").type == "cpu"
    if engine == "openvino":
        if not openvino_available():
            raise UserInputError("--engine openvino needs the openvino package: pip install openvino")
        if not on_cpu:
            raise UserInputError("--engine openvino runs on the CPU; add --device cpu or choose --engine torch")
    if engine != "auto":
        return engine
    machine = platform.machine().lower()
    if on_cpu and isinstance(model, nn.Module) and machine in ("x86_64", "amd64", "arm64", "aarch64"):
        return "openvino" if openvino_available() else "torch"
    return "torch"
