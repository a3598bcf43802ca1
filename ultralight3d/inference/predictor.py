"""The one inference path: read -> preprocess -> sliding window (+ flip TTA) -> argmax -> invert -> write.

Used by ``ultralight3d predict`` and by every bundle's ``configs/inference.json`` (its ``predictor`` id builds this
class from ``@network_def``, ``@preprocessing`` and ``@inferer``).

Example::

    >>> from ultralight3d.inference import Predictor
    >>> predictor = Predictor.from_bundle("bundles/prostate_ultralight_unet3d")
    >>> run = predictor.predict("scans/", "out/")        # NIfTI + .seg.nrrd (+ DICOM-SEG) per case, summary.json
    >>> run.ok
    True
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import Compose, Invertd

from ..errors import UserInputError
from ..io.cases import CaseSpec, discover_cases, load_case
from ..io.image import ImageData
from ..labels import LabelTable, read_label_table
from ..utils import check_writable
from . import outputs
from .preprocessing import default_preprocessing

__all__ = ["Predictor", "CaseResult", "RunResult", "load_checkpoint"]

logger = logging.getLogger("ultralight3d.predict")


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights from ``path`` into ``model``: a plain state dict (``model.pt``), a dict with a ``"model"`` key
    (resume checkpoints) or with a ``"state_dict"`` key.

    Raises:
        UserInputError: missing file, unreadable file, or weights that do not fit the network.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint {path} not found; train the bundle first (it writes models/model.pt) or "
                             "pass --checkpoint PATH")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserInputError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); pass a .pt file "
                             "written by training") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    elif isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict; pass the model.pt "
                             "written by training")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:400]
        raise UserInputError(f"checkpoint {path} does not fit the bundle's network ({detail}); use the checkpoint "
                             "trained with this bundle and variant") from err
    return model


@dataclass
class CaseResult:
    """What one case produced (arrays on the input grid) and how long each stage took."""

    case: str
    label: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    image: ImageData | None = None
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    volume_ml: dict[str, float] = field(default_factory=dict)
    num_classes: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RunResult:
    """All cases of one ``predict`` call; ``ok`` is True when every case succeeded."""

    cases: list[CaseResult]
    output_dir: Path
    summary_json: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device {dev} was requested but PyTorch sees no CUDA GPU; use --device cpu (or auto)")
    return dev


class Predictor:
    """Segment 3D volumes with a network and write Slicer/PACS-ready outputs on the input's exact grid.

    Args:
        model: an ``nn.Module`` (``engine="torch"``), any callable ``model(x) -> logits`` (e.g. ``ultralight3d.export.OnnxRuntimeModel``),
            or with ``engine="onnxruntime"`` the path of an ``.onnx`` file. Input ``x`` is ``(B, C, X, Y, Z)``, logits
            ``(B, num_classes, X, Y, Z)``. ``engine="onnxruntime"`` uses
            :class:`ultralight3d.export.OnnxRuntimeModel`.
        preprocessing: invertible transforms on ``{"image": MetaTensor (C, X, Y, Z)}`` (no loaders; see
            :mod:`ultralight3d.inference.preprocessing`). Default: RAS + per-channel z-score.
        labels: label table (``LabelTable`` or a ``labels.csv`` path); default ``label_1`` … from the logits.
        channels: input channel names in network order (``["T2", "ADC"]``); their count is the input channel count.
        checkpoint: weights to load into ``model`` (plain state dict or ``{"model": ...}``).
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
        engine: ``"torch"`` or ``"onnxruntime"``.
        optimize: on the CPU, run a torch network through
            :func:`ultralight3d.networks.optimize.optimize_for_inference` (same logits, several times faster for
            UltraLightUNet; channels-last layout for other networks). Default True.
        name: model name written into DICOM-SEG and the summary.
        progress: tqdm bars (cases and windows).
    """

    def __init__(
        self,
        model: nn.Module | Callable[[torch.Tensor], torch.Tensor] | str | os.PathLike,
        preprocessing: Compose | None = None,
        labels: LabelTable | str | os.PathLike | None = None,
        channels: Sequence[str] = ("image",),
        checkpoint: str | os.PathLike | None = None,
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
        engine: str = "torch",
        optimize: bool = True,
        name: str = "ultralight3d",
        progress: bool = True,
    ) -> None:
        if not 0 <= float(overlap) < 1:
            raise UserInputError(f"overlap must be in [0, 1), got {overlap}")
        self.device = _device(device)
        self.stitch_device = stitch_device
        self.stitch_limit_gb = float(stitch_limit_gb)
        if engine == "onnxruntime" and isinstance(model, (str, os.PathLike)):
            from ..export import OnnxRuntimeModel

            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device.type == "cuda" else None
            model = OnnxRuntimeModel(model, providers)
        elif engine not in ("torch", "onnxruntime"):
            raise UserInputError(f"engine must be 'torch' or 'onnxruntime', got {engine!r}")
        if isinstance(model, nn.Module):
            if checkpoint is not None:
                load_checkpoint(model, checkpoint)
            model = model.to(self.device).eval()
            if optimize and self.device.type == "cpu":
                from ..networks.optimize import optimize_for_inference

                model = optimize_for_inference(model)
        elif checkpoint is not None:
            raise UserInputError("a checkpoint can only be loaded into a torch network (engine 'torch')")
        self.model = model
        self.preprocessing = preprocessing if preprocessing is not None else default_preprocessing()
        self.labels = labels if isinstance(labels, LabelTable) or labels is None else read_label_table(labels)
        self.channels = [str(c) for c in channels]
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.mode = mode
        self.amp = bool(amp)
        self.tta = bool(tta)
        self.tta_axes = tuple(int(a) for a in tta_axes)
        self.inferer = inferer
        self.name = name
        self.progress = progress
        self._net_time = 0.0

    # ------------------------------------------------------------------ construction from a bundle
    @classmethod
    def from_bundle(
        cls,
        bundle: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        config_file: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Predictor:
        """Build the bundle's ``predictor`` (``configs/inference.json``) with optional id overrides.

        Args:
            bundle: bundle folder.
            checkpoint: weights instead of ``models/model.pt`` (sets the ``ckpt_path`` id).
            config_file: another inference config (default ``<bundle>/configs/inference.json``).
            overrides: ``{id: value}`` set before parsing (``"overlap"``, ``"sw_batch_size"``, ``"device"``,
                ``"variant"`` ...); None values are skipped, unknown ids raise.
        """
        from monai.bundle import ConfigParser

        bundle = Path(bundle)
        config_file = Path(config_file) if config_file else bundle / "configs" / "inference.json"
        if not config_file.is_file():
            raise UserInputError(f"{config_file} not found; --bundle must be a bundle folder holding "
                                 "configs/inference.json (e.g. bundles/prostate_ultralight_unet3d)")
        parser = ConfigParser()
        parser.read_config(str(config_file))
        parser["bundle_root"] = str(bundle.resolve())
        if checkpoint is not None:
            parser["ckpt_path"] = str(Path(checkpoint).resolve())
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key.split("#")[0] not in parser.get():
                raise UserInputError(f"{config_file} has no id '{key}'; ids that can be set: "
                                     f"{', '.join(k for k in parser.get() if not str(k).startswith('_'))}")
            parser[key] = value
        if "predictor" not in parser:
            raise UserInputError(f"{config_file} has no 'predictor' id; regenerate it from the ultralight3d template")
        try:
            return parser.get_parsed_content("predictor")
        except Exception as err:  # MONAI wraps errors raised while instantiating: surface ours as one line
            cause: BaseException | None = err
            while cause is not None:
                if isinstance(cause, UserInputError):
                    raise UserInputError(str(cause)) from err
                cause = cause.__cause__ or cause.__context__
            raise

    # ------------------------------------------------------------------ core
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network call with timing and autocast; returns float32 logits."""
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp and x.device.type == "cuda"):
            out = self.model(x.to(self.device))
        if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution head comes first
            out = out[0]
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
            roi_size=self.roi_size, sw_batch_size=self.sw_batch_size, overlap=self.overlap, mode=self.mode,
            sw_device=self.device, device=torch.device(stitch), progress=self.progress)

    @torch.no_grad()
    def predict_probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities for a preprocessed image ``(C, X, Y, Z)`` -> ``(num_classes, X, Y, Z)`` (averaged
        over flips when ``tta``)."""
        x = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
        x = x[None].float()
        inferer = self._make_inferer(x.shape[2:], len(self.labels) + 1 if self.labels is not None else 2)
        flips: list[tuple[int, ...]] = [()]
        if self.tta:
            axes = [a + 2 for a in self.tta_axes]
            flips += [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]
        prob = None
        for dims in flips:
            xin = torch.flip(x, dims) if dims else x
            logits = inferer(xin, self._forward)
            p = torch.softmax(logits.float(), dim=1)
            if dims:
                p = torch.flip(p, dims)
            prob = p if prob is None else prob + p
        return (prob / len(flips))[0]

    def predict_image(self, image: ImageData, return_probabilities: bool = False) -> CaseResult:
        """Segment one loaded image; the label map comes back on ``image``'s grid ``(X, Y, Z)``."""
        res = CaseResult(case=Path(image.source).name, image=image)
        t0 = time.perf_counter()
        mt = MetaTensor(torch.from_numpy(np.ascontiguousarray(image.array)), affine=torch.as_tensor(image.affine),
                        meta={"filename_or_obj": image.source})
        data = self.preprocessing({"image": mt})
        t1 = time.perf_counter()
        res.timings["preprocess"] = t1 - t0
        self._net_time = 0.0
        prob = self.predict_probabilities(data["image"])
        t2 = time.perf_counter()
        res.timings["network"] = self._net_time
        res.num_classes = int(prob.shape[0])
        res.timings["stitch"] = max(t2 - t1 - self._net_time, 0.0)
        label = torch.argmax(prob, dim=0, keepdim=True).to(torch.float32).cpu()
        processed = data["image"]
        inv_data: dict[str, Any] = {"image": processed}
        inv_data["pred"] = MetaTensor(label, meta=copy.deepcopy(processed.meta),
                                      applied_operations=copy.deepcopy(processed.applied_operations))
        keys = ["pred"]
        if return_probabilities:
            inv_data["prob"] = MetaTensor(prob.cpu(), meta=copy.deepcopy(processed.meta),
                                          applied_operations=copy.deepcopy(processed.applied_operations))
        out = Invertd(keys=keys, transform=self.preprocessing, orig_keys="image", nearest_interp=True)(inv_data)
        if return_probabilities:
            out_p = Invertd(keys="prob", transform=self.preprocessing, orig_keys="image", nearest_interp=False)(
                inv_data)
            res.probabilities = np.asarray(out_p["prob"].detach().cpu().numpy(), dtype=np.float32)
        lab = np.rint(out["pred"].detach().cpu().numpy()[0]).astype(np.int64)
        if lab.shape != image.spatial_shape:
            raise RuntimeError(f"inverted prediction has shape {lab.shape}, input {image.spatial_shape}: the "
                               "preprocessing pipeline is not fully invertible")
        res.label = lab.astype(outputs.label_dtype(int(lab.max()) if lab.size else 0))
        res.timings["invert"] = time.perf_counter() - t2
        return res

    # ------------------------------------------------------------------ whole runs
    def _label_table(self, num_classes: int) -> LabelTable:
        return self.labels if self.labels is not None else LabelTable.generic(num_classes)

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
    ) -> RunResult:
        """Segment every case found in ``inputs`` and write its outputs into ``output_dir``.

        Per case: ``<case>_seg.nii.gz`` (uint8, input affine, qform = sform), ``<case>.seg.nrrd`` (Slicer segments),
        ``<case>_seg.dcm`` (DICOM-SEG, DICOM input only), optionally ``<case>_probs.nii.gz`` and
        ``<case>_preview.png``; per run ``labels.csv``/``labels.ctbl`` and ``summary.json``/``summary.csv``.
        A failing case is logged and recorded; the others still run.

        Args:
            inputs: file, folder, DICOM folder, list of those, or ready :class:`CaseSpec` objects.
            channel_sources: ``{channel: file | DICOM folder | SeriesInstanceUID}`` for one explicit case.
            series_uids: only these DICOM series.

        Raises:
            UserInputError: nothing to segment, unwritable output folder, or outputs that exist without ``overwrite``.
        """
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
        if not overwrite:
            existing = [p for spec in specs for p in self._planned(out_dir, spec, save_probabilities, seg_nrrd,
                                                                   dicom_seg, preview) if p.exists()]
            existing += [p for p in (out_dir / "summary.json", out_dir / "summary.csv") if p.exists()]
            if existing:
                names = ", ".join(str(p) for p in existing[:3]) + (" …" if len(existing) > 3 else "")
                raise UserInputError(f"{len(existing)} output file(s) already exist ({names}); pass --overwrite to "
                                     "replace them or choose another output folder")
        results: list[CaseResult] = []
        records = []
        from tqdm.auto import tqdm

        bar = tqdm(specs, desc="predict", unit="case", disable=not self.progress or len(specs) < 2)
        for spec in bar:
            start = time.perf_counter()
            try:
                res = self._run_case(spec, out_dir, overwrite, save_probabilities, seg_nrrd, dicom_seg, preview)
            except UserInputError as err:
                res = CaseResult(case=spec.case_id, error=str(err))
            except Exception as err:  # one bad case must not stop the run
                logger.exception("case %s failed", spec.case_id)
                res = CaseResult(case=spec.case_id, error=f"{type(err).__name__}: {err}")
            res.timings["total"] = time.perf_counter() - start
            if res.error:
                logger.error("FAILED %s: %s", spec.case_id, res.error)
            else:
                logger.info("%s: %s (%.1f s)", spec.case_id, ", ".join(Path(f).name for f in res.files.values()),
                            res.timings["total"])
            results.append(res)
            records.append({
                "case": res.case, "status": "ok" if res.ok else "failed", "time_s": round(res.timings["total"], 3),
                "timings_s": {k: round(v, 4) for k, v in res.timings.items()}, "volume_ml": res.volume_ml,
                "inputs": spec.describe(), "outputs": res.files, **({"error": res.error} if res.error else {}),
            })
        table = self._label_table(max([r.num_classes for r in results] + [2]))
        if any(r.ok for r in results):
            outputs.write_color_tables(table, out_dir, overwrite=overwrite)
        json_path, _ = outputs.write_summary(records, table, out_dir, overwrite=True, extra={
            "model": self.name, "roi_size": list(self.roi_size), "overlap": self.overlap, "tta": self.tta,
            "device": str(self.device), "n_cases": len(records), "n_failed": sum(not r.ok for r in results)})
        n_bad = sum(not r.ok for r in results)
        logger.info("%d case(s) segmented, %d failed; outputs in %s (summary: %s)", len(results) - n_bad, n_bad,
                    out_dir, json_path)
        for res in results:
            res.image = None  # free memory; arrays stay for API users
        return RunResult(results, out_dir, json_path)

    def _collect(self, inputs: Any, channel_sources: dict[str, str] | None,
                 series_uids: Sequence[str] | None) -> list[CaseSpec]:
        if inputs is not None and not isinstance(inputs, (str, os.PathLike)) and len(inputs) and all(
                isinstance(i, CaseSpec) for i in inputs):
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

    @staticmethod
    def _planned(out_dir: Path, spec: CaseSpec, probs: bool, nrrd: bool, dcm: bool, preview: bool) -> list[Path]:
        paths = [out_dir / f"{spec.case_id}_seg.nii.gz"]
        if nrrd:
            paths.append(out_dir / f"{spec.case_id}.seg.nrrd")
        if dcm and spec.is_dicom:
            paths.append(out_dir / f"{spec.case_id}_seg.dcm")
        if probs:
            paths.append(out_dir / f"{spec.case_id}_probs.nii.gz")
        if preview:
            paths.append(out_dir / f"{spec.case_id}_preview.png")
        return paths

    def _run_case(self, spec: CaseSpec, out_dir: Path, overwrite: bool, save_probabilities: bool, seg_nrrd: bool,
                  dicom_seg: bool, preview: bool) -> CaseResult:
        t0 = time.perf_counter()
        image = load_case(spec, self.channels)
        t_read = time.perf_counter() - t0
        res = self.predict_image(image, return_probabilities=save_probabilities)
        res.case = spec.case_id
        res.timings = {"read": t_read, **res.timings}
        t1 = time.perf_counter()
        label = res.label
        assert label is not None
        num_classes = res.num_classes
        res.num_classes = num_classes
        table = self._label_table(num_classes)
        files = res.files
        files["nifti"] = str(outputs.write_nifti_label(label, image.affine, out_dir / f"{spec.case_id}_seg.nii.gz",
                                                       overwrite))
        if seg_nrrd:
            files["seg_nrrd"] = str(outputs.write_seg_nrrd(label, image.affine, table,
                                                           out_dir / f"{spec.case_id}.seg.nrrd", overwrite))
        if dicom_seg and image.meta.get("dicom_files"):
            files["dicom_seg"] = str(outputs.write_dicom_seg(label, image.meta["dicom_files"], table,
                                                             out_dir / f"{spec.case_id}_seg.dcm", overwrite,
                                                             model_name=self.name))
        if save_probabilities and res.probabilities is not None:
            files["probabilities"] = str(outputs.write_nifti_probabilities(
                res.probabilities, image.affine, out_dir / f"{spec.case_id}_probs.nii.gz", overwrite))
        if preview:
            files["preview"] = str(self._preview(image, label, out_dir / f"{spec.case_id}_preview.png", overwrite))
        res.volume_ml = {str(k): v for k, v in outputs.label_volumes_ml(label, image.affine, table.values).items()}
        res.timings["write"] = time.perf_counter() - t1
        return res

    def _preview(self, image: ImageData, label: np.ndarray, path: Path, overwrite: bool) -> Path:
        try:
            from ..plots import save_overlay_png
        except ImportError as err:
            raise UserInputError("--preview needs ultralight3d.plots.save_overlay_png, which is not available in "
                                 "this installation; run without --preview") from err
        from ..utils import atomic_path

        table = self._label_table(max(int(label.max()) + 1, 2))
        with atomic_path(path, overwrite=overwrite) as tmp:
            save_overlay_png(image.array[0], label, tmp, class_names=table.names,
                             colors={lab.value: lab.color for lab in table}, spacing=image.spacing,
                             title=path.name.replace("_preview.png", ""), overwrite=True)
        return path
