"""The shared tail of every preparer: checks, folds, relative paths, the datalist JSON (atomic write), the summary.

The datalist keys are documented in :mod:`ultralight3d.data.datalist`; besides the MONAI decathlon sections it
carries what a bundle configures itself from (``protocol``, ``labels``, ``num_classes``, ``channels``,
``in_channels``, ``modality``, and ``label_map`` where the protocol remaps labels).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..utils import atomic_path, check_writable
from .checks import (
    LABEL_TABLE_FIX,
    VoxelStats,
    check_cases,
    check_image_voxels,
    check_label_voxels,
    problems_error,
    scan_voxels,
)
from .common import Case, rel
from .datalist import FOLD_METHOD, assign_folds

__all__ = ["DatasetSummary", "PrepareResult", "VoxelChecks", "finish", "format_summary"]

logger = logging.getLogger(__name__)


@dataclass
class DatasetSummary:
    """What a preparer found; printed by :func:`format_summary`."""

    dataset: str
    num_training: int
    num_validation: int
    num_test: int
    num_folds: int
    fold_sizes: list[int]
    channels: list[str]
    labels: dict[str, str]
    spacing_min: tuple[float, ...]
    spacing_max: tuple[float, ...]
    orientations: dict[str, int]
    notes: list[str] = field(default_factory=list)
    protocol: str | None = None


@dataclass
class PrepareResult:
    """Output of a preparer: the datalist written, where, and a summary."""

    datalist: dict[str, Any]
    path: Path
    summary: DatasetSummary


@dataclass
class VoxelChecks:
    """Which voxel checks to run (they read every file; see :mod:`ultralight3d.data.checks`).

    Attributes:
        labels: read every label: NaN/inf and values outside ``allowed_label_values``.
        images: read every image (training and test): NaN/inf.
        allowed_label_values: class values the label files may hold (default: the datalist's label table; the
            Synapse 8-organ datalist checks its files against the 13 original BTCV values).
        label_fix: the fix named for a label value outside the table (default: give the full table with --labels).
        label_stats: labels already scanned by the preparer (the folder preparer reads values for its table).
    """

    labels: bool = False
    images: bool = False
    allowed_label_values: Iterable[int] | None = None
    label_fix: str = LABEL_TABLE_FIX
    label_stats: dict[Path, VoxelStats] | None = None


def finish(
    *,
    dataset: str,
    root: Path,
    out_path: Path,
    overwrite: bool,
    cases: list[Case],
    test_cases: list[Case],
    problems: list[str],
    protocol: str,
    labels: dict[str, str],
    channels: list[str],
    header: dict[str, Any],
    num_folds: int,
    seed: int,
    progress: bool,
    voxel_checks: VoxelChecks | None = None,
    validation_from_fold: int | None = None,
    notes: Sequence[str] = (),
) -> PrepareResult:
    """Check the cases, assign folds and write the datalist; raise with every problem found.

    Args:
        dataset: name for messages (``"folder MyData"``).
        root: dataset folder (for messages).
        out_path: datalist file.
        overwrite: replace an existing datalist.
        cases: labelled cases (``fixed_split`` ones go to ``validation``, the others get folds).
        test_cases: unlabelled cases (``test``).
        problems: problems the discovery step found (the checks add theirs).
        protocol: transform protocol name recorded in the datalist.
        labels: class table ``{"0": "background", ...}``.
        channels: channel names (empty: ``["image"]`` / ``["channel0", ...]`` from the files).
        header: ``name``, ``description`` and extra top-level keys.
        num_folds: folds (reduced to the number of groups when there are fewer).
        seed: fold seed.
        progress: progress bars.
        voxel_checks: optional voxel checks.
        validation_from_fold: copy this fold into ``validation`` (MSD convention).
        notes: lines for the summary.

    Raises:
        UserInputError: one message listing every problem, or too few cases for cross-validation.
    """
    if not problems:
        check_writable(out_path, overwrite)  # fail before the (slower) header checks
    checked = check_cases(cases, test_cases, problems, len(channels) or None, progress, dataset)
    if not channels:
        n = checked.num_channels
        channels = ["image"] if n == 1 else [f"channel{i}" for i in range(n)]
    vc = voxel_checks or VoxelChecks()
    if vc.images:
        images = [p for c in [*cases, *test_cases] for p in c.images if p in checked.readable]
        check_image_voxels(images, progress, problems)
    if vc.labels:
        todo = [c.label for c in cases if c.label is not None and c.label in checked.readable]
        known = vc.label_stats or {}
        stats = {p: known[p] for p in todo if p in known}
        stats.update(
            scan_voxels(
                [p for p in todo if p not in known], progress, problems, values=True, desc="checking label voxels"
            )
        )
        allowed = vc.allowed_label_values if vc.allowed_label_values is not None else [int(k) for k in labels]
        check_label_voxels({p: stats[p] for p in todo if p in stats}, allowed, problems, vc.label_fix)
    if problems:
        raise problems_error(dataset, root, problems)

    cv_cases = [c for c in cases if c.fixed_split is None]
    groups = {c.case: c.group or c.case for c in cv_cases}
    n_groups = len(set(groups.values()))
    if n_groups < 2:
        raise UserInputError(
            f"{dataset} at {root}: only {n_groups} labelled case(s) found for cross-validation; at least 2 are needed "
            f"(add cases to the training folder)"
        )
    notes = list(notes)
    if n_groups < num_folds:
        notes.append(f"only {n_groups} cases: using {n_groups} folds instead of {num_folds}")
        num_folds = n_groups
    fold_of_group = assign_folds(groups.values(), num_folds, seed)

    base = out_path.parent

    def entry(c: Case, with_label: bool = True) -> dict[str, Any]:
        images = [rel(p, base) for p in c.images]
        item: dict[str, Any] = {"image": images[0] if len(images) == 1 else images}
        if with_label and c.label is not None:
            item["label"] = rel(c.label, base)
        item["case"] = c.case
        return item

    training = []
    for c in sorted(cv_cases, key=lambda c: c.case):
        item = entry(c)
        item["fold"] = fold_of_group[groups[c.case]]
        training.append(item)
    validation = [entry(c) for c in sorted(cases, key=lambda c: c.case) if c.fixed_split == "validation"]
    if validation_from_fold is not None:
        validation = [dict(item) for item in training if item["fold"] == validation_from_fold]
    test = [entry(c, with_label=False) for c in sorted(test_cases, key=lambda c: c.case)]

    geoms = [checked.geometries[c.case] for c in cases if c.case in checked.geometries]
    spacing = np.array([g.spacing for g in geoms]) if geoms else np.zeros((1, 3))
    orientations = dict(sorted(Counter(g.orientation for g in geoms).items(), key=lambda kv: -kv[1]))
    fold_sizes = [sum(1 for t in training if t["fold"] == f) for f in range(num_folds)]

    header = dict(header)
    datalist: dict[str, Any] = {
        "name": header.pop("name"),
        "description": header.pop("description"),
        "protocol": protocol,
        "labels": labels,
        "num_classes": max(int(k) for k in labels) + 1,
        "channels": channels,
        "in_channels": len(channels),
        "modality": {str(i): ch for i, ch in enumerate(channels)},
        "tensorImageSize": "4D" if len(channels) > 1 else "3D",
        **header,
        "numTraining": len(training),
        "numValidation": len(validation),
        "numTest": len(test),
        "num_folds": num_folds,
        "fold_seed": seed,
        "fold_method": FOLD_METHOD,
        "spacing_range_mm": {"min": spacing.min(0).round(4).tolist(), "max": spacing.max(0).round(4).tolist()},
        "orientations": orientations,
        "training": training,
        "validation": validation,
        "test": test,
    }
    from .. import __version__

    datalist["prepared_by"] = f"ultralight3d {__version__}"
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(datalist, indent=2) + "\n", encoding="utf-8")

    summary = DatasetSummary(
        dataset=dataset,
        num_training=len(training),
        num_validation=len(validation),
        num_test=len(test),
        num_folds=num_folds,
        fold_sizes=fold_sizes,
        channels=channels,
        labels=labels,
        spacing_min=tuple(spacing.min(0).tolist()),
        spacing_max=tuple(spacing.max(0).tolist()),
        orientations=orientations,
        notes=notes,
        protocol=protocol,
    )
    for line in format_summary(summary, out_path).splitlines():
        logger.info(line)
    return PrepareResult(datalist=datalist, path=out_path, summary=summary)


def format_summary(summary: DatasetSummary, path: Path | None = None) -> str:
    """Human-readable report of what was found (cases, classes, spacing, orientation, folds, output)."""
    sp = " x ".join(
        f"{a:.3g}" if f"{a:.3g}" == f"{b:.3g}" else f"{a:.3g}-{b:.3g}"
        for a, b in zip(summary.spacing_min, summary.spacing_max, strict=True)
    )
    classes = ", ".join(f"{k} {v}" for k, v in summary.labels.items() if k != "0")
    orient = ", ".join(f"{k} ({n} cases)" for k, n in summary.orientations.items())
    lines = [
        f"{summary.dataset}: {summary.num_training} training cases in {summary.num_folds} folds "
        f"(sizes {'/'.join(map(str, summary.fold_sizes))}), {summary.num_validation} validation, "
        f"{summary.num_test} test (unlabelled)",
        f"  channels: {', '.join(summary.channels)}",
        f"  classes ({len(summary.labels)} incl. background): {classes}",
        f"  spacing (mm, x/y/z range): {sp}",
        f"  orientation (RAS-style axis codes): {orient}",
        *([f"  protocol: {summary.protocol} (transforms/{summary.protocol}.json)"] if summary.protocol else []),
        *(f"  note: {n}" for n in summary.notes),
    ]
    if path is not None:
        lines.append(f"datalist written to {path}")
    return "\n".join(lines)
