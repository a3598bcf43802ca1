"""File-level evaluation: read prediction/label maps, check their grids, score them, write CSV/JSON/markdown/plots.

``evaluate_cases`` is the one entry point used by ``ultralight3d evaluate``, the bundles' ``evaluate.json`` and the
demo, so every number in this project comes from the same code.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from ..errors import UserInputError
from ..io.files import IMAGE_SUFFIXES, SEG_NRRD_SUFFIX, is_hidden, strip_image_suffix
from ..io.geometry import ImageGeometry, grid_mismatch
from ..utils import atomic_path, check_writable
from .metrics import DEFAULT_TOLERANCE_MM, compute_case_metrics, summarize_cases
from .remap import normalise_label_map, protocol_label_map, remap_labels

__all__ = [
    "OUTPUT_FILES",
    "case_id_from_path",
    "evaluate_cases",
    "find_label_files",
    "format_markdown_table",
    "read_label_map",
]

logger = logging.getLogger(__name__)

#: Files written by :func:`evaluate_cases` into its output folder.
OUTPUT_FILES = {
    "csv": "metrics_per_case.csv",
    "json": "metrics.json",
    "markdown": "metrics.md",
    "boxplot": "metrics_boxplot.png",
}

#: what a label-map file may end with: an image suffix (:data:`ultralight3d.io.IMAGE_SUFFIXES`) or ``.seg.nrrd``.
_LABEL_SUFFIXES = (SEG_NRRD_SUFFIX, *IMAGE_SUFFIXES)


def case_id_from_path(path: str | os.PathLike) -> str:
    """Case id of a label or prediction file: the name without image suffixes and without a ``_seg`` postfix.

    ``prostate_00.nii.gz``, ``prostate_00_seg.nii.gz`` and ``prostate_00.seg.nrrd`` all give ``prostate_00``.
    """
    name = Path(path).name
    name = name[: -len(SEG_NRRD_SUFFIX)] if name.lower().endswith(SEG_NRRD_SUFFIX) else strip_image_suffix(name)
    return re.sub(r"_seg$", "", name)


def _suffix_rank(path: Path) -> int:
    """Preference when one case has several files: the order of ``IMAGE_SUFFIXES`` (NIfTI first), ``.seg.nrrd``
    last."""
    name = path.name.lower()
    if name.endswith(SEG_NRRD_SUFFIX):
        return len(IMAGE_SUFFIXES)
    return next((rank for rank, suffix in enumerate(IMAGE_SUFFIXES) if name.endswith(suffix)), 99)


def find_label_files(folder: str | os.PathLike) -> dict[str, Path]:
    """``{case_id: path}`` of the label-map files (NIfTI, NRRD, MHA/MHD) directly inside ``folder``.

    Hidden files (``._*`` from macOS archives) are skipped; when one case has both a NIfTI and a ``.seg.nrrd`` (what
    ``ultralight3d predict`` writes), the NIfTI is used.

    Raises:
        UserInputError: the folder is missing, holds no label files, or two files map to the same case id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder} is not a folder; pass a label-map file or a folder of them")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if is_hidden(p) or not p.is_file() or not p.name.lower().endswith(_LABEL_SUFFIXES):
            continue
        cid = case_id_from_path(p)
        if cid in found:  # e.g. predict writes <case>_seg.nii.gz and <case>.seg.nrrd: keep the NIfTI
            rank_old, rank_new = _suffix_rank(found[cid]), _suffix_rank(p)
            if rank_old == rank_new:
                raise UserInputError(f"{found[cid]} and {p} are the same case '{cid}'; keep one of them in {folder}")
            if rank_new > rank_old:
                continue
        found[cid] = p
    if not found:
        raise UserInputError(f"no label maps (.nii.gz, .nii, .nrrd, .mha) in {folder}; check the folder")
    return found


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, sitk.Image]:
    """Read an integer label map with SimpleITK.

    Returns:
        ``(array, image)``: the array in SimpleITK order ``(Z, Y, X)`` (3D) as int64, and the image (geometry).

    Raises:
        UserInputError: the file is missing/unreadable, has several components or non-integer values.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"label map {path} does not exist; check the path")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise UserInputError(
            f"cannot read {path} as an image ({str(err).strip().splitlines()[-1]}); pass a NIfTI, NRRD or MHA label map"
        ) from err
    if img.GetNumberOfComponentsPerPixel() != 1 or img.GetDimension() not in (2, 3):
        raise UserInputError(
            f"{path} is not a single-channel 2D/3D label map (dimension {img.GetDimension()}, "
            f"{img.GetNumberOfComponentsPerPixel()} components); save one integer label per voxel"
        )
    arr = sitk.GetArrayFromImage(img)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise UserInputError(
                f"{path} holds non-integer values; it must be a label map (e.g. argmax output), not probabilities"
            )
    if arr.min() < 0:
        raise UserInputError(f"{path} holds negative label values; label maps use 0 for background and 1..N")
    return arr.astype(np.int64), img


def _grid_difference(pred: sitk.Image, label: sitk.Image) -> str | None:
    """None when the prediction is on the label's grid (:func:`ultralight3d.io.grid_mismatch`, the package's one
    "same grid" rule), else how it differs."""
    diffs = grid_mismatch(ImageGeometry.from_sitk(label), ImageGeometry.from_sitk(pred), "label")
    return "; ".join(diffs) if diffs else None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, Paths -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _mean_std(stats: Mapping, digits: int) -> str:
    if stats["n"] == 0:
        return "n/a"
    if stats["n"] == 1:
        return _fmt(stats["mean"], digits)
    return f"{_fmt(stats['mean'], digits)} ± {_fmt(stats['std'], digits)}"


def format_markdown_table(summary: Mapping, tolerance_mm: float) -> str:
    """Markdown table of a :func:`summarize_cases` result: one row per class plus the mean over classes.

    Cells are ``mean ± std`` over the cases with a value (just the value for one case, ``n/a`` for none).
    """
    tol = f"{tolerance_mm:g}"
    lines = [
        f"| Class | Dice | HD95 (mm) | NSD @ {tol} mm | cases scored | both empty | missed (pred empty) | "
        "false positive (label empty) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in summary["classes"].items():
        cells = [_mean_std(c[k], 2 if k == "hd95" else 3) for k in ("dice", "hd95", "nsd")]
        lines.append(
            f"| {c['label']} {name} | {' | '.join(cells)} | {c['dice']['n']} | {c['n_both_empty']} | "
            f"{c['n_pred_empty']} | {c['n_label_empty']} |"
        )
    m = summary["mean"]
    lines.append(
        f"| **mean over classes** | **{_fmt(m['dice'])}** | **{_fmt(m['hd95'], 2)}** | **{_fmt(m['nsd'])}** | | | | |"
    )
    return "\n".join(lines) + "\n"


def _normalise_class_names(class_names: Mapping) -> dict[int, str]:
    try:
        names = {int(k): str(v) for k, v in class_names.items()}
    except (TypeError, ValueError) as err:
        raise UserInputError(f"class names must map integer label values to names, got {dict(class_names)}") from err
    names.pop(0, None)
    if not names:
        raise UserInputError("the class table has no foreground class; give at least {1: 'name'}")
    return names


def evaluate_cases(
    pred_paths: Sequence[str | os.PathLike],
    label_paths: Sequence[str | os.PathLike],
    class_names: Mapping[int, str],
    output_dir: str | os.PathLike,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    overwrite: bool = False,
    resample: bool = False,
    plots: bool = True,
    label_map: Mapping[Any, Any] | None = None,
    protocol: str | None = None,
) -> dict:
    """Score predicted label maps against reference label maps and write the report files.

    Per case and per foreground class: Dice, HD95 (mm) and normalised surface Dice at ``tolerance_mm`` (MONAI
    ``DiceMetric``, ``HausdorffDistanceMetric(percentile=95)``, ``SurfaceDiceMetric``), using the voxel spacing of
    the label file. Empty classes follow :mod:`ultralight3d.evaluation.metrics` (``both_empty`` cases are excluded,
    missed classes score Dice 0 and HD95 NaN, and are counted). Means are plain means over cases.

    Args:
        pred_paths: predicted label maps (NIfTI/NRRD/MHA), paired in order with ``label_paths``.
        label_paths: reference label maps; their file names give the case ids.
        class_names: ``{label value: name}``; background (0) is dropped if present. String keys are accepted.
        output_dir: folder for ``metrics_per_case.csv``, ``metrics.json``, ``metrics.md``, ``metrics_boxplot.png``.
        tolerance_mm: surface-Dice tolerance in millimetres.
        overwrite: replace existing report files (otherwise they are refused before anything is computed).
        resample: when a prediction is on a different grid from its label, resample it onto the label grid (nearest
            neighbour) instead of raising.
        plots: also write the box-plot PNG.
        label_map: ``{original value: new value}`` applied to every reference before scoring, exactly as training
            applies it (:func:`ultralight3d.evaluation.remap_labels`; values not in the map are kept), so a reference
            in the dataset's original labels is scored in the model's label space.
        protocol: take ``label_map`` from this protocol (``transforms/<protocol>.json``) when ``label_map`` is not
            given (Synapse: BTCV 13 organs -> 8).

    Returns:
        ``{"tolerance_mm", "conventions", "classes": {name: {...stats...}}, "mean": {"dice", "hd95", "nsd"},
        "cases": [{"case", "pred", "label", "spacing_mm", "resampled", "metrics": {name: {dice, hd95, nsd,
        status}}}], "files": {kind: path}}`` (the content of ``metrics.json``; NaN shown as ``None`` there).

    Raises:
        UserInputError: lists of different lengths or empty, unreadable files, unknown label values, different grids
            without ``resample``, or existing outputs without ``overwrite``.
    """
    if len(pred_paths) != len(label_paths):
        raise UserInputError(
            f"{len(pred_paths)} predictions but {len(label_paths)} labels; pass one prediction per label"
        )
    if not pred_paths:
        raise UserInputError("nothing to evaluate: no prediction/label pairs were given")
    if not tolerance_mm > 0:
        raise UserInputError(f"--tolerance must be a positive distance in mm, got {tolerance_mm}")
    names = _normalise_class_names(class_names)
    mapping = normalise_label_map(label_map) if label_map is not None else protocol_label_map(protocol)
    output_dir = Path(output_dir)
    files = {k: output_dir / v for k, v in OUTPUT_FILES.items() if plots or k != "boxplot"}
    for path in files.values():  # refuse early, before minutes of computation
        check_writable(path, overwrite)

    per_case: dict[str, dict[int, dict]] = {}
    cases: list[dict] = []
    for pred_path, label_path in tqdm(list(zip(pred_paths, label_paths, strict=True)), desc="evaluate", unit="case"):
        pred_path, label_path = Path(pred_path), Path(label_path)
        label, label_img = read_label_map(label_path)
        label = remap_labels(label, mapping)
        pred, pred_img = read_label_map(pred_path)
        diff = _grid_difference(pred_img, label_img)
        resampled = False
        if diff is not None:
            if not resample:
                raise UserInputError(
                    f"{pred_path} is not on the grid of its label {label_path} ({diff}); pass "
                    "--resample to resample the prediction onto the label grid (nearest neighbour)"
                )
            pred_img = sitk.Resample(
                pred_img, label_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred_img.GetPixelID()
            )
            pred = sitk.GetArrayFromImage(pred_img).astype(np.int64)
            resampled = True
        spacing = tuple(float(s) for s in reversed(label_img.GetSpacing()))  # array axes are (Z, Y, X)
        try:
            metrics = compute_case_metrics(pred, label, names.keys(), spacing=spacing, tolerance_mm=tolerance_mm)
        except ValueError as err:
            hint = (
                ""
                if mapping
                else (
                    " or, for a reference in the dataset's original labels, the protocol that maps "
                    "them (--protocol, e.g. synapse for BTCV's 13 organs)"
                )
            )
            raise UserInputError(
                f"{pred_path} / {label_path}: {err}; pass the matching class table "
                f"(--labels labels.csv or --classes){hint}"
            ) from err
        cid = case_id_from_path(label_path)
        if cid in per_case:
            cid = f"{cid}_{len(per_case)}"
        per_case[cid] = metrics
        cases.append(
            {
                "case": cid,
                "pred": str(pred_path),
                "label": str(label_path),
                "spacing_mm": list(reversed(spacing)),
                "resampled": resampled,
                "metrics": {names[k]: v for k, v in metrics.items()},
            }
        )

    summary = summarize_cases(per_case, names)
    result = {
        "tolerance_mm": float(tolerance_mm),
        "protocol": protocol,
        "label_map": {str(k): v for k, v in mapping.items()} if mapping else None,
        "conventions": {
            "background": "excluded",
            "mean": "plain mean over cases of the non-NaN per-case values; 'mean' row = mean of class means",
            "both_empty": "class absent in label and prediction: not scored (NaN), counted in n_both_empty",
            "pred_empty": "class in label but not predicted: Dice 0, NSD 0, HD95 NaN (infinite), n_pred_empty",
            "label_empty": "class predicted but absent in label: Dice 0, NSD 0, HD95 NaN (infinite), n_label_empty",
            "hd95_units": "mm (label file spacing)",
            "label_map": "applied to the reference before scoring, as in training (values not in the map kept)",
        },
        **summary,
        "cases": cases,
        "files": {k: str(v) for k, v in files.items()},
    }

    with atomic_path(files["csv"], overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "label", "class", "dice", "hd95_mm", "nsd", "status"])
            for case in cases:
                for value, name in sorted(names.items()):
                    m = case["metrics"][name]
                    writer.writerow(
                        [
                            case["case"],
                            value,
                            name,
                            *(_fmt(m[k], 6) if not math.isnan(m[k]) else "nan" for k in ("dice", "hd95", "nsd")),
                            m["status"],
                        ]
                    )
    with atomic_path(files["json"], overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(_clean(result), indent=2) + "\n", encoding="utf-8")
    md = (
        f"# Evaluation: {len(cases)} cases\n\nDice, HD95 and normalised surface Dice (NSD, tolerance "
        f"{tolerance_mm:g} mm) per class, mean ± std over cases; background excluded.\n\n"
        + format_markdown_table(summary, tolerance_mm)
    )
    with atomic_path(files["markdown"], overwrite=overwrite) as tmp:
        tmp.write_text(md, encoding="utf-8")
    if plots:
        from ..plots import save_metric_boxplots

        save_metric_boxplots(per_case, names, files["boxplot"], tolerance_mm=tolerance_mm, overwrite=overwrite)
    logger.info(
        "Evaluation of %d cases: mean Dice %s, HD95 %s mm, NSD %s; reports in %s",
        len(cases),
        _fmt(summary["mean"]["dice"]),
        _fmt(summary["mean"]["hd95"], 2),
        _fmt(summary["mean"]["nsd"]),
        output_dir,
    )
    return result
