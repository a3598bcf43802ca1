"""Data splits for the bundles and the evaluation step of ``evaluate.json``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = ["load_split", "evaluate_predictions", "prediction_path"]

logger = logging.getLogger(__name__)


def load_split(
    dataset_dir: str | os.PathLike, datalist_file: str | os.PathLike | None = None, fold: int | str | None = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, val)`` cases of a bundle run from the datalist written by ``ultralight3d prepare``.

    Args:
        dataset_dir: dataset root (bundle id ``dataset_dir``).
        datalist_file: datalist JSON; default ``<dataset_dir>/datalist.json``.
        fold: held-out fold (0-4), or ``None`` / ``"none"`` / ``"all"`` for the datalist's fixed validation set.

    Raises:
        UserInputError: no datalist (the message says how to make one), or an invalid one.
    """
    from ..data.datalist import load_datalist

    path = Path(datalist_file) if datalist_file else Path(dataset_dir) / "datalist.json"
    if not path.is_file():
        raise UserInputError(
            f"datalist {path} not found; run `ultralight3d prepare ... --root {dataset_dir}` to write it, or pass "
            f"--dataset_dir <folder holding datalist.json> / --datalist_file <file>"
        )
    if isinstance(fold, str) and fold.strip().lower() in {"none", "all", "fixed", ""}:
        fold = None
    return load_datalist(path, fold=None if fold is None else int(fold))


def prediction_path(image: str | Sequence[str], pred_dir: str | os.PathLike, postfix: str = "seg") -> Path:
    """Where ``SaveImaged(output_postfix=postfix, separate_folder=False)`` writes the prediction of ``image``."""
    first = Path(image if isinstance(image, (str, os.PathLike)) else image[0])
    name = first.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nrrd.gz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return Path(pred_dir) / f"{name}_{postfix}.nii.gz"


def evaluate_predictions(
    cases: Sequence[Mapping[str, Any]],
    pred_dir: str | os.PathLike,
    class_names: Mapping[int, str],
    output_dir: str | os.PathLike,
    postfix: str = "seg",
    tolerance_mm: float | None = None,
    overwrite: bool = False,
) -> dict:
    """Score the saved predictions of ``cases`` against their labels (:func:`ultralight3d.evaluation.evaluate_cases`).

    Returns:
        The summary dict of ``evaluate_cases`` (per-case / per-class Dice, HD95, NSD); report files go to
        ``output_dir``.
    """
    from ..evaluation import evaluate_cases

    preds = [prediction_path(c["image"], pred_dir, postfix) for c in cases]
    missing = [str(p) for p in preds if not p.is_file()]
    if missing:
        raise UserInputError(f"predictions missing: {', '.join(missing[:3])}; the inference step did not write them")
    kwargs: dict[str, Any] = {"overwrite": overwrite}
    if tolerance_mm is not None:
        kwargs["tolerance_mm"] = float(tolerance_mm)
    result = evaluate_cases(preds, [c["label"] for c in cases], dict(class_names), output_dir, **kwargs)
    logger.info(f"evaluation of {len(preds)} case(s) written to {output_dir}")
    return result
