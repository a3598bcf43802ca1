"""The evaluation step of ``evaluate.json``: score the saved predictions of the validation cases."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..io.files import strip_image_suffix

__all__ = ["evaluate_predictions", "prediction_path"]

logger = logging.getLogger(__name__)


def prediction_path(image: str | Sequence[str], pred_dir: str | os.PathLike, postfix: str = "seg") -> Path:
    """Where ``SaveImaged(output_postfix=postfix, separate_folder=False)`` writes the prediction of ``image``."""
    first = Path(image if isinstance(image, (str, os.PathLike)) else image[0])
    return Path(pred_dir) / f"{strip_image_suffix(first.name)}_{postfix}.nii.gz"


def evaluate_predictions(
    cases: Sequence[Mapping[str, Any]],
    pred_dir: str | os.PathLike,
    class_names: Mapping[int, str],
    output_dir: str | os.PathLike,
    postfix: str = "seg",
    tolerance_mm: float | None = None,
    overwrite: bool = False,
    protocol: str | None = None,
    transform_params: Mapping[str, Any] | None = None,
) -> dict:
    """Score the saved predictions of ``cases`` against their labels (:func:`ultralight3d.evaluation.evaluate_cases`).

    The reference labels are remapped with the ``label_map`` that training applies for ``protocol`` and
    ``transform_params`` (Synapse: the 13 BTCV organs of the raw label files -> the 8 organs of the predictions), so
    predictions and references are compared in the same label space.

    Returns:
        The summary dict of ``evaluate_cases`` (per-case / per-class Dice, HD95, NSD); report files go to
        ``output_dir``.
    """
    from ..evaluation import evaluate_cases, protocol_label_map

    preds = [prediction_path(c["image"], pred_dir, postfix) for c in cases]
    missing = [str(p) for p in preds if not p.is_file()]
    if missing:
        raise UserInputError(f"predictions missing: {', '.join(missing[:3])}; the inference step did not write them")
    from .settings import as_bool

    kwargs: dict[str, Any] = {"overwrite": as_bool(overwrite, "eval_overwrite")}
    if tolerance_mm is not None:
        kwargs["tolerance_mm"] = float(tolerance_mm)
    label_map = protocol_label_map(protocol, transform_params) if protocol else None
    result = evaluate_cases(
        preds, [c["label"] for c in cases], dict(class_names), output_dir, label_map=label_map, **kwargs
    )
    logger.info(f"evaluation of {len(preds)} case(s) written to {output_dir}")
    return result
