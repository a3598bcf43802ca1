"""Datalist for the user's own data in the MSD / nnU-Net layout (``imagesTr/``, ``labelsTr/``, ``imagesTs/``).

Example::

    from ultralight3d.data import prepare_folder
    result = prepare_folder("/data/MyLivers", labels={1: "liver", 2: "tumour"}, channels=["CT"])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserInputError
from ..io.files import IMAGE_SUFFIXES, channel_file_name, list_image_files, split_channel, strip_image_suffix
from .checks import scan_voxels
from .common import Case, labels_from_json, protocol_tables, read_json, resolve_output
from .datalist import FOLD_SEED, NUM_FOLDS
from .finish import PrepareResult, VoxelChecks, finish

__all__ = ["DEFAULT_PROTOCOL", "prepare_folder"]

#: Protocol recorded for a folder when none is named: the generic bundle's (channels and labels from the data).
DEFAULT_PROTOCOL = "generic"


def _group_channel_files(files: list[Path], nnunet: bool) -> tuple[dict[str, list[Path]], list[str]]:
    """``{case: files}`` for MSD naming (``<case>.ext``) or nnU-Net naming (``<case>_0000.ext``, ``_0001``...)."""
    problems: list[str] = []
    by_case: dict[str, dict[int, Path]] = {}
    for f in files:
        stem = strip_image_suffix(f)
        case, channel = split_channel(stem) if nnunet else (stem, None)
        slots = by_case.setdefault(case, {})
        slot = channel or 0
        if slot in slots:
            problems.append(
                f"duplicate case '{case}': {slots[slot]} and {f} are the same case/channel; keep one of them"
            )
            continue
        slots[slot] = f
    out = {}
    for case, slots in by_case.items():
        idx = sorted(slots)
        if idx != list(range(len(idx))):
            names = [channel_file_name("", i) for i in idx]
            problems.append(
                f"case '{case}' has channel files {names} in {slots[idx[0]].parent}; channels must be numbered "
                f"{channel_file_name('', 0)}, {channel_file_name('', 1)}, ... without gaps"
            )
        out[case] = [slots[i] for i in idx]
    return out, problems


def _is_nnunet(stems: list[str]) -> bool:
    return bool(stems) and all(split_channel(s)[1] is not None for s in stems)


def prepare_folder(
    root: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    labels: dict[int | str, str] | None = None,
    channels: Sequence[str] | None = None,
    name: str | None = None,
    protocol: str | None = None,
    overwrite: bool = False,
    num_folds: int = NUM_FOLDS,
    seed: int = FOLD_SEED,
    check_labels: bool = False,
    check_images: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Datalist for the user's own data in MSD / nnU-Net layout.

    Layout: ``imagesTr/<case>.nii.gz`` (MSD; a 4D file holds several channels) or ``imagesTr/<case>_0000.nii.gz``,
    ``<case>_0001.nii.gz``... (nnU-Net, one file per channel), ``labelsTr/<case>.nii.gz``, optional ``imagesTs/`` and
    ``dataset.json`` (``labels`` in MSD ``{"1": "liver"}`` or nnU-Net v2 ``{"liver": 1}`` style, ``modality`` or
    ``channel_names``, ``name``). NIfTI, NRRD and MHA/MHD files are accepted.

    Args:
        root: the dataset folder holding ``imagesTr`` and ``labelsTr``.
        output, overwrite, num_folds, seed, check_labels, check_images, progress: as in
            :func:`~ultralight3d.data.msd_prostate.prepare_msd_prostate`.
        labels: label table ``{value: name}``; default from ``dataset.json``, else the named ``protocol``'s, else
            read from the label files.
        channels: channel names; default from ``dataset.json``, else the named ``protocol``'s, else ``["image"]`` /
            ``["channel0", ...]``.
        name: dataset name; default from ``dataset.json``, else the folder name.
        protocol: transform protocol the datalist is for (``transforms/<protocol>.json``), recorded as ``protocol``;
            default ``generic`` (whose placeholder labels/channels are not used as defaults).
    """
    root = Path(root).expanduser()
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise UserInputError(
            f"{root} needs an imagesTr/ folder (images: <case>.nii.gz or <case>_0000.nii.gz per channel) and a "
            f"labelsTr/ folder (<case>.nii.gz); arrange your data like that or point --root at such a folder"
        )
    tables = protocol_tables(protocol) if protocol is not None else None
    meta = read_json(root / "dataset.json", "dataset.json") if (root / "dataset.json").is_file() else {}
    problems: list[str] = []
    image_files, label_files = list_image_files(images_dir), list_image_files(labels_dir)
    label_by_case: dict[str, Path] = {}
    for f in label_files:
        stem = strip_image_suffix(f)
        if stem in label_by_case:
            problems.append(f"duplicate label for case '{stem}': {label_by_case[stem]} and {f}; keep one of them")
            continue
        label_by_case[stem] = f
    stems = [strip_image_suffix(f) for f in image_files]
    nnunet = _is_nnunet(stems) and not any(s in label_by_case for s in stems)
    grouped, group_problems = _group_channel_files(image_files, nnunet)
    problems += group_problems
    if not grouped:
        raise UserInputError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}; put one file per case (or per case and "
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
        cases.append(Case(case=case, images=files, label=label))
    for case, label in sorted(label_by_case.items()):
        if case not in grouped:
            problems.append(f"label {label} has no image for case '{case}' in {images_dir}; add the image or remove it")
    test_cases = []
    if (root / "imagesTs").is_dir():
        test_files = list_image_files(root / "imagesTs")
        test_nnunet = nnunet or _is_nnunet([strip_image_suffix(f) for f in test_files])
        test_grouped, test_problems = _group_channel_files(test_files, test_nnunet)
        problems += test_problems
        test_cases = [Case(case=c, images=f) for c, f in sorted(test_grouped.items())]

    if labels is not None:
        label_table = labels_from_json({str(k): v for k, v in labels.items()}, Path("--labels"))
    elif "labels" in meta:
        label_table = labels_from_json(meta["labels"], root / "dataset.json")
    elif tables is not None and protocol != DEFAULT_PROTOCOL:
        label_table = dict(tables.labels)
    else:
        label_table = {}
    notes = []
    label_paths = [c.label for c in cases if c.label]
    label_stats = None
    if not label_table and not problems:
        label_stats = scan_voxels(label_paths, progress, problems, values=True, desc="reading label values")
        values = sorted({int(v) for st in label_stats.values() for v in st.values or [] if float(v).is_integer()})
        label_table = {str(v): ("background" if v == 0 else f"class {v}") for v in sorted({0, *values})}
        notes.append(
            f"no label table given: found values {values} in the labels (name them with --labels or a dataset.json)"
        )
    if channels is None:
        names = meta.get("channel_names") or meta.get("modality")
        if isinstance(names, dict):
            channels = [str(names[k]) for k in sorted(names, key=int)]
        elif tables is not None and protocol != DEFAULT_PROTOCOL:
            channels = list(tables.channels)
        else:
            channels = []
    header = {
        "name": name or str(meta.get("name") or root.resolve().name),
        "description": str(meta.get("description") or f"user dataset prepared from {root.resolve()}"),
        "source": "imagesTr/labelsTr folder (nnU-Net naming)" if nnunet else "imagesTr/labelsTr folder (MSD naming)",
        "validation_protocol": f"{num_folds}-fold cross-validation",
    }
    return finish(
        dataset=f"folder {root.name}",
        root=root,
        out_path=resolve_output(root, output),
        overwrite=overwrite,
        cases=cases,
        test_cases=test_cases,
        problems=problems,
        protocol=protocol or DEFAULT_PROTOCOL,
        labels=label_table or {"0": "background"},
        channels=list(channels),
        header=header,
        num_folds=num_folds,
        seed=seed,
        progress=progress,
        voxel_checks=VoxelChecks(
            labels=check_labels and bool(label_table), images=check_images, label_stats=label_stats
        ),
        notes=notes,
    )
