"""Array-level segmentation metrics: per-class Dice, HD95 and normalised surface Dice (MONAI implementations).

Conventions (the same in ``ultralight3d evaluate``, the bundles' ``evaluate.json`` and the demo):

* Background (label 0) is never scored; every class in ``class_ids`` is scored separately.
* Distances are in millimetres: the voxel ``spacing`` is passed to MONAI, so anisotropic scans are measured correctly.
* Empty classes are reported, never silently averaged in:

  ==================  ======  ======  ======  ====================================================
  status              Dice    HD95    NSD     meaning
  ==================  ======  ======  ======  ====================================================
  ``ok``              value   value   value   both masks hold the class
  ``both_empty``      NaN     NaN     NaN     class absent from label and prediction: not scored
  ``pred_empty``      0       NaN     0       class missed entirely (HD95 is infinite: NaN + flag)
  ``label_empty``     0       NaN     0       false-positive class (HD95 is infinite: NaN + flag)
  ==================  ======  ======  ======  ====================================================

  Means over cases use the non-NaN values only, so ``both_empty`` cases are excluded from every mean and missed
  classes pull Dice/NSD down but do not enter the HD95 mean (their counts are reported next to it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric

__all__ = ["STATUSES", "DEFAULT_TOLERANCE_MM", "compute_case_metrics", "summarize_cases"]

#: Possible per-class statuses, see the module docstring.
STATUSES = ("ok", "both_empty", "pred_empty", "label_empty")
#: Default normalised-surface-Dice tolerance in millimetres.
DEFAULT_TOLERANCE_MM = 2.0


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """``(*spatial)`` integer map -> ``(1, num_classes, *spatial)`` float one-hot tensor."""
    t = torch.as_tensor(np.ascontiguousarray(labels), dtype=torch.long)
    out = torch.zeros((1, num_classes, *t.shape), dtype=torch.float32)
    out[0].scatter_(0, t[None], 1.0)
    return out


def _first_row(result: Any) -> list[float]:
    """Values of batch item 0 of a MONAI metric's ``reduction="none"`` result (a ``(batch, classes)`` tensor)."""
    return [float(v) for v in torch.as_tensor(result[0]).flatten().tolist()]


def compute_case_metrics(
    pred: np.ndarray,
    label: np.ndarray,
    class_ids: Iterable[int],
    spacing: Sequence[float] | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> dict[int, dict[str, float | str]]:
    """Dice, HD95 (mm) and normalised surface Dice at ``tolerance_mm`` for each foreground class of one case.

    Args:
        pred: predicted label map, integer array of shape ``(*spatial)`` (2D or 3D), values in ``{0} ∪ class_ids``.
        label: reference label map of the same shape and grid.
        class_ids: foreground label values to score (0 is ignored if given).
        spacing: voxel size in mm along each array axis (same order as the array axes); ``None`` means 1 mm.
        tolerance_mm: surface-Dice tolerance in mm, the same for every class.

    Returns:
        ``{class_id: {"dice": float, "hd95": float, "nsd": float, "status": str}}`` with the empty-class conventions
        of the module docstring (NaN where a value is undefined).

    Raises:
        ValueError: shapes differ, or a map holds a value that is neither 0 nor in ``class_ids``.

    Example::

        >>> a = np.zeros((8, 8, 8), np.uint8); a[2:6, 2:6, 2:6] = 1
        >>> compute_case_metrics(a, a, [1])[1]["dice"]
        1.0
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    ids = sorted({int(c) for c in class_ids} - {0})
    if not ids:
        raise ValueError("no foreground class to score (class_ids is empty or only background)")
    allowed = np.array([0, *ids])
    for name, arr in (("prediction", pred), ("label", label)):
        extra = np.setdiff1d(np.unique(arr), allowed)
        if extra.size:
            raise ValueError(f"{name} holds label values {extra.tolist()} that are not in the class table {ids}")
    # Compact index: 0 = background, i = ids[i-1]; keeps one-hot small when label values are sparse (e.g. 1, 205).
    lut = np.zeros(int(max(ids)) + 1, dtype=np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    num = len(ids) + 1
    p_oh = _one_hot(lut[pred.astype(np.int64)], num)
    l_oh = _one_hot(lut[label.astype(np.int64)], num)
    spacing_list = [1.0] * pred.ndim if spacing is None else [float(s) for s in spacing]
    if len(spacing_list) != pred.ndim:
        raise ValueError(f"spacing {spacing_list} does not match the {pred.ndim}D arrays")

    dice_m = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    hd_m = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
    nsd_m = SurfaceDiceMetric(
        class_thresholds=[float(tolerance_mm)] * len(ids), include_background=False, reduction="none"
    )
    p_any = p_oh[0, 1:].flatten(1).any(1).tolist()
    l_any = l_oh[0, 1:].flatten(1).any(1).tolist()
    dice = _first_row(dice_m(p_oh, l_oh))
    hd = [math.nan] * len(ids)
    nsd = [math.nan] * len(ids)
    if any(p and lab for p, lab in zip(p_any, l_any, strict=True)):
        with warnings.catch_warnings():  # MONAI warns for every empty class; we report emptiness ourselves
            warnings.simplefilter("ignore")
            hd = _first_row(hd_m(p_oh, l_oh, spacing=spacing_list))
            nsd = _first_row(nsd_m(p_oh, l_oh, spacing=spacing_list))

    out: dict[int, dict[str, float | str]] = {}
    for i, cid in enumerate(ids):
        if p_any[i] and l_any[i]:
            out[cid] = {"dice": float(dice[i]), "hd95": float(hd[i]), "nsd": float(nsd[i]), "status": "ok"}
        elif not p_any[i] and not l_any[i]:
            out[cid] = {"dice": math.nan, "hd95": math.nan, "nsd": math.nan, "status": "both_empty"}
        else:
            status = "pred_empty" if l_any[i] else "label_empty"
            out[cid] = {"dice": 0.0, "hd95": math.nan, "nsd": 0.0, "status": status}
    return out


def _stats(values: list[float]) -> dict[str, float | int]:
    arr = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "median": float(np.median(arr)), "n": int(arr.size)}


def summarize_cases(
    per_case: Mapping[str, Mapping[int, Mapping[str, float | str]]], class_names: Mapping[int, str]
) -> dict:
    """Means over cases (not a running aggregate) per class and over classes.

    Args:
        per_case: ``{case_id: compute_case_metrics(...)}``.
        class_names: ``{class_id: name}`` of the scored classes.

    Returns:
        ``{"classes": {name: {"label": id, "dice": stats, "hd95": stats, "nsd": stats, "n_cases": int,
        "n_both_empty": int, "n_pred_empty": int, "n_label_empty": int}}, "mean": {"dice": float, "hd95": float,
        "nsd": float}}`` where ``stats = {"mean", "std", "median", "n"}`` over the non-NaN case values, and
        ``"mean"`` is the unweighted mean of the per-class means (classes with no value are skipped).
    """
    classes: dict[str, dict] = {}
    for cid, name in sorted(class_names.items()):
        rows = [case[cid] for case in per_case.values() if cid in case]
        entry: dict = {"label": int(cid)}
        for key in ("dice", "hd95", "nsd"):
            entry[key] = _stats([float(r[key]) for r in rows])
        entry["n_cases"] = len(rows)
        for status in STATUSES[1:]:
            entry[f"n_{status}"] = sum(1 for r in rows if r["status"] == status)
        classes[name] = entry
    mean = {}
    for key in ("dice", "hd95", "nsd"):
        vals = [c[key]["mean"] for c in classes.values() if not math.isnan(c[key]["mean"])]
        mean[key] = float(np.mean(vals)) if vals else math.nan
    return {"classes": classes, "mean": mean}
