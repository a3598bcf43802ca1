"""The in-memory image of the package (:class:`ImageData`) and its conversion from SimpleITK.

This module sits below both the file readers (:mod:`ultralight3d.io.image`) and the DICOM series reader
(:mod:`ultralight3d.io.dicom`), so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..errors import UserInputError
from .geometry import ImageGeometry, sitk_to_ras

__all__ = ["ImageData", "nonfinite_count", "sitk_image_to_data"]


@dataclass
class ImageData:
    """One image read from disk.

    Attributes:
        array: voxels, shape ``(C, X, Y, Z)`` (``C`` = 1 for a plain 3D file), float32 unless read with another dtype.
        affine: 4x4 voxel-to-RAS matrix (float64), exactly the file's for NIfTI.
        source: file (or DICOM folder) it came from, for messages.
        meta: reader extras (``"format"``, ``"dicom_files"`` for DICOM series...).
    """

    array: np.ndarray
    affine: np.ndarray
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[1:4])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def geometry(self) -> ImageGeometry:
        """The voxel grid (see :func:`ultralight3d.io.geometry.same_grid`)."""
        return ImageGeometry.from_affine(self.affine, self.spatial_shape, self.source, channels=self.array.shape[0])


def nonfinite_count(array: np.ndarray) -> int:
    """Number of NaN/inf values (0 for integer arrays)."""
    if array.dtype.kind not in "fc":
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def sitk_image_to_data(
    img: Any, source: str, meta: dict[str, Any] | None = None, dtype: DTypeLike | None = np.float32
) -> ImageData:
    """SimpleITK image -> :class:`ImageData` (channel-first ``(C, X, Y, Z)``, RAS affine).

    Args:
        img: the SimpleITK image (2D, 3D, 3D vector or 4D).
        source: file or series description, for messages.
        meta: reader extras stored in ``ImageData.meta``.
        dtype: voxel type of the array (default float32); ``None`` keeps the stored type.
    """
    import SimpleITK as sitk

    dim = img.GetDimension()
    data = sitk.GetArrayFromImage(img)  # (z, y, x[, comp]) for 3D
    ncomp = img.GetNumberOfComponentsPerPixel()
    if dim == 2:
        arr = (data if ncomp == 1 else data[..., 0]).T[None]
        affine = np.eye(4)
    elif dim == 4:
        # (t, z, y, x) -> (t, x, y, z)
        arr = np.transpose(data, (0, 3, 2, 1))
        sub = sitk.Extract(img, list(img.GetSize()[:3]) + [0], [0, 0, 0, 0])
        affine = sitk_to_ras(sub)
    elif dim == 3:
        arr = np.transpose(data, (2, 1, 0))[None] if ncomp == 1 else np.transpose(data, (3, 2, 1, 0))
        affine = sitk_to_ras(img)
    else:
        raise UserInputError(f"{source} has {dim} dimensions; give a 3D volume")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return ImageData(arr, affine, source, dict(meta or {}))
