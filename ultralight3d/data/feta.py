"""Datalist for FeTA 2021 (fetal brain T2w MRI, 7 tissues), labels and channels from the ``feta`` protocol
(``transforms/feta.json``).

Example::

    from ultralight3d.data import prepare_feta
    result = prepare_feta("/data/feta_2.1")
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..io.files import is_hidden
from .checks import protocol_label_fix
from .common import Case, protocol_tables, resolve_output
from .datalist import FOLD_SEED, NUM_FOLDS
from .finish import PrepareResult, VoxelChecks, finish

__all__ = ["PROTOCOL", "prepare_feta"]

#: Transform protocol of the FeTA bundles; its labels and channels are the datalist's.
PROTOCOL = "feta"


def _find_feta_root(root: Path) -> Path:
    if any(root.glob("sub-*/anat")):
        return root
    subs = [p for p in sorted(root.iterdir()) if p.is_dir() and any(p.glob("sub-*/anat"))] if root.is_dir() else []
    if len(subs) == 1:
        return subs[0]
    raise UserInputError(
        f"no sub-*/anat folders under {root}; point --root at the FeTA 2021 folder (e.g. feta_2.1) that holds "
        f"sub-001/anat/sub-001_rec-mial_T2w.nii.gz and sub-001_rec-mial_dseg.nii.gz"
    )


def prepare_feta(
    root: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    num_folds: int = NUM_FOLDS,
    seed: int = FOLD_SEED,
    check_labels: bool = False,
    check_images: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Datalist for FeTA 2021 (BIDS-like ``sub-XXX/anat/<prefix>_T2w.nii.gz`` + ``<prefix>_dseg.nii.gz``, 8 classes).

    Both reconstructions (``rec-mial``, ``rec-irtk``) are accepted; folds are assigned per subject. An optional
    ``participants.tsv`` is copied into the datalist's ``participants`` table (not required).

    Args:
        root: the FeTA folder (or its parent).
        output, overwrite, num_folds, seed, check_labels, check_images, progress: as in
            :func:`~ultralight3d.data.msd_prostate.prepare_msd_prostate`.
    """
    root = _find_feta_root(Path(root).expanduser())
    proto = protocol_tables(PROTOCOL)
    problems: list[str] = []
    cases: list[Case] = []
    images = sorted(p for p in root.glob("sub-*/anat/*_T2w.nii*") if not is_hidden(p.name))
    for image in images:
        ext = ".nii.gz" if image.name.endswith(".nii.gz") else ".nii"
        prefix = image.name[: -len("_T2w" + ext)]
        label = image.with_name(f"{prefix}_dseg{ext}")
        if not label.is_file():
            problems.append(
                f"image {image} has no label {label.name} beside it; add the matching _dseg file or remove the image"
            )
        cases.append(Case(case=prefix, images=[image], label=label, group=image.parent.parent.name))
    known = {c.label for c in cases}
    for label in sorted(p for p in root.glob("sub-*/anat/*_dseg.nii*") if not is_hidden(p.name)):
        if label not in known:
            problems.append(f"label {label} has no T2w image beside it; add the matching _T2w file or remove it")
    if not images and not problems:
        raise UserInputError(
            f"no sub-*/anat/*_T2w.nii.gz files under {root}; point --root at the FeTA 2021 folder (e.g. feta_2.1)"
        )
    header: dict[str, Any] = {
        "name": "FeTA2021",
        "description": "Fetal Tissue Annotation and Segmentation Challenge 2021: fetal brain T2w MRI, 7 tissues",
        "reference": "FeTA 2021 (Payette et al., Scientific Data 2021)",
        "licence": "FeTA data terms (restricted; see the data provider)",
        "source": "FeTA 2021 BIDS folder",
        "validation_protocol": "5-fold cross-validation by subject (FeTA publishes no labelled held-out set)",
    }
    tsv = root / "participants.tsv"
    if tsv.is_file():
        with tsv.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        header["participants"] = {r["participant_id"]: r for r in rows if r.get("participant_id")}
    return finish(
        dataset="FeTA 2021",
        root=root,
        out_path=resolve_output(root, output),
        overwrite=overwrite,
        cases=cases,
        test_cases=[],
        problems=problems,
        protocol=PROTOCOL,
        labels=dict(proto.labels),
        channels=list(proto.channels),
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        voxel_checks=VoxelChecks(labels=check_labels, images=check_images, label_fix=protocol_label_fix(PROTOCOL)),
    )
