"""File-name facts shared by every reader, preparer and finder: image suffixes, case ids, nnU-Net channel names.

This module is the one home of these facts (``ultralight3d.io.image``, ``ultralight3d.io.cases``, the dataset
preparers in ``ultralight3d.data`` and ``ultralight3d.width_selection`` all use it); it imports nothing heavy.

Example::

    >>> strip_image_suffix("case_01_0001.nii.gz")
    'case_01_0001'
    >>> split_channel("case_01_0001")
    ('case_01', 1)
    >>> split_channel("case_01")
    ('case_01', None)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "NNUNET_CHANNEL_RE",
    "SEG_NRRD_SUFFIX",
    "channel_file_name",
    "is_hidden",
    "is_image_file",
    "list_image_files",
    "split_channel",
    "strip_image_suffix",
]

#: Suffixes of the 3D image files read by :func:`ultralight3d.io.read_image` (NIfTI, NRRD, MetaImage), matched
#: case-insensitively; ``.nii.gz`` comes before ``.nii`` so the longest suffix is stripped.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

#: 3D Slicer segmentation files (written by ``ultralight3d predict``): NRRD, but not input images.
SEG_NRRD_SUFFIX = ".seg.nrrd"

#: nnU-Net channel naming: ``<case>_<4-digit channel>`` (``case_0000``, ``case_0001`` ...), applied to a name without
#: its image suffix. Groups: ``case`` and ``channel``.
NNUNET_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def is_hidden(name: str | os.PathLike) -> bool:
    """True for hidden files (``.x``), e.g. the macOS resource forks ``._case.nii.gz`` shipped in real archives."""
    return Path(name).name.startswith(".")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the name ends with one of :data:`IMAGE_SUFFIXES` (case-insensitive) and is not a ``.seg.nrrd``."""
    name = Path(path).name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.endswith(SEG_NRRD_SUFFIX)


def strip_image_suffix(path: str | os.PathLike) -> str:
    """The file name without its image suffix: ``/a/b/case_01.nii.gz`` -> ``case_01``.

    A name without an image suffix loses its last suffix only (``notes.txt`` -> ``notes``).
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def split_channel(stem: str) -> tuple[str, int | None]:
    """``"case_0001"`` -> ``("case", 1)``; a name without an nnU-Net channel suffix -> ``(name, None)``.

    Args:
        stem: a file name without its image suffix (see :func:`strip_image_suffix`).
    """
    m = NNUNET_CHANNEL_RE.match(stem)
    return (m.group("case"), int(m.group("channel"))) if m else (stem, None)


def channel_file_name(case: str, channel: int) -> str:
    """nnU-Net channel file stem: ``("case", 1)`` -> ``"case_0001"``."""
    return f"{case}_{channel:04d}"


def list_image_files(folder: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Sorted image files in ``folder`` matching the glob ``pattern`` (default: directly inside it).

    Hidden files (macOS ``._*`` resource forks) and ``.seg.nrrd`` segmentations are skipped; a missing folder gives
    an empty list.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not is_hidden(p.name) and is_image_file(p))
