"""Datalist for Synapse multi-organ CT (BTCV ``RawData/Training/{img,label}``) with the TransUNet split.

Two label protocols (``prepare synapse --protocol 8|13``), both read from ``transforms/``:

* ``"8"`` -> protocol ``synapse`` (default): the 8 organs the papers report and our Synapse bundles train; the
  datalist carries the protocol's ``label_map`` (original BTCV value -> 8-organ value, the 5 other organs -> 0, plus
  ``0 -> 0``) and the 13 original names as ``original_labels``.
* ``"13"`` -> protocol ``synapse13``: all 13 BTCV organs with their original values.

Example::

    from ultralight3d.data import prepare_synapse
    result = prepare_synapse("/data/BTCV", label_protocol="8")
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..io.files import list_image_files, strip_image_suffix
from .checks import protocol_label_fix
from .common import Case, protocol_tables, resolve_output
from .datalist import FOLD_SEED, NUM_FOLDS
from .finish import PrepareResult, VoxelChecks, finish

__all__ = [
    "LABEL_PROTOCOLS",
    "ORIGINAL_PROTOCOL",
    "SYNAPSE_TEST_CASES",
    "SYNAPSE_TRAINING_CASES",
    "prepare_synapse",
    "synapse_label_map",
]

#: ``--protocol`` value -> transform protocol (``transforms/<name>.json``).
LABEL_PROTOCOLS = {"8": "synapse", "13": "synapse13"}
#: The protocol whose table is the label files' own (13 BTCV organs, original values).
ORIGINAL_PROTOCOL = "synapse13"

# TransUNet lists/lists_Synapse/test_vol.txt (12 cases); the other 18 of the 30 BTCV training cases are its train set.
SYNAPSE_TEST_CASES = ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")
SYNAPSE_TRAINING_CASES = tuple(
    f"{i:04d}" for i in [*range(1, 11), *range(21, 41)] if f"{i:04d}" not in SYNAPSE_TEST_CASES
)

_IMG = re.compile(r"^img(\d+)$")
_LABEL = re.compile(r"^label(\d+)$")


def synapse_label_map(protocol: str = "synapse") -> dict[str, int] | None:
    """``{original BTCV value: training value}`` of ``protocol`` with every original value listed (``0 -> 0``
    included: :class:`monai.transforms.MapLabelValued` leaves unlisted values unchanged); ``None`` without a map."""
    tables = protocol_tables(protocol)
    if not tables.label_map:
        return None
    original = protocol_tables(ORIGINAL_PROTOCOL).labels
    full = {"0": 0, **tables.label_map}
    return {k: full.get(k, 0) for k in sorted({*original, *full}, key=int)}


def _find_synapse_root(root: Path) -> Path:
    for cand in (root / "RawData" / "Training", root / "Abdomen" / "RawData" / "Training", root / "Training", root):
        if (cand / "img").is_dir() and (cand / "label").is_dir():
            return cand
    raise UserInputError(
        f"no RawData/Training/img and RawData/Training/label under {root}; point --root at the folder where "
        f"Synapse RawData.zip (BTCV Abdomen, syn3193805) was extracted"
    )


def prepare_synapse(
    root: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    label_protocol: str = "8",
    overwrite: bool = False,
    num_folds: int = NUM_FOLDS,
    seed: int = FOLD_SEED,
    check_labels: bool = False,
    check_images: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Datalist for Synapse multi-organ CT (BTCV ``RawData/Training/{img,label}``) with the TransUNet split.

    The 12 TransUNet test cases go to ``validation`` (the fixed held-out set the papers report on), the other 18 to
    ``training`` with folds; ``RawData/Testing/img`` (unlabelled) goes to ``test``.

    Args:
        root: folder holding ``RawData`` (or ``RawData`` itself, or ``RawData/Training``).
        output: datalist path or folder; default ``<root>/datalist.json``.
        overwrite, num_folds, seed, check_labels, check_images, progress: as in
            :func:`~ultralight3d.data.msd_prostate.prepare_msd_prostate` (the label files are checked against the
            13 original BTCV values with either protocol).
        label_protocol: ``"8"`` (default: protocol ``synapse``, the 8 organs the papers report and our Synapse
            bundles train; the datalist carries ``label_map`` ``{original value: new value}`` for the training
            transform, the 5 other organs -> 0) or ``"13"`` (protocol ``synapse13``: all BTCV organs, original
            values).
    """
    label_protocol = str(label_protocol)
    if label_protocol not in LABEL_PROTOCOLS:
        raise UserInputError(f"label protocol must be '13' or '8', got {label_protocol!r}")
    protocol = LABEL_PROTOCOLS[label_protocol]
    tables = protocol_tables(protocol)
    original = protocol_tables(ORIGINAL_PROTOCOL)
    root = Path(root).expanduser()
    train_dir = _find_synapse_root(root)
    problems: list[str] = []
    found: dict[str, Case] = {}
    for image in list_image_files(train_dir / "img"):
        m = _IMG.match(strip_image_suffix(image))
        if not m:
            continue
        num = m.group(1)
        label = train_dir / "label" / image.name.replace("img", "label", 1)
        if not label.is_file():
            problems.append(f"image {image} has no label {label}; re-extract RawData.zip completely")
        split = "validation" if num in SYNAPSE_TEST_CASES else None
        case = Case(case=f"case{num}", images=[image], label=label, fixed_split=split)
        if case.case in found:
            problems.append(f"duplicate case {case.case}: {found[case.case].images[0]} and {image}; keep one")
            continue
        found[case.case] = case
    for label in list_image_files(train_dir / "label"):
        m = _LABEL.match(strip_image_suffix(label))
        if m and f"case{m.group(1)}" not in found:
            problems.append(f"label {label} has no image img{m.group(1)} in {train_dir / 'img'}; add it or remove it")
    missing = [n for n in (*SYNAPSE_TEST_CASES, *SYNAPSE_TRAINING_CASES) if f"case{n}" not in found]
    if missing:
        problems.append(
            f"{len(missing)} of the 30 BTCV training cases of the TransUNet split are missing from {train_dir / 'img'} "
            f"(img{', img'.join(missing[:6])}{'...' if len(missing) > 6 else ''}); extract the full RawData.zip"
        )
    extra = sorted(c for c in found if c[4:] not in (*SYNAPSE_TEST_CASES, *SYNAPSE_TRAINING_CASES))
    notes = [f"{len(extra)} case(s) outside the TransUNet split added to training: {', '.join(extra)}"] if extra else []
    test_cases = []
    for image in list_image_files(train_dir.parent / "Testing" / "img"):
        m = _IMG.match(strip_image_suffix(image))
        if m:
            test_cases.append(Case(case=f"test{m.group(1)}", images=[image]))
    header: dict[str, Any] = {
        "name": "Synapse",
        "description": (
            f"Synapse multi-atlas abdomen CT (BTCV), TransUNet split (18 training / 12 held-out), "
            f"{label_protocol}-organ label protocol"
        ),
        "reference": "MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault; split of TransUNet (Chen et al. 2021)",
        "licence": "Synapse syn3193805 data terms",
        "source": "Synapse RawData/Training",
        "label_protocol": label_protocol,
        "validation_protocol": "the 12 TransUNet test cases (lists_Synapse/test_vol.txt)",
    }
    label_map = synapse_label_map(protocol)
    if label_map is not None:
        header["label_map"] = label_map
        header["original_labels"] = dict(original.labels)
    return finish(
        dataset=f"Synapse ({label_protocol}-organ protocol)",
        root=train_dir,
        out_path=resolve_output(root, output),
        overwrite=overwrite,
        cases=list(found.values()),
        test_cases=test_cases,
        problems=problems,
        protocol=protocol,
        labels=dict(tables.labels),
        channels=list(tables.channels),
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        voxel_checks=VoxelChecks(
            labels=check_labels,
            images=check_images,
            allowed_label_values=[int(k) for k in original.labels],
            label_fix=protocol_label_fix(ORIGINAL_PROTOCOL),
        ),
        notes=notes,
    )
