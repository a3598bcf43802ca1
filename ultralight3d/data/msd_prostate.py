"""Datalist for MSD Task05 Prostate (4D T2+ADC NIfTI, zones PZ/TZ), labels and channels from the ``prostate``
protocol (``transforms/prostate.json``).

Example::

    from ultralight3d.data import prepare_msd_prostate
    result = prepare_msd_prostate("/data/Task05_Prostate")
    print(result.path, result.summary.num_training)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import UserInputError
from ..io.files import strip_image_suffix
from .checks import protocol_label_fix
from .common import Case, labels_from_json, protocol_tables, read_json, resolve_output
from .datalist import FOLD_SEED, NUM_FOLDS
from .finish import PrepareResult, VoxelChecks, finish

__all__ = ["MSD_ORIENTATION_NOTE", "PROTOCOL", "prepare_msd_prostate"]

logger = logging.getLogger(__name__)

#: Transform protocol of the prostate bundles; its labels and channels are the datalist's.
PROTOCOL = "prostate"

MSD_ORIENTATION_NOTE = (
    "MSD NIfTI files are known to be stored flipped relative to their headers in some tools (anatomy LPS while the "
    "header says RAS; Project-MONAI/model-zoo#766). The data are used as they are, without any flip: a model trained "
    "on them may need checking on correctly converted DICOM-to-NIfTI scans."
)


def _find_msd_root(root: Path) -> Path:
    for cand in (root, root / "Task05_Prostate"):
        if (cand / "dataset.json").is_file():
            return cand
    raise UserInputError(
        f"no dataset.json in {root}; point --root at the extracted Task05_Prostate folder (it holds dataset.json, "
        f"imagesTr/, labelsTr/, imagesTs/) or add --download to fetch Task05_Prostate.tar into {root}"
    )


def prepare_msd_prostate(
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
    """Datalist for MSD Task05 Prostate (4D T2+ADC images, labels 0 background, 1 peripheral zone, 2 transition zone).

    The cases are the ``training`` list of the archive's ``dataset.json``; its ``test`` list (no labels) becomes
    ``test``. The fixed ``validation`` section is, by convention, the fold-0 cases (MSD defines no held-out set with
    labels); :func:`~ultralight3d.data.datalist.load_datalist` never trains on them when it uses that section. The
    label names and channels are those of the ``prostate`` protocol; ``dataset.json`` must have the same label values
    and channel count.

    Args:
        root: the extracted ``Task05_Prostate`` folder (or its parent).
        output: datalist path or folder; default ``<root>/datalist.json``.
        overwrite: replace an existing datalist.
        num_folds: cross-validation folds.
        seed: fold shuffle seed.
        check_labels: also read every label: values in the label table (0/1/2), no NaN/inf.
        check_images: also read every image: no NaN/inf voxels.
        progress: show progress bars.

    Returns:
        The datalist, where it was written, and a summary.
    """
    root = _find_msd_root(Path(root).expanduser())
    proto = protocol_tables(PROTOCOL)
    meta = read_json(root / "dataset.json", "Task05_Prostate archive")
    problems: list[str] = []
    if "labels" in meta:
        theirs = labels_from_json(meta["labels"], root / "dataset.json")
        if sorted(theirs, key=int) != sorted(proto.labels, key=int):
            problems.append(
                f"{root / 'dataset.json'} has label values {sorted(int(k) for k in theirs)} but the {PROTOCOL} "
                f"protocol has {sorted(int(k) for k in proto.labels)}; this is not the MSD Task05 archive: use "
                f"`prepare folder` for other data"
            )
    modality = meta.get("modality")
    if isinstance(modality, dict) and len(modality) != len(proto.channels):
        problems.append(
            f"{root / 'dataset.json'} lists {len(modality)} modalities ({', '.join(map(str, modality.values()))}) "
            f"but the {PROTOCOL} protocol has {len(proto.channels)} ({', '.join(proto.channels)}); use "
            f"`prepare folder` for other data"
        )
    cases: list[Case] = []
    for i, item in enumerate(meta.get("training") or []):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            problems.append(f"{root / 'dataset.json'}: training entry {i} needs 'image' and 'label'; re-extract it")
            continue
        image, label = root / item["image"], root / item["label"]
        for path, kind in ((image, "image"), (label, "label")):
            if not path.is_file():
                problems.append(
                    f"{kind} {path} listed in dataset.json is missing; re-extract Task05_Prostate.tar completely"
                )
        cases.append(Case(case=strip_image_suffix(image), images=[image], label=label))
    if not cases and not problems:
        problems.append(f"{root / 'dataset.json'} lists no training cases; re-extract Task05_Prostate.tar")
    test_cases = []
    for item in meta.get("test") or []:
        path = root / (item["image"] if isinstance(item, dict) else item)
        if path.is_file():
            test_cases.append(Case(case=strip_image_suffix(path), images=[path]))
    logger.warning("MSD orientation pitfall: %s", MSD_ORIENTATION_NOTE)
    header = {
        "name": str(meta.get("name", "PROSTATE")),
        "description": f"{meta.get('description', 'MSD Task05 Prostate')}. {MSD_ORIENTATION_NOTE}",
        "reference": meta.get("reference", "Radboud University, Nijmegen Medical Centre"),
        "licence": meta.get("licence", "CC-BY-SA 4.0"),
        "source": "Medical Segmentation Decathlon Task05_Prostate",
        "orientation_note": MSD_ORIENTATION_NOTE,
        "validation_protocol": "fold 0 of the 5 fixed folds (MSD publishes no labelled held-out set)",
    }
    return finish(
        dataset="MSD Task05 Prostate",
        root=root,
        out_path=resolve_output(root, output),
        overwrite=overwrite,
        cases=cases,
        test_cases=test_cases,
        problems=problems,
        protocol=PROTOCOL,
        labels=dict(proto.labels),
        channels=list(proto.channels),
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        voxel_checks=VoxelChecks(labels=check_labels, images=check_images, label_fix=protocol_label_fix(PROTOCOL)),
        validation_from_fold=0,
        notes=["validation = the fold-0 cases (convention; load_datalist(fold=None) does not train on them)"],
    )
