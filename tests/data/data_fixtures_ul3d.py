"""Helpers writing tiny real NIfTI files for the data-preparation tests (a uniquely named module, not conftest)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["SHAPE", "write_nifti"]

SHAPE = (8, 8, 8)


def write_nifti(
    path: Path,
    shape: Sequence[int] = SHAPE,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    label: bool = False,
    channels: int | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """Write a small NIfTI: float image (or uint8 label with values 0/1/2); ``channels`` makes it 4D channel-last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = origin
    full = (*shape, channels) if channels else tuple(shape)
    data: np.ndarray
    if label:
        data = np.zeros(full, dtype=np.uint8)
        data[1:3, 1:3, 1:3] = 1
        data[4:6, 4:6, 4:6] = 2
    else:
        data = np.arange(int(np.prod(full)), dtype=np.float32).reshape(full)
    img = nib.Nifti1Image(data, affine)
    if channels:
        img.header.set_zooms((*np.sqrt((affine[:3, :3] ** 2).sum(0)), 1.0))
    nib.save(img, path)
    return path
