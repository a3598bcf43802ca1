"""The one inference path: read -> preprocess -> sliding window (+ flip TTA, + ensemble) -> argmax -> invert ->
post-process -> write.

Used by ``ultralight3d predict`` and by every bundle's ``configs/inference.json`` (its ``predictor`` id builds this
class from ``@network_def``, ``@preprocessing`` and ``@inferer``).

Three entry points, from arrays to folders (as nnU-Net's predictor: build once, predict arrays, files elsewhere):

* :meth:`Predictor.predict_probabilities`: a preprocessed tensor ``(C, X, Y, Z)`` -> softmax ``(K, X, Y, Z)``;
* :meth:`Predictor.predict_image` / :meth:`Predictor.predict_data`: a loaded image (:class:`ImageData`, or a MONAI
  dict ``{"image": MetaTensor}`` as ``LoadImaged`` + ``EnsureChannelFirstd`` give it) -> label map on its grid;
* :meth:`Predictor.predict`: files and folders -> output folder (per-case records, locks, summary).

Example::

    >>> from ultralight3d.inference import Predictor
    >>> predictor = Predictor.from_bundle("bundles/prostate_ultralight_unet3d")
    >>> run = predictor.predict("scans/", "out/")        # NIfTI + .seg.nrrd (+ DICOM-SEG) per case, summary.json
    >>> run.ok
    True
    >>> ensemble = Predictor.from_bundle("bundles/feta_ultralight_unet3d", checkpoint=["f0/model.pt", "f1/model.pt"])
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import Compose, Invertd

from ..checkpoint import load_weights
from ..errors import UserInputError
from ..io.cases import CaseSpec, discover_cases, load_case
from ..io.volume import ImageData
from ..labels import LabelTable, read_label_table
from ..transforms.argmax import channel_argmax
from ..utils import check_writable
from . import outputs, records
from .postprocessing import Rules, override_rules, parse_rules, postprocess_label, rules_from_protocol, voxel_volume_ml
from .preprocessing import default_preprocessing
from .threads import default_threads, set_threads

__all__ = [
    "Predictor",
    "CaseResult",
    "RunResult",
    "OutputOptions",
    "channel_argmax",
    "load_checkpoint",
    "default_threads",
    "set_threads",
]

ModelLike = nn.Module | Callable[[torch.Tensor], torch.Tensor]

logger = logging.getLogger("ultralight3d.predict")

#: ``engine="auto"`` runs a case with OpenVINO from this many window voxels on (per network and TTA pass; ~11
#: windows of 96³). Measured on a 2-core AMD EPYC (issue 15): OpenVINO ran UltraLightUNet3D's windows (T, S, base;
#: 64x64x32 to 96³) 1.7-2.2x faster than the torch fast path but spends ~0.3-0.5 s compiling each input shape;
#: the saving repays that from about 6-12 M window voxels on.
AUTO_OPENVINO_VOXELS = 10_000_000


def foreground_box(
    image: torch.Tensor, margin: int = 8, fraction: float = 0.1, max_share: float = 0.9
) -> tuple[slice, ...] | None:
    """The bounding box of an image's foreground, for cropping before the sliding window (as nnU-Net crops to the
    non-zero region and TotalSegmentator to the body).

    Foreground: voxels of the first channel above ``min + fraction * (p99.5 - min)`` (CT: above about -850 HU, so
    the air around the body is left out and fat is kept; MRI: above the dark background). The box grows by
    ``margin`` voxels on each side. The statistic is taken on at most ~1 M evenly spaced voxels.

    Args:
        image: ``(C, X, Y, Z)`` (preprocessed; the rule is unchanged by z-scoring).
        margin: voxels added on each side.
        fraction: where the threshold lies between the minimum and the 99.5th percentile.
        max_share: no box (None) when it would keep more than this share of the voxels: too little to gain.

    Returns:
        one slice per spatial axis, or None (nothing to crop, or an image without foreground).
    """
    x = image[0]
    flat = x.reshape(-1)
    sample = flat[:: max(flat.numel() // 1_000_000, 1)].float()
    lo = sample.min()
    threshold = lo + fraction * (torch.quantile(sample, 0.995) - lo)
    mask = x > threshold
    box = []
    for axis in range(mask.dim()):
        other = tuple(a for a in range(mask.dim()) if a != axis)
        hits = torch.nonzero(mask.any(dim=other) if other else mask).flatten()
        if hits.numel() == 0:
            return None
        start = max(int(hits[0]) - margin, 0)
        stop = min(int(hits[-1]) + 1 + margin, mask.shape[axis])
        box.append(slice(start, stop))
    kept = math.prod(b.stop - b.start for b in box) / max(mask.numel(), 1)
    return tuple(box) if kept <= max_share else None


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights of ``path`` into ``model``: :func:`ultralight3d.checkpoint.load_weights` (kept under this
    name for existing callers)."""
    return load_weights(model, path)


@dataclass
class OutputOptions:
    """Which files :meth:`Predictor.predict` writes per case (besides ``<case>_seg.nii.gz``)."""

    probabilities: bool = False
    seg_nrrd: bool = True
    dicom_seg: bool = True
    preview: bool = False
    per_class: bool = False
    statistics: bool = False


@dataclass
class CaseResult:
    """What one case produced (arrays on the input grid) and how long each stage took.

    ``status`` is ``"ok"``, ``"failed"``, ``"skipped"`` (``continue_prediction``: finished before) or ``"busy"``
    (another run holds the case's lock; nothing computed).
    """

    case: str
    label: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    image: ImageData | None = None
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    volume_ml: dict[str, float] = field(default_factory=dict)
    num_classes: int = 0
    error: str | None = None
    status: str = "ok"
    postprocessing: dict[int, dict[str, int]] = field(default_factory=dict)
    statistics: list[dict[str, Any]] | None = None
    #: the engine that ran this case's windows (``engine="auto"`` chooses per case)
    engine: str = ""
    #: the arithmetic it ran in (``"fp32"``/``"bf16"``; ``precision="auto"`` chooses per engine)
    precision: str = ""
    #: ``crop_foreground``: the box the sliding window ran on (``[start, stop]`` per axis of the network's grid)
    crop_box: list[list[int]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RunResult:
    """All cases of one ``predict`` call; ``ok`` is True when every case succeeded (or had finished before)."""

    cases: list[CaseResult]
    output_dir: Path
    summary_json: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cases)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device {dev} was requested but PyTorch sees no CUDA GPU; use --device cpu (or auto)")
    return dev


class Predictor:
    """Segment 3D volumes with a network (or an ensemble) and write Slicer/PACS-ready outputs on the input's grid.

    Args:
        model: an ``nn.Module``, any callable ``model(x) -> logits`` (e.g.
            :class:`ultralight3d.inference.engines.OnnxRuntimeModel`), a list of those (an ensemble), or the path
            of an ``.onnx`` file (run by OpenVINO or ONNX Runtime, see ``engine``). Input ``x`` is
            ``(B, C, X, Y, Z)``, logits ``(B, num_classes, X, Y, Z)``.
        preprocessing: invertible transforms on ``{"image": MetaTensor (C, X, Y, Z)}`` (no loaders; see
            :mod:`ultralight3d.inference.preprocessing`). Default: RAS + per-channel z-score.
        labels: label table (``LabelTable`` or a ``labels.csv`` path); default ``label_1`` … from the logits.
        channels: input channel names in network order (``["T2", "ADC"]``); their count is the input channel count.
        checkpoint: weights to load into ``model`` (:func:`ultralight3d.checkpoint.load_weights`); a list of
            checkpoints makes an ensemble of copies of ``model``, one per checkpoint, whose softmax is averaged.
        roi_size: sliding-window size (multiple of the network's divisor).
        sw_batch_size: windows per forward pass.
        overlap: window overlap (0-1).
        mode: blending, ``"gaussian"`` (default) or ``"constant"``.
        device: where the network runs (``"auto"``: CUDA when available).
        stitch_device: where windows are stitched and probabilities kept; ``"auto"`` uses ``device`` unless the
            stitched probabilities would exceed ``stitch_limit_gb``, then the CPU (large CT on a small GPU).
        amp: autocast float16 on CUDA.
        tta: flip test-time augmentation: average the softmax over every combination of flips along ``tta_axes``.
        inferer: a ready MONAI inferer (e.g. the bundle's ``@inferer``); overrides the sliding-window arguments.
        engine: what runs the forward passes (:mod:`ultralight3d.inference.engines`): ``"auto"`` (default: on
            the CPU with OpenVINO installed, OpenVINO for cases of at least :data:`AUTO_OPENVINO_VOXELS` window
            voxels and the torch fast path below; else torch; an ``.onnx`` path: OpenVINO, else ONNX Runtime),
            ``"torch"``, ``"openvino"`` (a torch network is exported to ONNX once, cached) or ``"onnxruntime"``
            (``.onnx`` paths only). Other callables run as they are.
        precision: CPU arithmetic. ``"bf16"``: bfloat16 (OpenVINO's inference precision, or torch's CPU autocast);
            faster where the CPU has bf16 instructions, logits differ by ~1e-3; on a CPU without them
            (:func:`~ultralight3d.inference.engines.cpu_has_bf16`) a warning says so and the run is float32
            (``self.precision`` and the summary say ``"fp32"``). ``"fp32"``: float32 everywhere (the plain path's
            logits to float32 rounding). ``"auto"`` (default): bf16 where OpenVINO runs on a CPU with bf16
            arithmetic, float32 elsewhere (:meth:`engine_precision`); each case record names the precision that
            ran.
        crop_foreground: run the sliding window only over the image's foreground box (:func:`foreground_box`;
            less work where air or dark background surrounds the body), class 0 outside it. Off by default: the
            label map can differ from the full window grid near the box (windows fall differently).
        optimize: on the CPU, run a torch network through
            :func:`ultralight3d.networks.optimize.optimize_for_inference` (same logits, several times faster for
            UltraLightUNet; channels-last layout for other networks). Default True.
        name: model name written into DICOM-SEG and the summary.
        progress: tqdm bars (cases and windows).
        protocol: the dataset protocol the model was trained with (``transforms/<protocol>.json``): its class
            terminology completes the label table and its ``postprocessing`` table gives the default
            post-processing (see :meth:`use_protocol`).
        postprocessing: per-class component rules (``{1: {"largest_component": True}}``,
            :mod:`ultralight3d.inference.postprocessing`); given, it replaces the protocol's.
    """

    def __init__(
        self,
        model: ModelLike | Sequence[ModelLike] | str | os.PathLike,
        preprocessing: Compose | None = None,
        labels: LabelTable | str | os.PathLike | None = None,
        channels: Sequence[str] = ("image",),
        checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        roi_size: Sequence[int] = (96, 96, 96),
        sw_batch_size: int = 2,
        overlap: float = 0.5,
        mode: str = "gaussian",
        device: str | torch.device | None = "auto",
        stitch_device: str | torch.device | None = "auto",
        stitch_limit_gb: float = 2.0,
        amp: bool = True,
        tta: bool = False,
        tta_axes: Sequence[int] = (0, 1, 2),
        inferer: Inferer | None = None,
        engine: str = "auto",
        precision: str = "auto",
        crop_foreground: bool = False,
        optimize: bool = True,
        name: str = "ultralight3d",
        progress: bool = True,
        protocol: str | None = None,
        postprocessing: Mapping[Any, Any] | None = None,
    ) -> None:
        if not 0 <= float(overlap) < 1:
            raise UserInputError(f"overlap must be in [0, 1), got {overlap}")
        self.device = _device(device)
        self.stitch_device = stitch_device
        self.stitch_limit_gb = float(stitch_limit_gb)
        from .engines import ENGINES, PRECISIONS

        if engine not in ENGINES:
            raise UserInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if precision not in PRECISIONS:
            raise UserInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "bf16" and self.device.type == "cpu":
            from .engines import cpu_has_bf16

            if not cpu_has_bf16():  # emulated bf16 is slower than float32, and OpenVINO would run float32 anyway
                logger.warning("this CPU has no bfloat16 arithmetic (AVX512_BF16 or AMX): running float32 instead")
                precision = "fp32"
        self.precision = precision
        self.amp = bool(amp)
        self.crop_foreground = bool(crop_foreground)
        self.roi_size = tuple(int(r) for r in roi_size)
        checkpoints: list[str | os.PathLike | None]
        if checkpoint is None or isinstance(checkpoint, (str, os.PathLike)):
            checkpoints = [checkpoint]
        else:
            checkpoints = list(checkpoint)
        if isinstance(model, (list, tuple)):
            members = list(model)
            if checkpoints != [None] and len(checkpoints) != len(members):
                raise UserInputError(f"{len(members)} models but {len(checkpoints)} checkpoints; give one per model")
            if checkpoints == [None]:
                checkpoints = [None] * len(members)
        else:
            # one network and several checkpoints: an ensemble of copies
            members = [model] + [copy.deepcopy(model) for _ in checkpoints[1:]]
        self.checkpoints = [str(c) for c in checkpoints if c is not None]
        #: engine "auto": the plain networks OpenVINO compiles when a case has enough work, and their compiled forms
        self._auto_plain: list[nn.Module] = []
        self._auto_openvino: list[ModelLike] | None = None
        prepared = [self._prepare(m, c, engine, optimize) for m, c in zip(members, checkpoints)]
        self.models: list[ModelLike] = [m for m, _ in prepared]
        if len(self._auto_plain) != len(self.models):
            self._auto_plain = []
        #: the engine that runs the networks (``"torch"``, ``"openvino"``, ``"onnxruntime"``; "+"-joined if mixed;
        #: ``"auto"``: OpenVINO or the torch fast path, chosen per case by :meth:`_models_for`)
        self.engine = "auto" if self._auto_plain else "+".join(sorted({e for _, e in prepared})) or engine
        self._case_engine = self.engine
        self.fast_path = False
        if self.models and all(isinstance(m, nn.Module) for m in self.models):
            from ..networks.optimize import is_optimized

            self.fast_path = all(bool(is_optimized(m)) for m in self.models)  # type: ignore[arg-type]
        self.preprocessing = preprocessing if preprocessing is not None else default_preprocessing()
        self.labels = labels if isinstance(labels, LabelTable) or labels is None else read_label_table(labels)
        self.channels = [str(c) for c in channels]
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.mode = mode
        self.tta = bool(tta)
        self.tta_axes = tuple(int(a) for a in tta_axes)
        self.inferer = inferer
        self.name = name
        self.progress = progress
        self._net_time = 0.0
        #: protocol + transform parameters the preprocessing was built from (ensemble members must agree)
        self.preprocessing_key: str | None = None
        self.protocol: str | None = None
        self.postprocessing: Rules = parse_rules(postprocessing) if postprocessing is not None else {}
        self._postprocessing_given = postprocessing is not None
        self._override: dict[str, Any] | None = None
        if protocol:
            self.use_protocol(protocol)

    def _prepare(
        self, model: Any, checkpoint: str | os.PathLike | None, engine: str, optimize: bool
    ) -> tuple[ModelLike, str]:
        """One network ready to run and the engine that runs it (see ``engine`` in the class docstring)."""
        from . import engines

        threads = torch.get_num_threads()
        if isinstance(model, (str, os.PathLike)):
            if engine in ("auto", "openvino") and self.device.type == "cpu" and engines.openvino_available():
                return engines.OpenVINOModel(model, threads, self.engine_precision("openvino")), "openvino"
            if engine in ("auto", "onnxruntime"):
                onnx = engines.OnnxRuntimeModel(model, engines.onnx_providers(self.device), num_threads=threads)
                return onnx, "onnxruntime"
            engines.resolve_engine(engine, self.device, None)  # openvino without the package or on a GPU: its error
            raise UserInputError(
                f"model {model} is a file path; an .onnx file runs with engine 'auto', 'openvino' or 'onnxruntime'"
            )
        if not isinstance(model, nn.Module):
            if checkpoint is not None:
                raise UserInputError("a checkpoint can only be loaded into a torch network (engine 'torch')")
            return model, "torch"
        if checkpoint is not None:
            load_weights(model, checkpoint)
        model = model.to(self.device).eval()
        chosen = engines.resolve_engine(engine, self.device, model)
        if chosen == "openvino" and engine == "auto":  # chosen per case by the work (see _models_for)
            self._auto_plain.append(model)
            chosen = "torch"
        if chosen == "onnxruntime":
            raise UserInputError(
                "engine 'onnxruntime' runs exported .onnx files (`ultralight3d export`); for a torch network use "
                "'auto', 'openvino' or 'torch'"
            )
        if chosen == "openvino":
            try:
                path = engines.cached_onnx(model, self.roi_size)
                return engines.OpenVINOModel(path, threads, self.engine_precision("openvino")), "openvino"
            except Exception as err:  # 'auto' falls back to torch; an explicit request reports it
                if engine == "openvino":
                    raise UserInputError(f"OpenVINO cannot run {type(model).__name__}: {err}") from err
                logger.warning("OpenVINO unavailable for %s (%s); running torch", type(model).__name__, err)
        if optimize and self.device.type == "cpu":
            from ..networks.optimize import optimize_for_inference

            model = optimize_for_inference(model)
        return model, "torch"

    def engine_precision(self, engine: str) -> str:
        """The arithmetic ``engine`` runs this predictor's networks in (``"fp32"``, ``"bf16"``, or ``"fp16"``: CUDA's
        float16 autocast with ``amp``).

        bf16 exists for OpenVINO and torch on the CPU; ``precision="auto"`` chooses it for OpenVINO where the CPU
        has bf16 arithmetic (AVX512_BF16/AMX: on the 2-core EPYC of ``benchmarks/results/predict_cpu_engines.md``
        the network stage took 0.62-0.91x the float32 time, and the shipped models keep 99.9+ % of their float32 label
        maps on every case, ``benchmarks/results/engines_cpu.md``), and float32 for torch, whose CPU autocast is no
        faster than its float32 fast path. ONNX Runtime and other callables report float32.
        """
        if self.device.type == "cuda":
            return "fp16" if self.amp else "fp32"
        if self.device.type != "cpu" or engine not in ("openvino", "torch"):
            return "fp32"
        if self.precision != "auto":
            return self.precision
        if engine != "openvino":
            return "fp32"
        from . import engines

        return "bf16" if engines.cpu_has_bf16() else "fp32"  # asked once per process (cached)

    @property
    def model(self) -> ModelLike:
        """The (first) network."""
        return self.models[0]

    @model.setter
    def model(self, value: ModelLike) -> None:
        self.models[0] = value

    # ------------------------------------------------------------------ protocol facts
    def use_protocol(self, protocol: str) -> Predictor:
        """Take the facts the protocol ``transforms/<protocol>.json`` declares about its classes: their terminology
        (for labels of the same value and name that carry none, or only its codes without context), and its
        ``postprocessing`` table (unless rules were given explicitly; with a label table only for classes whose name
        agrees with the protocol's). Returns self."""
        self.protocol = str(protocol)
        if self.labels is not None:
            self.labels = self.labels.with_terminology(LabelTable.from_protocol(protocol))
        if not self._postprocessing_given:
            self.postprocessing = rules_from_protocol(protocol, self.labels)
        return self

    def _class_values(self, classes: Sequence[str | int], option: str) -> list[int]:
        if self.labels is not None:
            return self.labels.resolve(classes, option)
        values = []
        for c in classes:
            if not str(c).strip().isdigit():
                raise UserInputError(
                    f"{option}: {c!r} is not a label value; this model has no label table, so give classes as "
                    "integer label values (1, 2, …)"
                )
            values.append(int(str(c).strip()))
        return values

    def set_postprocessing(
        self,
        largest_component: bool | Sequence[str | int] | None = None,
        min_volume_ml: float | None = None,
        enabled: bool = True,
    ) -> Predictor:
        """Override the declared post-processing (``--largest-component [CLASSES]``, ``--min-volume-ml``,
        ``--no-postprocessing``): either override replaces the declared rules; ``enabled=False`` drops them all.

        Args:
            largest_component: True: every class; class names or values: those classes.
            min_volume_ml: remove components under this volume (ml) in every class.
            enabled: False: no post-processing at all.

        Raises:
            UserInputError: an unknown class, a volume <= 0, or ``enabled=False`` with an override.
        """
        if min_volume_ml is not None and not 0 < float(min_volume_ml) < float("inf"):
            raise UserInputError(f"--min-volume-ml must be a positive number of ml, got {min_volume_ml}")
        largest: bool | list[int] | None = largest_component if isinstance(largest_component, bool) else None
        if largest_component is not None and not isinstance(largest_component, bool):
            largest = self._class_values(list(largest_component), "--largest-component")
        override_rules({}, [], largest, min_volume_ml, enabled)  # validates the combination up front
        self._override = {"largest_component": largest, "min_volume_ml": min_volume_ml, "enabled": enabled}
        return self

    def rules_for(self, table: LabelTable) -> Rules:
        """The post-processing rules applied to a label map with classes ``table``."""
        if self._override is None:
            return {v: r for v, r in self.postprocessing.items() if v in table.values}
        return override_rules(self.postprocessing, table.values, **self._override)

    # ------------------------------------------------------------------ construction
    @classmethod
    def ensemble(cls, predictors: Sequence[Predictor]) -> Predictor:
        """One predictor averaging the softmax of every member's networks (the first member's settings are kept).

        Raises:
            UserInputError: members that describe different classes, channels or preprocessing.
        """
        if not predictors:
            raise UserInputError("an ensemble needs at least one checkpoint")
        first = predictors[0]

        def who(p: Predictor) -> str:
            return ", ".join(p.checkpoints) or p.name

        for other in predictors[1:]:
            if first.channels != other.channels:
                raise UserInputError(
                    f"ensemble: {who(first)} reads channels {first.channels} but {who(other)} {other.channels}; "
                    "each checkpoint must read the same channels"
                )
            a, b = first.labels, other.labels
            if (a is None) != (b is None) or (a is not None and b is not None and not a.describes_same_classes(b)):
                raise UserInputError(
                    f"ensemble: {who(first)} describes classes {a.names if a else 'unknown'} but {who(other)} "
                    f"{b.names if b else 'unknown'}; each checkpoint must describe the same classes"
                )
            if (
                first.preprocessing_key
                and other.preprocessing_key
                and first.preprocessing_key != other.preprocessing_key
            ):
                raise UserInputError(
                    f"ensemble: {who(first)} was trained with preprocessing {first.preprocessing_key} but "
                    f"{who(other)} with {other.preprocessing_key}; ensemble only checkpoints of one protocol"
                )
            auto = bool(first._auto_plain) and bool(other._auto_plain)
            first._auto_plain = first._auto_plain + other._auto_plain if auto else []
            first._auto_openvino = None
            used = {"torch" if p.engine == "auto" else p.engine for p in (first, other)}  # auto members: torch here
            first.engine = "auto" if auto else "+".join(sorted(used))
            first._case_engine = first.engine
            first.models.extend(other.models)
            first.checkpoints.extend(other.checkpoints)
            first.fast_path = first.fast_path and other.fast_path
        return first

    @classmethod
    def from_bundle(
        cls,
        bundle: str | os.PathLike,
        checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        config_file: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Predictor:
        """Build the bundle's ``predictor`` (``configs/inference.json``) with optional id overrides.

        The bundle is read by :func:`ultralight3d.inference.bundle_config.load_bundle`: when the weights have a model
        card (``models/model.json``), the network, channels, class table, protocol and patch size come from it.

        Args:
            bundle: bundle folder.
            checkpoint: weights instead of ``models/model.pt`` (sets the ``ckpt_path`` id; a ``.onnx`` file sets
                ``onnx_path`` and the ``onnxruntime`` engine); several: an ensemble (softmax mean), each must
                describe the same classes.
            config_file: another inference config (default ``<bundle>/configs/inference.json``).
            overrides: ``{id: value}`` set before parsing (``"overlap"``, ``"sw_batch_size"``, ``"device"``,
                ``"variant"`` ...); None values are skipped, unknown ids raise.
        """
        from .bundle_config import load_bundle

        bundle = Path(bundle)
        config = Path(config_file) if config_file else bundle / "configs" / "inference.json"
        if not config.is_file():
            raise UserInputError(
                f"{config} not found; --bundle must be a bundle folder holding "
                "configs/inference.json (e.g. bundles/prostate_ultralight_unet3d)"
            )
        if checkpoint is None or isinstance(checkpoint, (str, os.PathLike)):
            return load_bundle(bundle, [config], overrides, checkpoint).build_predictor()
        members = [load_bundle(bundle, [config], overrides, c).build_predictor() for c in checkpoint]
        return cls.ensemble(members)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike | Sequence[str | os.PathLike], **kwargs: Any) -> Predictor:
        """Build a predictor from weights and their model card alone (no bundle): the card gives the network,
        channels, class table, protocol (pre-processing and its post-processing/terminology) and patch size.

        Args:
            checkpoint: ``model.pt`` written by training, or an exported ``model.onnx`` (run by OpenVINO or ONNX
                Runtime), with ``model.json`` beside it; several: an ensemble (softmax mean), each must describe the
                same classes.
            kwargs: other :class:`Predictor` arguments (``sw_batch_size``, ``overlap``, ``device``, ``tta`` ...);
                they override the card's ``roi_size``/``labels``/``channels``.

        Raises:
            UserInputError: no model card beside ``checkpoint``, or the weights do not fit its network.
        """
        if not isinstance(checkpoint, (str, os.PathLike)):
            return cls.ensemble([cls.from_checkpoint(c, **kwargs) for c in checkpoint])
        from ..checkpoint import model_card_path, read_model_card
        from ..registry import create_model
        from .preprocessing import build_preprocessing, channel_names

        checkpoint = Path(checkpoint)
        card = read_model_card(checkpoint)
        if card is None:
            raise UserInputError(
                f"{checkpoint} has no model card ({model_card_path(checkpoint)}); pass --bundle "
                "DIR so the bundle's config describes the network"
            )
        params = dict(card.transform_params, in_channels=int(card.in_channels))
        values: dict[str, Any] = {
            "preprocessing": build_preprocessing(card.protocol, params) if card.protocol else None,
            "labels": LabelTable.from_records(card.labels, str(model_card_path(checkpoint))) if card.labels else None,
            "channels": card.channel_names or channel_names(card.protocol, int(card.in_channels)),
            "name": card.model_name,
            "protocol": card.protocol or None,
        }
        if card.patch_size:
            values["roi_size"] = tuple(int(s) for s in card.patch_size)
        values.update(kwargs)
        if checkpoint.suffix.lower() == ".onnx":
            if values.get("engine") == "torch":
                raise UserInputError(
                    f"{checkpoint} is an ONNX model; run it with --engine auto, openvino or onnxruntime"
                )
            pred = cls(checkpoint, **values)
            pred.checkpoints = [str(checkpoint)]
        else:
            net = create_model(
                card.model_name,
                **{"in_channels": int(card.in_channels), "out_channels": int(card.out_channels), **card.network_kwargs},
            )
            pred = cls(net, checkpoint=checkpoint, **values)
        pred.preprocessing_key = _preprocessing_key(card.protocol, params)
        return pred

    # ------------------------------------------------------------------ core
    def _forward(self, x: torch.Tensor, model: ModelLike | None = None) -> torch.Tensor:
        """Network call with timing (and autocast on CUDA); returns float32 logits."""
        start = time.perf_counter()
        net = model if model is not None else self.models[0]
        if x.device != self.device:
            x = x.to(self.device)
        if self.amp and x.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                out = net(x)
        elif self.precision == "bf16" and x.device.type == "cpu" and isinstance(net, nn.Module):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(x)
        else:
            out = net(x)
        if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution head comes first
            out = out[0]
        if out.dtype != torch.float32:
            out = out.float()
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        self._net_time += time.perf_counter() - start
        return out

    def _make_inferer(self, spatial_shape: Sequence[int], num_classes_guess: int) -> Inferer:
        if self.inferer is not None:
            return self.inferer
        stitch = self.stitch_device
        if stitch is None or str(stitch) == "auto":
            need_gb = float(np.prod(spatial_shape)) * max(num_classes_guess, 2) * 4 * 2 / 1e9
            stitch = self.device if need_gb <= self.stitch_limit_gb else torch.device("cpu")
        return SlidingWindowInferer(
            roi_size=self.roi_size,
            sw_batch_size=self.sw_batch_size,
            overlap=self.overlap,
            mode=self.mode,
            sw_device=self.device,
            device=torch.device(stitch),
            progress=self.progress,
        )

    def window_voxels(self, spatial_shape: Sequence[int], passes: int = 1) -> int:
        """Voxels the sliding window feeds the network for an image of ``spatial_shape`` (per network): windows
        (MONAI's grid: ``ceil((size - roi) / int(roi * (1 - overlap))) + 1`` per axis, 1 where the image is not larger
        than the ROI) x ROI voxels x ``passes`` (TTA flips)."""
        windows = 1
        for size, roi in zip(spatial_shape, self.roi_size):
            step = max(int(roi * (1 - self.overlap)), 1)
            windows *= 1 if size <= roi else math.ceil((size - roi) / step) + 1
        return windows * math.prod(self.roi_size) * passes

    def _models_for(self, spatial_shape: Sequence[int], passes: int) -> list[ModelLike]:
        """The networks that run one case. With ``engine="auto"`` on the CPU: OpenVINO when the case feeds the
        network at least :data:`AUTO_OPENVINO_VOXELS` window voxels (where its ~2x faster windows repay compiling
        the graph, ~0.3-0.5 s per input shape), else the torch fast path; OpenVINO is compiled on first use and kept,
        and if it cannot run the network the torch fast path is used from then on (one warning)."""
        self._case_engine = "torch" if self._auto_plain else self.engine
        if not self._auto_plain or self.window_voxels(spatial_shape, passes) < AUTO_OPENVINO_VOXELS:
            return self.models
        if self._auto_openvino is None:
            from . import engines

            try:
                self._auto_openvino = [
                    engines.OpenVINOModel(
                        engines.cached_onnx(m, self.roi_size),
                        torch.get_num_threads(),
                        self.engine_precision("openvino"),
                    )
                    for m in self._auto_plain
                ]
            except Exception as err:  # the torch fast path still runs every case
                logger.warning("OpenVINO unavailable (%s); running the torch fast path", str(err).splitlines()[0])
                self._auto_plain = []
                return self.models
        self._case_engine = "openvino"
        return self._auto_openvino

    @torch.no_grad()
    def predict_probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities for a preprocessed image ``(C, X, Y, Z)`` -> ``(num_classes, X, Y, Z)``: the mean
        over the ensemble's networks and, with ``tta``, over flips.

        The windows run under ``torch.inference_mode`` (no autograd bookkeeping per operation); the probabilities
        come back as an ordinary tensor (the softmax is taken outside that mode), so callers may change them in place.

        Raises:
            UserInputError: ensemble members that predict different numbers of classes.
        """
        x = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
        x = x[None].float()
        inferer = self._make_inferer(x.shape[2:], len(self.labels) + 1 if self.labels is not None else 2)
        flips: list[tuple[int, ...]] = [()]
        if self.tta:
            axes = [a + 2 for a in self.tta_axes]
            flips += [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]
        prob: torch.Tensor | None = None
        count = 0
        for index, model in enumerate(self._models_for(x.shape[2:], len(flips))):

            def forward(t: torch.Tensor, net: ModelLike = model) -> torch.Tensor:
                return self._forward(t, net)

            for dims in flips:
                with torch.inference_mode():
                    logits = inferer(torch.flip(x, dims) if dims else x, forward)
                assert isinstance(logits, torch.Tensor)
                if prob is not None and logits.shape[1] != prob.shape[1]:
                    raise UserInputError(
                        f"ensemble member {index + 1} predicts {logits.shape[1]} classes, member 1 {prob.shape[1]}; "
                        "each checkpoint must describe the same classes"
                    )
                p = torch.softmax(logits.float(), dim=1)  # outside inference mode: an ordinary tensor
                if dims:
                    p = torch.flip(p, dims)
                prob = p if prob is None else prob.add_(p)
                count += 1
        assert prob is not None
        return (prob.div_(count) if count > 1 else prob)[0]

    def predict_image(
        self, image: ImageData, return_probabilities: bool = False, postprocess: bool = True
    ) -> CaseResult:
        """Segment one loaded image; the label map comes back on ``image``'s grid ``(X, Y, Z)``, post-processed
        (:meth:`rules_for`) unless ``postprocess=False``."""
        res = CaseResult(case=Path(image.source).name, image=image)
        t0 = time.perf_counter()
        mt = MetaTensor(
            torch.from_numpy(np.ascontiguousarray(image.array)),
            affine=torch.as_tensor(image.affine),
            meta={"filename_or_obj": image.source},
        )
        data = self.preprocessing({"image": mt})
        t1 = time.perf_counter()
        res.timings["preprocess"] = t1 - t0
        self._net_time = 0.0
        box = foreground_box(data["image"]) if self.crop_foreground else None
        if box is None:
            prob = self.predict_probabilities(data["image"])
        else:  # the sliding window over the foreground box; background (class 0) outside it
            inner = self.predict_probabilities(data["image"][(slice(None), *box)])
            prob = torch.zeros((inner.shape[0], *data["image"].shape[1:]), dtype=inner.dtype, device=inner.device)
            prob[0] = 1.0
            prob[(slice(None), *box)] = inner
            res.crop_box = [[b.start, b.stop] for b in box]
        t2 = time.perf_counter()
        res.timings["network"] = self._net_time
        res.engine = self._case_engine
        res.precision = self.engine_precision(res.engine)
        res.num_classes = int(prob.shape[0])
        res.timings["stitch"] = max(t2 - t1 - self._net_time, 0.0)
        label = channel_argmax(prob)[None].to(torch.float32).cpu()
        processed = data["image"]
        inv_data: dict[Hashable, Any] = {"image": processed}
        inv_data["pred"] = MetaTensor(
            label, meta=copy.deepcopy(processed.meta), applied_operations=copy.deepcopy(processed.applied_operations)
        )
        keys = ["pred"]
        if return_probabilities:
            inv_data["prob"] = MetaTensor(
                prob.cpu(),
                meta=copy.deepcopy(processed.meta),
                applied_operations=copy.deepcopy(processed.applied_operations),
            )
        out = Invertd(keys=keys, transform=self.preprocessing, orig_keys="image", nearest_interp=True)(inv_data)
        if return_probabilities:
            out_p = Invertd(keys="prob", transform=self.preprocessing, orig_keys="image", nearest_interp=False)(
                inv_data
            )
            res.probabilities = np.asarray(out_p["prob"].detach().cpu().numpy(), dtype=np.float32)
        # nearest-neighbour inversion keeps the class indices exact; rint in place guards the cast (a separate int64
        # copy and a second cast took 0.09 s on 256x256x128, this 0.005 s)
        arr = np.asarray(out["pred"].detach().cpu().numpy()[0], dtype=np.float32)
        lab: np.ndarray = np.rint(arr, out=arr if arr.flags.writeable else None).astype(
            outputs.label_dtype(res.num_classes - 1)
        )
        if lab.shape != image.spatial_shape:
            raise RuntimeError(
                f"inverted prediction has shape {lab.shape}, input {image.spatial_shape}: the "
                "preprocessing pipeline is not fully invertible"
            )
        res.timings["invert"] = time.perf_counter() - t2
        if postprocess:
            t3 = time.perf_counter()
            rules = self.rules_for(self._label_table(res.num_classes))
            if rules:
                lab, res.postprocessing = postprocess_label(lab, rules, voxel_volume_ml(image.affine))
            res.timings["postprocess"] = time.perf_counter() - t3
        res.label = lab.astype(outputs.label_dtype(int(lab.max()) if lab.size else 0), copy=False)
        return res

    def predict_data(
        self,
        data: Mapping[Hashable, Any],
        image_key: str = "image",
        output_key: str = "pred",
        prob_key: str | None = None,
        postprocess: bool = True,
    ) -> dict[Hashable, Any]:
        """Segment a loaded MONAI data dict (``LoadImaged`` + ``EnsureChannelFirstd``: ``{"image": MetaTensor
        (C, X, Y, Z)}`` with its RAS affine): returns the dict with ``output_key`` = the label map ``(1, X, Y, Z)``
        on the image's grid (same affine and meta, post-processed) and, with ``prob_key``, the probabilities.

        This is what a bundle's evaluator or MONAI Label's infer task calls; ``Predictor(...)(data)`` is the same.
        """
        img = data[image_key]
        affine = getattr(img, "affine", None)
        if affine is None:
            meta = data.get(f"{image_key}_meta_dict") or {}
            affine = meta.get("affine")
        if affine is None:
            raise UserInputError(f"data[{image_key!r}] has no affine; load it with LoadImaged (MetaTensor)")
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if arr.ndim == 3:
            arr = arr[None]
        meta_in = dict(getattr(img, "meta", {}) or {})
        source = str(meta_in.get("filename_or_obj", image_key))
        affine_np = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, np.float64)
        image = ImageData(arr.astype(np.float32, copy=False), affine_np, source)
        res = self.predict_image(image, return_probabilities=prob_key is not None, postprocess=postprocess)
        assert res.label is not None
        out = dict(data)
        out[output_key] = MetaTensor(
            torch.from_numpy(np.ascontiguousarray(res.label[None])),
            affine=torch.as_tensor(affine_np),
            meta=copy.deepcopy(meta_in),
        )
        if prob_key is not None and res.probabilities is not None:
            out[prob_key] = MetaTensor(
                torch.from_numpy(res.probabilities), affine=torch.as_tensor(affine_np), meta=copy.deepcopy(meta_in)
            )
        return out

    __call__ = predict_data

    # ------------------------------------------------------------------ whole runs
    def _label_table(self, num_classes: int) -> LabelTable:
        return self.labels if self.labels is not None else LabelTable.generic(num_classes)

    def _run_info(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "engine": self.engine,
            "precision": self.precision,
            "crop_foreground": self.crop_foreground,
            "ensemble_size": len(self.models),
            "checkpoints": list(self.checkpoints),
            "roi_size": list(self.roi_size),
            "overlap": self.overlap,
            "sw_batch_size": self.sw_batch_size,
            "tta": self.tta,
            "amp": self.amp,
            "device": str(self.device),
            "stitch_device": str(self.stitch_device),
            "cpu_fast_path": self.fast_path,
            "threads": torch.get_num_threads(),
            "protocol": self.protocol,
        }

    def predict(
        self,
        inputs: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[CaseSpec] | None,
        output_dir: str | os.PathLike,
        overwrite: bool = False,
        channel_sources: dict[str, str] | None = None,
        series_uids: Sequence[str] | None = None,
        save_probabilities: bool = False,
        seg_nrrd: bool = True,
        dicom_seg: bool = True,
        preview: bool = False,
        per_class: bool = False,
        statistics: bool = False,
        roi_subset: Sequence[str | int] | None = None,
        continue_prediction: bool = False,
    ) -> RunResult:
        """Segment every case found in ``inputs`` and write its outputs into ``output_dir``.

        Per case: ``<case>_seg.nii.gz`` (uint8, input affine, qform = sform), ``<case>.seg.nrrd`` (Slicer segments
        with terminology), ``<case>_seg.dcm`` (DICOM-SEG, DICOM input only), optionally ``<case>_probs.nii.gz``,
        ``<case>_preview.png``, ``<case>_classes/<class>_seg.nii.gz`` and ``<case>_statistics.json/.csv``, and its
        record ``records/<case>.json``; per run ``labels.csv``/``labels.ctbl`` and ``summary.json``/``summary.csv``,
        rebuilt from every record in the folder. Each case is computed under a lock (``records/<case>.lock``): a
        case another run is computing is refused at once (status ``"busy"``). A failing case is logged and recorded;
        the others still run.

        Args:
            inputs: file, folder, DICOM folder, list of those, or ready :class:`CaseSpec` objects.
            channel_sources: ``{channel: file | DICOM folder | SeriesInstanceUID}`` for one explicit case.
            series_uids: only these DICOM series.
            per_class: also one binary mask per class.
            statistics: also per-class volume and input intensity statistics
                (:mod:`ultralight3d.inference.statistics`).
            roi_subset: only these classes (names or values) in every output; the others become background.
            continue_prediction: skip cases whose record says ``ok`` and whose outputs all exist; recompute (and
                replace) the others.

        Raises:
            UserInputError: nothing to segment, unwritable output folder, unknown ``roi_subset`` class, outputs that
                exist without ``overwrite``/``continue_prediction``, or both of those.
        """
        if overwrite and continue_prediction:
            raise UserInputError("--overwrite recomputes every case and --continue skips finished ones; give one")
        opts = OutputOptions(save_probabilities, seg_nrrd, dicom_seg, preview, per_class, statistics)
        subset = self._class_values(list(roi_subset), "--roi-subset") if roi_subset else None
        out_dir = Path(output_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise UserInputError(f"output folder {out_dir} is a file; choose a folder path for -o")
        check_writable(out_dir / "summary.json", overwrite=True)
        specs = self._collect(inputs, channel_sources, series_uids)
        seen: dict[str, int] = {}
        for spec in specs:  # unique case ids
            if spec.case_id in seen:
                seen[spec.case_id] += 1
                spec.case_id = f"{spec.case_id}_{seen[spec.case_id]}"
            else:
                seen[spec.case_id] = 1
        results: list[CaseResult] = []
        todo: list[CaseSpec] = []
        existing: list[Path] = []
        for spec in specs:
            planned = list(self._planned(out_dir, spec, opts).values())
            if continue_prediction:
                record = records.read_record(out_dir, spec.case_id)
                if records.is_complete(record, planned):
                    results.append(self._skipped(spec.case_id, record))
                    continue
            elif not overwrite:
                existing += [p for p in planned if p.exists()]
            todo.append(spec)
        if existing:
            names = ", ".join(str(p) for p in existing[:3]) + (" …" if len(existing) > 3 else "")
            raise UserInputError(
                f"{len(existing)} output file(s) already exist ({names}); pass --overwrite to "
                "replace them, --continue to skip finished cases, or choose another output folder"
            )
        self._check_color_tables(out_dir, overwrite)
        from tqdm.auto import tqdm

        bar = tqdm(todo, desc="predict", unit="case", disable=not self.progress or len(todo) < 2)
        for spec in bar:
            start = time.perf_counter()
            try:
                with records.case_lock(out_dir, spec.case_id):
                    res = self._locked_case(spec, out_dir, overwrite, continue_prediction, opts, subset, start)
            except records.CaseLocked as err:
                res = CaseResult(case=spec.case_id, status="busy", error=str(err))
                logger.error("BUSY %s: %s", spec.case_id, err)
            results.append(res)
        order = {spec.case_id: i for i, spec in enumerate(specs)}
        results.sort(key=lambda r: order.get(r.case, len(order)))
        table = self._label_table(max([r.num_classes for r in results] + [2]))
        if self.labels is None and not any(r.num_classes for r in results) and (out_dir / "labels.csv").is_file():
            table = read_label_table(out_dir / "labels.csv")  # nothing computed here: the folder's own table
        if any(r.status == "ok" for r in results):
            outputs.write_color_tables(table, out_dir, overwrite=overwrite or continue_prediction)
        json_path = self.rebuild_summary(out_dir, table)
        n_bad = sum(r.status == "failed" for r in results)
        logger.info(
            "%d case(s) segmented, %d failed, %d skipped (finished before), %d busy; outputs in %s (summary: %s)",
            sum(r.status == "ok" for r in results),
            n_bad,
            sum(r.status == "skipped" for r in results),
            sum(r.status == "busy" for r in results),
            out_dir,
            json_path,
        )
        for res in results:
            res.image = None  # free memory; arrays stay for API users
        return RunResult(results, out_dir, json_path)

    def rebuild_summary(self, out_dir: str | os.PathLike, table: LabelTable | None = None) -> Path:
        """Rewrite ``summary.json``/``summary.csv`` of ``out_dir`` from every case record in it (under a lock shared
        by all runs, so concurrent runs into one folder never lose a case); run settings are this predictor's."""
        table = table if table is not None else self._label_table(2)
        with records.summary_lock(out_dir):
            recs = records.read_records(out_dir)
            info = self._run_info()
            info["n_cases"] = len(recs)
            info["n_failed"] = sum(r.get("status") != "ok" for r in recs)
            json_path, _ = outputs.write_summary(recs, table, out_dir, overwrite=True, extra=info)
        return json_path

    def _check_color_tables(self, out_dir: Path, overwrite: bool) -> None:
        """Refuse up front (before any compute) when ``labels.csv`` exists with other classes."""
        if overwrite or self.labels is None:
            return
        from ..labels import label_csv_text

        path = out_dir / "labels.csv"
        if path.is_file() and path.read_text(encoding="utf-8") != label_csv_text(self.labels):
            raise UserInputError(
                f"{path} already exists with another class table; pass --overwrite to replace it or choose another "
                "output folder"
            )

    @staticmethod
    def _skipped(case: str, record: dict[str, Any] | None) -> CaseResult:
        rec = record or {}
        return CaseResult(
            case=case,
            status="skipped",
            files=dict(rec.get("outputs") or {}),
            volume_ml=dict(rec.get("volume_ml") or {}),
        )

    def _locked_case(
        self,
        spec: CaseSpec,
        out_dir: Path,
        overwrite: bool,
        continue_prediction: bool,
        opts: OutputOptions,
        subset: list[int] | None,
        start: float,
    ) -> CaseResult:
        """One case while holding its lock: re-check (another run may have finished it meanwhile), compute, write
        outputs, write its record."""
        planned = list(self._planned(out_dir, spec, opts).values())
        if continue_prediction:
            record = records.read_record(out_dir, spec.case_id)
            if records.is_complete(record, planned):
                return self._skipped(spec.case_id, record)
        elif not overwrite:
            done = [p for p in planned if p.exists()]
            if done:
                return CaseResult(
                    case=spec.case_id,
                    status="busy",
                    error=f"case {spec.case_id} was written by another predict run meanwhile ({done[0]}); not "
                    "computed here",
                )
        try:
            res = self._run_case(spec, out_dir, overwrite or continue_prediction, opts, subset)
            res.status = "ok"
        except UserInputError as err:
            res = CaseResult(case=spec.case_id, error=str(err), status="failed")
        except Exception as err:  # one bad case must not stop the run
            logger.exception("case %s failed", spec.case_id)
            res = CaseResult(case=spec.case_id, error=f"{type(err).__name__}: {err}", status="failed")
        res.timings["total"] = time.perf_counter() - start
        if res.error:
            logger.error("FAILED %s: %s", spec.case_id, res.error)
        else:
            logger.info(
                "%s: %s (%.1f s)",
                spec.case_id,
                ", ".join(Path(f).name for f in res.files.values()),
                res.timings["total"],
            )
        records.write_record(out_dir, self._record(res, spec, subset))
        return res

    def _record(self, res: CaseResult, spec: CaseSpec, subset: list[int] | None) -> dict[str, Any]:
        return {
            "case": res.case,
            "status": res.status,
            "time_s": round(res.timings.get("total", 0.0), 3),
            "timings_s": {k: round(v, 4) for k, v in res.timings.items()},
            "volume_ml": res.volume_ml,
            "inputs": spec.describe(),
            "outputs": res.files,
            "postprocessing": {str(k): v for k, v in res.postprocessing.items()},
            "roi_subset": subset,
            "model": self.name,
            "engine": res.engine,
            "precision": res.precision,
            "crop_box": res.crop_box,
            "ensemble_size": len(self.models),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **({"error": res.error} if res.error else {}),
        }

    def _collect(
        self, inputs: Any, channel_sources: dict[str, str] | None, series_uids: Sequence[str] | None
    ) -> list[CaseSpec]:
        if (
            inputs is not None
            and not isinstance(inputs, (str, os.PathLike))
            and len(inputs)
            and all(isinstance(i, CaseSpec) for i in inputs)
        ):
            return list(inputs)
        if inputs is None or isinstance(inputs, (str, os.PathLike)):
            return discover_cases(inputs, self.channels, channel_sources, list(series_uids or []) or None)
        specs: list[CaseSpec] = []
        for item in inputs:  # a bad entry fails as its own case, the others still run
            try:
                specs += discover_cases(item, self.channels, None, list(series_uids or []) or None)
            except UserInputError as err:
                specs.append(CaseSpec(Path(str(item)).name.split(".")[0] or "case", [], str(err)))
        if not specs:
            raise UserInputError("no input files given; pass image files, folders or DICOM folders")
        return specs

    def _planned(self, out_dir: Path, spec: CaseSpec, opts: OutputOptions) -> dict[str, Path]:
        """The files a case will have (keys as in :attr:`CaseResult.files`); per-class masks are listed by folder."""
        case = spec.case_id
        paths = {"nifti": out_dir / f"{case}_seg.nii.gz"}
        if opts.seg_nrrd:
            paths["seg_nrrd"] = out_dir / f"{case}.seg.nrrd"
        if opts.dicom_seg and spec.is_dicom:
            paths["dicom_seg"] = out_dir / f"{case}_seg.dcm"
        if opts.probabilities:
            paths["probabilities"] = out_dir / f"{case}_probs.nii.gz"
        if opts.preview:
            paths["preview"] = out_dir / f"{case}_preview.png"
        if opts.per_class:
            paths["classes"] = out_dir / f"{case}_classes"
        if opts.statistics:
            paths["statistics_json"] = out_dir / f"{case}_statistics.json"
            paths["statistics_csv"] = out_dir / f"{case}_statistics.csv"
        return paths

    def _run_case(
        self, spec: CaseSpec, out_dir: Path, overwrite: bool, opts: OutputOptions, subset: list[int] | None
    ) -> CaseResult:
        t0 = time.perf_counter()
        image = load_case(spec, self.channels)
        t_read = time.perf_counter() - t0
        res = self.predict_image(image, return_probabilities=opts.probabilities)
        res.case = spec.case_id
        res.timings = {"read": t_read, **res.timings}
        t1 = time.perf_counter()
        label = res.label
        assert label is not None
        table = self._label_table(res.num_classes)
        if subset:
            table = table.subset(subset)
            label = np.where(np.isin(label, subset), label, 0).astype(label.dtype)
            res.label = label
        planned = self._planned(out_dir, spec, opts)
        files = res.files
        files["nifti"] = str(outputs.write_nifti_label(label, image.affine, planned["nifti"], overwrite))
        if opts.seg_nrrd:
            files["seg_nrrd"] = str(outputs.write_seg_nrrd(label, image.affine, table, planned["seg_nrrd"], overwrite))
        if opts.dicom_seg and image.meta.get("dicom_files"):
            files["dicom_seg"] = str(
                outputs.write_dicom_seg(
                    label, image.meta["dicom_files"], table, planned["dicom_seg"], overwrite, model_name=self.name
                )
            )
        if opts.probabilities and res.probabilities is not None:
            files["probabilities"] = str(
                outputs.write_nifti_probabilities(res.probabilities, image.affine, planned["probabilities"], overwrite)
            )
        if opts.preview:
            files["preview"] = str(self._preview(image, label, planned["preview"], overwrite))
        if opts.per_class:
            outputs.write_class_masks(label, image.affine, table, planned["classes"], overwrite)
            files["classes"] = str(planned["classes"])
        if opts.statistics:
            from .statistics import label_statistics, write_statistics

            res.statistics = label_statistics(label, image, table, self.channels)
            js, cs = write_statistics(res.statistics, planned["statistics_json"], planned["statistics_csv"], overwrite)
            files["statistics_json"], files["statistics_csv"] = str(js), str(cs)
        res.volume_ml = {str(k): v for k, v in outputs.label_volumes_ml(label, image.affine, table.values).items()}
        res.timings["write"] = time.perf_counter() - t1
        return res

    def _preview(self, image: ImageData, label: np.ndarray, path: Path, overwrite: bool) -> Path:
        try:
            from ..plots import save_overlay_png
        except ImportError as err:
            raise UserInputError(
                "--preview needs ultralight3d.plots.save_overlay_png, which is not available in "
                "this installation; run without --preview"
            ) from err
        from ..utils import atomic_path

        table = self._label_table(max(int(label.max()) + 1, 2))
        with atomic_path(path, overwrite=overwrite) as tmp:
            save_overlay_png(
                image.array[0],
                label,
                tmp,
                class_names=table.names,
                colors={lab.value: lab.color for lab in table},
                spacing=image.spacing,
                title=path.name.replace("_preview.png", ""),
                overwrite=True,
            )
        return path


def _preprocessing_key(protocol: str | None, params: Mapping[str, Any]) -> str | None:
    """A comparable description of the preprocessing (protocol + transform parameters)."""
    if not protocol:
        return None
    return f"{protocol} {json.dumps(dict(params), sort_keys=True, default=str)}"
