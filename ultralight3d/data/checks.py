"""Checks of the cases a preparer found; every problem is collected, then reported in one error.

Header checks (always; headers only, cheap): duplicate case ids, unreadable headers, 2D images, labels that are not
one 3D volume, label/image grid mismatch (:func:`ultralight3d.io.grid_mismatch`), inconsistent channel counts.

Voxel checks (they read every voxel, so they are opt-in: ``prepare --check-labels``, ``--check-images``,
``--full-check``): NaN/inf voxels in images; NaN/inf voxels in labels and label values outside the class table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from ..io.geometry import ImageGeometry, format_values, grid_mismatch, read_geometry
from ..io.image import read_image
from ..io.volume import nonfinite_count
from .common import Case

__all__ = [
    "LABEL_TABLE_FIX",
    "CaseCheck",
    "VoxelStats",
    "check_cases",
    "check_image_voxels",
    "check_label_voxels",
    "problems_error",
    "protocol_label_fix",
    "scan_voxels",
]


def problems_error(dataset: str, root: Path, problems: Sequence[str]) -> UserInputError:
    """One error listing every problem, one line each (the CLI prints it as it is)."""
    head = f"{dataset} at {root}: {len(problems)} problem(s) found, nothing written:"
    return UserInputError("\n".join([head, *(f"  - {p}" for p in problems)]))


@dataclass
class CaseCheck:
    """Result of :func:`check_cases`.

    Attributes:
        geometries: the first-channel geometry of each case whose image headers are readable 3D volumes.
        num_channels: the channel count the cases share (the expected one, else the most common).
        readable: files whose header could be read (the voxel checks read only these).
    """

    geometries: dict[str, ImageGeometry]
    num_channels: int
    readable: set[Path] = field(default_factory=set)


def check_cases(
    cases: Sequence[Case],
    test_cases: Sequence[Case],
    problems: list[str],
    expected_channels: int | None,
    progress: bool,
    dataset: str = "dataset",
) -> CaseCheck:
    """Header checks of every case; appends one message per problem to ``problems``."""
    from tqdm.auto import tqdm

    seen: dict[str, Case] = {}
    for c in [*cases, *test_cases]:
        if c.case in seen:
            files = ", ".join(str(p) for p in [*seen[c.case].images[:1], *c.images[:1]])
            problems.append(
                f"duplicate case id '{c.case}' ({files}); keep one file per case (rename or remove the extra one)"
            )
        seen.setdefault(c.case, c)

    geometries: dict[str, ImageGeometry] = {}
    channel_counts: dict[str, int] = {}
    readable: set[Path] = set()
    for c in tqdm([*cases, *test_cases], desc=f"checking {dataset} headers", unit="case", disable=not progress):
        geoms: list[ImageGeometry] = []
        for image in c.images:
            if not image.is_file():
                continue  # reported by the discovery step
            try:
                geoms.append(read_geometry(image))
                readable.add(image)
            except UserInputError as err:
                problems.append(str(err))
        if len(geoms) != len(c.images) or not geoms:
            continue
        bad_dims = [g for g in geoms if g.ndim != 3]
        if bad_dims:
            problems.append(
                f"{bad_dims[0].path} is a {bad_dims[0].ndim}D image (size {format_values(bad_dims[0].size)}); 3D "
                f"volumes are needed: convert the slice series to one 3D NIfTI/NRRD volume"
            )
            continue
        geometries[c.case] = geoms[0]
        channel_counts[c.case] = sum(g.channels for g in geoms)
        if c.label is None or not c.label.is_file():
            continue
        try:
            lab = read_geometry(c.label)
            readable.add(c.label)
        except UserInputError as err:
            problems.append(str(err))
            continue
        if lab.channels != 1 or lab.ndim != 3:
            problems.append(
                f"label {c.label} has {lab.ndim} spatial axes and {lab.channels} channels; a label must be one 3D "
                f"volume of integer class values (not one-hot, not 4D)"
            )
            continue
        diffs = grid_mismatch(geoms[0], lab, reference_name="image")
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
    return CaseCheck(geometries, expected_channels or 1, readable)


@dataclass
class VoxelStats:
    """What :func:`scan_voxels` found in one file: NaN/inf count and (for labels) the distinct finite values."""

    nonfinite: int
    values: list[int | float] | None = None


def _number(v: float) -> int | float:
    f = float(v)
    return int(f) if f.is_integer() else f


def scan_voxels(
    paths: Iterable[Path], progress: bool, problems: list[str], values: bool, desc: str = "reading voxels"
) -> dict[Path, VoxelStats]:
    """Read every voxel of ``paths`` (stored type, no float copy) and count NaN/inf; with ``values`` also list the
    distinct finite values (labels). A file that cannot be read adds a problem and is left out."""
    from tqdm.auto import tqdm

    out: dict[Path, VoxelStats] = {}
    for path in tqdm(list(paths), desc=desc, unit="file", disable=not progress):
        try:
            arr = read_image(path, dtype=None).array
        except UserInputError as err:
            problems.append(str(err))
            continue
        bad = nonfinite_count(arr)
        distinct = None
        if values:
            finite = arr[np.isfinite(arr)] if bad else arr
            distinct = [_number(v) for v in np.unique(finite)]
        out[path] = VoxelStats(bad, distinct)
        del arr
    return out


def check_image_voxels(images: Iterable[Path], progress: bool, problems: list[str]) -> None:
    """Append one problem per image holding NaN/inf voxels."""
    for path, stats in scan_voxels(images, progress, problems, values=False, desc="checking image voxels").items():
        if stats.nonfinite:
            problems.append(
                f"image {path} has {stats.nonfinite} NaN/inf voxel(s); replace them (e.g. with 0 or the background "
                f"value) or remove the case"
            )


#: The fix named when a label holds values outside a user-given table.
LABEL_TABLE_FIX = "fix the label file or give the full label table (--labels)"


def protocol_label_fix(protocol: str) -> str:
    """The fix named when a label of a fixed-protocol dataset holds values outside the protocol's table."""
    return f"fix or re-extract the label file (the table is the {protocol} protocol's, transforms/{protocol}.json)"


def check_label_voxels(
    stats: dict[Path, VoxelStats], allowed: Iterable[int], problems: list[str], fix: str = LABEL_TABLE_FIX
) -> None:
    """Append one problem per label holding NaN/inf voxels or values outside the class table ``allowed``.

    Args:
        stats: from :func:`scan_voxels` with ``values=True``.
        allowed: the class values of the label table.
        problems: collected messages.
        fix: what to do about a value outside the table (default :data:`LABEL_TABLE_FIX`).
    """
    allowed = sorted({int(v) for v in allowed})
    for path, st in stats.items():
        if st.nonfinite:
            problems.append(
                f"label {path} has {st.nonfinite} NaN/inf voxel(s); a label holds integer class values only: fix "
                f"or re-export the label file"
            )
        extra = sorted(set(st.values or []) - set(allowed))
        if extra:
            problems.append(f"label {path} contains values {extra} that are not in the label table {allowed}; {fix}")
