"""Datalist preparation for MSD Task05 Prostate, FeTA 2021, Synapse/BTCV and a generic imagesTr/labelsTr folder.

Every preparer finds the cases of one documented folder layout, checks them cheaply (headers only: missing labels,
labels without images, duplicate cases, image/label geometry mismatch, 2D images, inconsistent channel counts),
assigns fixed cross-validation folds, and writes a MONAI decathlon-style datalist JSON (see
:mod:`ultralight3d.data.datalist`) that :func:`monai.data.load_decathlon_datalist` reads as it is.

Folds are the same for every user: case (or subject) ids are sorted, shuffled with ``random.Random(seed)`` and dealt
round-robin into ``num_folds`` folds; the seed and the method are recorded in the JSON.

Example::

    from ultralight3d.data.prepare import prepare_synapse
    result = prepare_synapse("/data/BTCV", label_protocol="8")
    print(result.path, result.summary.num_training)
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..utils import atomic_path, check_writable
from .datalist import NUM_FOLDS

__all__ = [
    "FETA_LABELS",
    "FOLD_METHOD",
    "FOLD_SEED",
    "IMAGE_EXTENSIONS",
    "MSD_ORIENTATION_NOTE",
    "MSD_PROSTATE_LABELS",
    "SYNAPSE_8_LABEL_MAP",
    "SYNAPSE_LABELS_8",
    "SYNAPSE_LABELS_13",
    "SYNAPSE_TEST_CASES",
    "SYNAPSE_TRAINING_CASES",
    "DatasetSummary",
    "ImageGeometry",
    "PrepareResult",
    "assign_folds",
    "format_summary",
    "prepare_feta",
    "prepare_folder",
    "prepare_msd_prostate",
    "prepare_synapse",
    "read_geometry",
]

logger = logging.getLogger(__name__)

FOLD_SEED = 20240725
FOLD_METHOD = "sorted group ids, random.Random(fold_seed).shuffle, dealt round-robin into num_folds folds"
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

SPACING_ATOL_MM = 1e-3
ORIGIN_ATOL_MM = 1e-2
DIRECTION_ATOL = 1e-3

MSD_PROSTATE_LABELS = {"0": "background", "1": "PZ", "2": "TZ"}
MSD_ORIENTATION_NOTE = (
    "MSD NIfTI files are known to be stored flipped relative to their headers in some tools (anatomy LPS while the "
    "header says RAS; Project-MONAI/model-zoo#766). The data are used as they are, without any flip: a model trained "
    "on them may need checking on correctly converted DICOM-to-NIfTI scans."
)

FETA_LABELS = {
    "0": "background",
    "1": "external cerebrospinal fluid",
    "2": "grey matter",
    "3": "white matter",
    "4": "ventricles",
    "5": "cerebellum",
    "6": "deep grey matter",
    "7": "brainstem",
}

SYNAPSE_LABELS_13 = {
    "0": "background",
    "1": "spleen",
    "2": "right kidney",
    "3": "left kidney",
    "4": "gallbladder",
    "5": "esophagus",
    "6": "liver",
    "7": "stomach",
    "8": "aorta",
    "9": "inferior vena cava",
    "10": "portal and splenic veins",
    "11": "pancreas",
    "12": "right adrenal gland",
    "13": "left adrenal gland",
}
# 8-organ protocol (TransUNet and followers): the organs in the column order of TransUNet's Synapse table
# (aorta, gallbladder, kidney L, kidney R, liver, pancreas, spleen, stomach); the other 5 BTCV organs become 0.
SYNAPSE_LABELS_8 = {
    "0": "background",
    "1": "aorta",
    "2": "gallbladder",
    "3": "left kidney",
    "4": "right kidney",
    "5": "liver",
    "6": "pancreas",
    "7": "spleen",
    "8": "stomach",
}
SYNAPSE_8_LABEL_MAP = {
    "0": 0, "1": 7, "2": 4, "3": 3, "4": 2, "5": 0, "6": 5, "7": 8, "8": 1, "9": 0, "10": 0, "11": 6, "12": 0, "13": 0,
}  # fmt: skip
# TransUNet lists/lists_Synapse/test_vol.txt (12 cases); the other 18 of the 30 BTCV training cases are its train set.
SYNAPSE_TEST_CASES = ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")
SYNAPSE_TRAINING_CASES = tuple(
    f"{i:04d}" for i in [*range(1, 11), *range(21, 41)] if f"{i:04d}" not in SYNAPSE_TEST_CASES
)

_NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


# ----------------------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class ImageGeometry:
    """Header geometry of one image file (ITK/LPS convention, spatial axes only).

    Attributes:
        path: the file.
        ndim: spatial dimensions (2 or 3).
        size: voxels per spatial axis.
        spacing: voxel size in mm per spatial axis.
        origin: position of the first voxel (LPS, mm).
        direction: row-major ``ndim x ndim`` direction cosines (LPS).
        channels: number of channels (size of the 4th axis of a 4D file, or pixel components), 1 for plain 3D.
    """

    path: Path
    ndim: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    channels: int = 1

    @property
    def orientation(self) -> str:
        """Axis codes in the RAS convention of MONAI's ``Orientationd`` and nibabel (e.g. ``"RAS"``, ``"LPS"``)."""
        if self.ndim != 3:
            return "?"
        from nibabel.orientations import aff2axcodes

        lps_to_ras = np.diag([-1.0, -1.0, 1.0])
        affine = np.eye(4)
        affine[:3, :3] = lps_to_ras @ np.asarray(self.direction, dtype=float).reshape(3, 3)
        codes = aff2axcodes(affine)
        return "".join(c if c is not None else "?" for c in codes)


def read_geometry(path: str | os.PathLike) -> ImageGeometry:
    """Read the header of an image (NIfTI, NRRD, MHA/MHD) without its voxels.

    A 4D file (e.g. MSD Prostate, channel-last T2+ADC) gives 3 spatial axes and ``channels`` = size of the 4th axis.

    Raises:
        UserInputError: the file cannot be read as an image.
    """
    import SimpleITK as sitk

    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise UserInputError(
            f"cannot read the header of {path} ({first[:200]}); check that it is a complete NIfTI/NRRD/MHA file "
            f"(re-download or re-export it)"
        ) from err
    dim = reader.GetDimension()
    size = tuple(int(s) for s in reader.GetSize())
    spacing = tuple(float(s) for s in reader.GetSpacing())
    origin = tuple(float(s) for s in reader.GetOrigin())
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)
    channels = int(reader.GetNumberOfComponents())
    if dim >= 4:
        channels *= int(np.prod(size[3:]))
        dim_sp = 3
    else:
        dim_sp = dim
    return ImageGeometry(
        path=path,
        ndim=dim_sp,
        size=size[:dim_sp],
        spacing=spacing[:dim_sp],
        origin=origin[:dim_sp],
        direction=tuple(direction[:dim_sp, :dim_sp].ravel().tolist()),
        channels=channels,
    )


def _fmt(values: Sequence[float], digits: int = 3) -> str:
    return "(" + ", ".join(f"{v + 0.0:.{digits}g}" if isinstance(v, float) else str(v) for v in values) + ")"


def _geometry_mismatch(image: ImageGeometry, label: ImageGeometry) -> list[str]:
    """The properties in which ``label`` differs from ``image`` (empty when they share one grid)."""
    diffs = []
    if image.size != label.size:
        diffs.append(f"size {_fmt(label.size)} vs image {_fmt(image.size)}")
    elif not np.allclose(image.spacing, label.spacing, rtol=0, atol=SPACING_ATOL_MM):
        diffs.append(f"spacing {_fmt(label.spacing, 5)} vs image {_fmt(image.spacing, 5)} mm")
    if image.size == label.size:
        if not np.allclose(image.origin, label.origin, rtol=0, atol=ORIGIN_ATOL_MM):
            diffs.append(f"origin {_fmt(label.origin, 6)} vs image {_fmt(image.origin, 6)} mm (LPS)")
        if not np.allclose(image.direction, label.direction, rtol=0, atol=DIRECTION_ATOL):
            diffs.append(f"orientation {label.orientation} vs image {image.orientation} (direction cosines differ)")
    return diffs


# ----------------------------------------------------------------------------------------------------------- cases
@dataclass
class _Case:
    case: str
    images: list[Path]
    label: Path | None = None
    group: str | None = None  # fold unit (subject); defaults to the case id
    fixed_split: str | None = None  # "validation" for protocol-defined held-out cases (Synapse)


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


@dataclass
class PrepareResult:
    """Output of a preparer: the datalist written, where, and a summary."""

    datalist: dict[str, Any]
    path: Path
    summary: DatasetSummary


def assign_folds(groups: Iterable[str], num_folds: int = NUM_FOLDS, seed: int = FOLD_SEED) -> dict[str, int]:
    """Deterministic fold per group id: sorted, shuffled with ``random.Random(seed)``, dealt round-robin.

    Args:
        groups: case or subject ids (repeats allowed: cases of one subject share a fold).
        num_folds: number of folds.
        seed: shuffle seed, recorded in the datalist.

    Returns:
        ``{group: fold}`` with folds in ``0..num_folds-1`` whose sizes differ by at most one.
    """
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    return {g: i % num_folds for i, g in enumerate(unique)}


def _is_hidden(name: str) -> bool:
    """macOS resource forks (``._x.nii.gz``, present in real MSD archives) and other hidden files."""
    return name.startswith(".")


def _strip_ext(name: str) -> str | None:
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return None


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not _is_hidden(p.name) and _strip_ext(p.name))


def _problems_error(dataset: str, root: Path, problems: list[str]) -> UserInputError:
    head = f"{dataset} at {root}: {len(problems)} problem(s) found, nothing written:"
    return UserInputError("\n".join([head, *(f"  - {p}" for p in problems)]))


def _resolve_output(root: Path, output: str | os.PathLike | None) -> Path:
    if output is None:
        return root / "datalist.json"
    out = Path(output).expanduser()
    if out.is_dir() or str(output).endswith(("/", os.sep)):
        return out / "datalist.json"
    return out


def _rel(path: Path, base: Path) -> str:
    # abspath, not resolve: keep symlinked dataset folders as the user laid them out
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()


def _check_cases(
    dataset: str,
    root: Path,
    cases: list[_Case],
    test_cases: list[_Case],
    problems: list[str],
    expected_channels: int | None,
    progress: bool,
) -> tuple[dict[str, ImageGeometry], int]:
    """Header checks of every case; appends one message per problem.

    Returns:
        The first-channel geometry per case and the channel count the cases share.
    """
    from tqdm.auto import tqdm

    seen: dict[str, _Case] = {}
    for c in [*cases, *test_cases]:
        if c.case in seen:
            files = ", ".join(str(p) for p in [*seen[c.case].images[:1], *c.images[:1]])
            problems.append(
                f"duplicate case id '{c.case}' ({files}); keep one file per case (rename or remove the extra one)"
            )
        seen.setdefault(c.case, c)

    geometries: dict[str, ImageGeometry] = {}
    channel_counts: dict[str, int] = {}
    for c in tqdm([*cases, *test_cases], desc=f"checking {dataset} headers", unit="case", disable=not progress):
        geoms: list[ImageGeometry] = []
        for image in c.images:
            if not image.is_file():
                continue  # reported by the discovery step
            try:
                geoms.append(read_geometry(image))
            except UserInputError as err:
                problems.append(str(err))
        if len(geoms) != len(c.images) or not geoms:
            continue
        bad_dims = [g for g in geoms if g.ndim != 3]
        if bad_dims:
            problems.append(
                f"{bad_dims[0].path} is a {bad_dims[0].ndim}D image (size {_fmt(bad_dims[0].size)}); 3D volumes are "
                f"needed: convert the slice series to one 3D NIfTI/NRRD volume"
            )
            continue
        geometries[c.case] = geoms[0]
        channel_counts[c.case] = sum(g.channels for g in geoms)
        if c.label is None or not c.label.is_file():
            continue
        try:
            lab = read_geometry(c.label)
        except UserInputError as err:
            problems.append(str(err))
            continue
        if lab.channels != 1 or lab.ndim != 3:
            problems.append(
                f"label {c.label} has {lab.ndim} spatial axes and {lab.channels} channels; a label must be one 3D "
                f"volume of integer class values (not one-hot, not 4D)"
            )
            continue
        diffs = _geometry_mismatch(geoms[0], lab)
        if diffs:
            problems.append(
                f"label {c.label} does not match its image {geoms[0].path}: {'; '.join(diffs)}; resample the label "
                f"onto the image grid (nearest neighbour, image as reference) or pair the right files"
            )
    if channel_counts:
        if expected_channels is None:
            expected_channels = Counter(channel_counts.values()).most_common(1)[0][0]
        for case, n in channel_counts.items():
            if n != expected_channels:
                problems.append(
                    f"case '{case}' ({seen[case].images[0]}) has {n} channel(s) but {expected_channels} are expected "
                    f"(as in the other cases); every case needs the same channels in the same order"
                )
    return geometries, expected_channels or 1


def _scan_label_values(labels: list[Path], progress: bool) -> dict[Path, list[int]]:
    """Distinct values of each label file (reads the voxels)."""
    import SimpleITK as sitk
    from tqdm.auto import tqdm

    out = {}
    for path in tqdm(labels, desc="reading label values", unit="label", disable=not progress):
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise UserInputError(f"cannot read label {path} ({str(err).strip()[-200:]}); re-export it") from err
        out[path] = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(image))]
        del image
    return out


def _check_label_values(labels: list[Path], allowed: Iterable[int], progress: bool, problems: list[str]) -> None:
    allowed = set(allowed)
    for path, values in _scan_label_values(labels, progress).items():
        extra = sorted(set(values) - allowed)
        if extra:
            problems.append(
                f"label {path} contains values {extra} that are not in the label table {sorted(allowed)}; fix the "
                f"label file or give the full label table (--labels)"
            )


def _finish(
    *,
    dataset: str,
    root: Path,
    out_path: Path,
    overwrite: bool,
    cases: list[_Case],
    test_cases: list[_Case],
    problems: list[str],
    labels: dict[str, str],
    channels: list[str],
    header: dict[str, Any],
    num_folds: int,
    seed: int,
    progress: bool,
    check_label_values: Iterable[int] | None,
    validation_from_fold: int | None = None,
    notes: Sequence[str] = (),
) -> PrepareResult:
    """Shared tail of every preparer: checks, folds, relative paths, atomic write, summary."""
    if not problems:
        check_writable(out_path, overwrite)  # fail before the (slower) header checks
    geometries, num_channels = _check_cases(dataset, root, cases, test_cases, problems, len(channels) or None, progress)
    if not channels:
        channels = ["image"] if num_channels == 1 else [f"channel{i}" for i in range(num_channels)]
    if check_label_values is not None and not problems:
        _check_label_values([c.label for c in cases if c.label], check_label_values, progress, problems)
    if problems:
        raise _problems_error(dataset, root, problems)

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

    def entry(c: _Case, with_label: bool = True) -> dict[str, Any]:
        images = [_rel(p, base) for p in c.images]
        item: dict[str, Any] = {"image": images[0] if len(images) == 1 else images}
        if with_label and c.label is not None:
            item["label"] = _rel(c.label, base)
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

    geoms = [geometries[c.case] for c in cases if c.case in geometries]
    spacing = np.array([g.spacing for g in geoms]) if geoms else np.zeros((1, 3))
    orientations = dict(sorted(Counter(g.orientation for g in geoms).items(), key=lambda kv: -kv[1]))
    fold_sizes = [sum(1 for t in training if t["fold"] == f) for f in range(num_folds)]

    datalist: dict[str, Any] = {
        "name": header.pop("name"),
        "description": header.pop("description"),
        "labels": labels,
        "channels": channels,
        "modality": {str(i): ch for i, ch in enumerate(channels)},
        "tensorImageSize": "4D" if len(channels) > 1 else "3D",
        "num_classes": max(int(k) for k in labels) + 1,
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
    )
    for line in format_summary(summary, out_path).splitlines():
        logger.info(line)
    return PrepareResult(datalist=datalist, path=out_path, summary=summary)


def format_summary(summary: DatasetSummary, path: Path | None = None) -> str:
    """Human-readable report of what was found (cases, classes, spacing, orientation, folds, output)."""
    sp = " x ".join(f"{a:.3g}" if f"{a:.3g}" == f"{b:.3g}" else f"{a:.3g}-{b:.3g}"
                    for a, b in zip(summary.spacing_min, summary.spacing_max))
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
        *(f"  note: {n}" for n in summary.notes),
    ]
    if path is not None:
        lines.append(f"datalist written to {path}")
    return "\n".join(lines)


def _labels_from_json(value: Any, source: Path) -> dict[str, str]:
    """Label table from MSD (``{"0": "background"}``) or nnU-Net v2 (``{"background": 0}``) style dicts."""
    if not isinstance(value, dict) or not value:
        raise UserInputError(f"{source}: 'labels' must be a non-empty dict such as {{\"0\": \"background\", ...}}")
    out: dict[int, str] = {}
    for k, v in value.items():
        if str(k).lstrip("-").isdigit():
            out[int(k)] = str(v)
        elif isinstance(v, int):
            out[v] = str(k)
        else:  # nnU-Net region labels ([1, 2]) are not supported
            raise UserInputError(
                f"{source}: label entry {k!r}: {v!r} is not a class value; use integer class values "
                f"(region-based labels are not supported)"
            )
    out.setdefault(0, "background")
    return {str(k): out[k] for k in sorted(out)}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path} is not valid JSON ({err}); fix or re-extract the {what}") from err
    if not isinstance(data, dict):
        raise UserInputError(f"{path} is not a JSON object; fix or re-extract the {what}")
    return data


# ----------------------------------------------------------------------------------------------------------- MSD
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
    progress: bool = True,
) -> PrepareResult:
    """Datalist for MSD Task05 Prostate (4D T2+ADC images, labels 0 background, 1 PZ, 2 TZ).

    The cases are the ``training`` list of the archive's ``dataset.json``; its ``test`` list (no labels) becomes
    ``test``. The fixed ``validation`` section is, by convention, the fold-0 cases (MSD defines no held-out set with
    labels); :func:`~ultralight3d.data.datalist.load_datalist` never trains on them when it uses that section.

    Args:
        root: the extracted ``Task05_Prostate`` folder (or its parent).
        output: datalist path or folder; default ``<root>/datalist.json``.
        overwrite: replace an existing datalist.
        num_folds: cross-validation folds.
        seed: fold shuffle seed.
        check_labels: also read every label and check its values are 0/1/2.
        progress: show progress bars.

    Returns:
        The datalist, where it was written, and a summary.
    """
    root = _find_msd_root(Path(root).expanduser())
    meta = _read_json(root / "dataset.json", "Task05_Prostate archive")
    labels = _labels_from_json(meta.get("labels", MSD_PROSTATE_LABELS), root / "dataset.json")
    modality = meta.get("modality") or {"0": "T2", "1": "ADC"}
    channels = [str(modality[k]) for k in sorted(modality, key=int)]
    problems: list[str] = []
    cases: list[_Case] = []
    for i, item in enumerate(meta.get("training") or []):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            problems.append(f"{root / 'dataset.json'}: training entry {i} needs 'image' and 'label'; re-extract it")
            continue
        image, label = root / item["image"], root / item["label"]
        case = _strip_ext(image.name) or image.name
        for path, kind in ((image, "image"), (label, "label")):
            if not path.is_file():
                problems.append(
                    f"{kind} {path} listed in dataset.json is missing; re-extract Task05_Prostate.tar completely"
                )
        cases.append(_Case(case=case, images=[image], label=label))
    if not cases and not problems:
        problems.append(f"{root / 'dataset.json'} lists no training cases; re-extract Task05_Prostate.tar")
    test_cases = []
    for item in meta.get("test") or []:
        path = root / (item["image"] if isinstance(item, dict) else item)
        if path.is_file():
            test_cases.append(_Case(case=_strip_ext(path.name) or path.name, images=[path]))
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
    return _finish(
        dataset="MSD Task05 Prostate",
        root=root,
        out_path=_resolve_output(root, output),
        overwrite=overwrite,
        cases=cases,
        test_cases=test_cases,
        problems=problems,
        labels=labels,
        channels=channels,
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        check_label_values=[int(k) for k in labels] if check_labels else None,
        validation_from_fold=0,
        notes=["validation = the fold-0 cases (convention; load_datalist(fold=None) does not train on them)"],
    )


# ----------------------------------------------------------------------------------------------------------- FeTA
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
    progress: bool = True,
) -> PrepareResult:
    """Datalist for FeTA 2021 (BIDS-like ``sub-XXX/anat/<prefix>_T2w.nii.gz`` + ``<prefix>_dseg.nii.gz``, 8 classes).

    Both reconstructions (``rec-mial``, ``rec-irtk``) are accepted; folds are assigned per subject. An optional
    ``participants.tsv`` is copied into the datalist's ``participants`` table (not required).

    Args:
        root: the FeTA folder (or its parent).
        output, overwrite, num_folds, seed, check_labels, progress: as in :func:`prepare_msd_prostate`.
    """
    root = _find_feta_root(Path(root).expanduser())
    labels = dict(FETA_LABELS)
    problems: list[str] = []
    cases: list[_Case] = []
    images = sorted(p for p in root.glob("sub-*/anat/*_T2w.nii*") if not _is_hidden(p.name))
    for image in images:
        ext = ".nii.gz" if image.name.endswith(".nii.gz") else ".nii"
        prefix = image.name[: -len("_T2w" + ext)]
        label = image.with_name(f"{prefix}_dseg{ext}")
        if not label.is_file():
            problems.append(
                f"image {image} has no label {label.name} beside it; add the matching _dseg file or remove the image"
            )
        cases.append(_Case(case=prefix, images=[image], label=label, group=image.parent.parent.name))
    known = {c.label for c in cases}
    for label in sorted(p for p in root.glob("sub-*/anat/*_dseg.nii*") if not _is_hidden(p.name)):
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
    return _finish(
        dataset="FeTA 2021",
        root=root,
        out_path=_resolve_output(root, output),
        overwrite=overwrite,
        cases=cases,
        test_cases=[],
        problems=problems,
        labels=labels,
        channels=["T2"],
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        check_label_values=[int(k) for k in labels] if check_labels else None,
    )


# ----------------------------------------------------------------------------------------------------------- Synapse
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
    progress: bool = True,
) -> PrepareResult:
    """Datalist for Synapse multi-organ CT (BTCV ``RawData/Training/{img,label}``) with the TransUNet split.

    The 12 TransUNet test cases go to ``validation`` (the fixed held-out set the papers report on), the other 18 to
    ``training`` with folds; ``RawData/Testing/img`` (unlabelled) goes to ``test``.

    Args:
        root: folder holding ``RawData`` (or ``RawData`` itself, or ``RawData/Training``).
        output: datalist path or folder; default ``<root>/datalist.json``.
        overwrite, num_folds, seed, check_labels, progress: as in :func:`prepare_msd_prostate`.
        label_protocol: ``"8"`` (default: the 8 organs the papers report and our Synapse bundles train, in the
            order of ``transforms/synapse.json``; the datalist carries ``label_map`` ``{original value: new value}``
            for the training transform, the 5 other organs -> 0) or ``"13"`` (all BTCV organs, original values).
    """
    label_protocol = str(label_protocol)
    if label_protocol not in ("13", "8"):
        raise UserInputError(f"label protocol must be '13' or '8', got {label_protocol!r}")
    root = Path(root).expanduser()
    train_dir = _find_synapse_root(root)
    problems: list[str] = []
    found: dict[str, _Case] = {}
    pattern = re.compile(r"^img(\d+)$")
    for image in _image_files(train_dir / "img"):
        m = pattern.match(_strip_ext(image.name) or "")
        if not m:
            continue
        num = m.group(1)
        label = train_dir / "label" / image.name.replace("img", "label", 1)
        if not label.is_file():
            problems.append(f"image {image} has no label {label}; re-extract RawData.zip completely")
        split = "validation" if num in SYNAPSE_TEST_CASES else None
        case = _Case(case=f"case{num}", images=[image], label=label, fixed_split=split)
        if case.case in found:
            problems.append(f"duplicate case {case.case}: {found[case.case].images[0]} and {image}; keep one")
            continue
        found[case.case] = case
    label_re = re.compile(r"^label(\d+)$")
    for label in _image_files(train_dir / "label"):
        m = label_re.match(_strip_ext(label.name) or "")
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
    test_dir = train_dir.parent / "Testing" / "img"
    for image in _image_files(test_dir):
        m = pattern.match(_strip_ext(image.name) or "")
        if m:
            test_cases.append(_Case(case=f"test{m.group(1)}", images=[image]))
    labels = dict(SYNAPSE_LABELS_13 if label_protocol == "13" else SYNAPSE_LABELS_8)
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
    if label_protocol == "8":
        header["label_map"] = dict(SYNAPSE_8_LABEL_MAP)
        header["original_labels"] = dict(SYNAPSE_LABELS_13)
    return _finish(
        dataset=f"Synapse ({label_protocol}-organ protocol)",
        root=train_dir,
        out_path=_resolve_output(root, output),
        overwrite=overwrite,
        cases=list(found.values()),
        test_cases=test_cases,
        problems=problems,
        labels=labels,
        channels=["CT"],
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        check_label_values=[int(k) for k in SYNAPSE_LABELS_13] if check_labels else None,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------------------- folder
def _group_channel_files(files: list[Path], nnunet: bool) -> tuple[dict[str, list[Path]], list[str]]:
    """``{case: files}`` for MSD naming (``<case>.ext``) or nnU-Net naming (``<case>_0000.ext``, ``_0001``...)."""
    problems: list[str] = []
    by_case: dict[str, dict[int, Path]] = {}
    for f in files:
        stem = _strip_ext(f.name) or f.name
        m = _NNUNET_CHANNEL.match(stem) if nnunet else None
        case, channel = (m.group("case"), int(m.group("channel"))) if m else (stem, 0)
        slots = by_case.setdefault(case, {})
        if channel in slots:
            problems.append(
                f"duplicate case '{case}': {slots[channel]} and {f} are the same case/channel; keep one of them"
            )
            continue
        slots[channel] = f
    out = {}
    for case, slots in by_case.items():
        idx = sorted(slots)
        if idx != list(range(len(idx))):
            problems.append(
                f"case '{case}' has channel files {['_%04d' % i for i in idx]} in {slots[idx[0]].parent}; channels "
                f"must be numbered _0000, _0001, ... without gaps"
            )
        out[case] = [slots[i] for i in idx]
    return out, problems


def prepare_folder(
    root: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    labels: dict[int | str, str] | None = None,
    channels: Sequence[str] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    num_folds: int = NUM_FOLDS,
    seed: int = FOLD_SEED,
    check_labels: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Datalist for the user's own data in MSD / nnU-Net layout.

    Layout: ``imagesTr/<case>.nii.gz`` (MSD; a 4D file holds several channels) or ``imagesTr/<case>_0000.nii.gz``,
    ``<case>_0001.nii.gz``... (nnU-Net, one file per channel), ``labelsTr/<case>.nii.gz``, optional ``imagesTs/`` and
    ``dataset.json`` (``labels`` in MSD ``{"1": "liver"}`` or nnU-Net v2 ``{"liver": 1}`` style, ``modality`` or
    ``channel_names``, ``name``). NIfTI, NRRD and MHA/MHD files are accepted.

    Args:
        root: the dataset folder holding ``imagesTr`` and ``labelsTr``.
        output, overwrite, num_folds, seed, check_labels, progress: as in :func:`prepare_msd_prostate`.
        labels: label table ``{value: name}``; default from ``dataset.json``, else read from the label files.
        channels: channel names; default from ``dataset.json``, else ``["image"]`` / ``["channel0", ...]``.
        name: dataset name; default from ``dataset.json``, else the folder name.
    """
    root = Path(root).expanduser()
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise UserInputError(
            f"{root} needs an imagesTr/ folder (images: <case>.nii.gz or <case>_0000.nii.gz per channel) and a "
            f"labelsTr/ folder (<case>.nii.gz); arrange your data like that or point --root at such a folder"
        )
    meta = _read_json(root / "dataset.json", "dataset.json") if (root / "dataset.json").is_file() else {}
    problems: list[str] = []
    image_files, label_files = _image_files(images_dir), _image_files(labels_dir)
    label_by_case: dict[str, Path] = {}
    for f in label_files:
        stem = _strip_ext(f.name) or f.name
        if stem in label_by_case:
            problems.append(f"duplicate label for case '{stem}': {label_by_case[stem]} and {f}; keep one of them")
            continue
        label_by_case[stem] = f
    stems = [_strip_ext(f.name) or f.name for f in image_files]
    nnunet = bool(stems) and all(s not in label_by_case and _NNUNET_CHANNEL.match(s) for s in stems)
    grouped, group_problems = _group_channel_files(image_files, nnunet)
    problems += group_problems
    if not grouped:
        raise UserInputError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}; put one file per case (or per case and "
            f"channel, _0000, _0001...) there"
        )
    cases = []
    for case, files in sorted(grouped.items()):
        label = label_by_case.get(case)
        if label is None:
            problems.append(
                f"image {files[0]} has no label {labels_dir / (case + '.nii.gz')} (or .nrrd/.mha); add the label or "
                f"move the image to imagesTs/"
            )
        cases.append(_Case(case=case, images=files, label=label))
    for case, label in sorted(label_by_case.items()):
        if case not in grouped:
            problems.append(f"label {label} has no image for case '{case}' in {images_dir}; add the image or remove it")
    test_cases = []
    if (root / "imagesTs").is_dir():
        test_files = _image_files(root / "imagesTs")
        test_stems = [_strip_ext(f.name) or f.name for f in test_files]
        test_nnunet = nnunet or (bool(test_stems) and all(_NNUNET_CHANNEL.match(s) for s in test_stems))
        test_grouped, test_problems = _group_channel_files(test_files, test_nnunet)
        problems += test_problems
        test_cases = [_Case(case=c, images=f) for c, f in sorted(test_grouped.items())]

    if labels is not None:
        label_table = _labels_from_json({str(k): v for k, v in labels.items()}, Path("--labels"))
    elif "labels" in meta:
        label_table = _labels_from_json(meta["labels"], root / "dataset.json")
    else:
        label_table = {}
    notes = []
    if not label_table and not problems:
        values = sorted(set().union(*_scan_label_values([c.label for c in cases if c.label], progress).values()))
        label_table = {str(v): ("background" if v == 0 else f"class {v}") for v in sorted({0, *values})}
        notes.append(
            f"no label table given: found values {values} in the labels (name them with --labels or a dataset.json)"
        )
    if channels is None:
        names = meta.get("channel_names") or meta.get("modality")
        channels = [str(names[k]) for k in sorted(names, key=int)] if isinstance(names, dict) else []
    header = {
        "name": name or str(meta.get("name") or root.resolve().name),
        "description": str(meta.get("description") or f"user dataset prepared from {root.resolve()}"),
        "source": "imagesTr/labelsTr folder (nnU-Net naming)" if nnunet else "imagesTr/labelsTr folder (MSD naming)",
        "validation_protocol": f"{num_folds}-fold cross-validation",
    }
    return _finish(
        dataset=f"folder {root.name}",
        root=root,
        out_path=_resolve_output(root, output),
        overwrite=overwrite,
        cases=cases,
        test_cases=test_cases,
        problems=problems,
        labels=label_table or {"0": "background"},
        channels=list(channels),
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        check_label_values=[int(k) for k in label_table] if check_labels and label_table else None,
        notes=notes,
    )
