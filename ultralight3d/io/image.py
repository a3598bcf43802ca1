"""Read 3D medical images (NIfTI, NRRD, MHA/MHD) into channel-first arrays with a RAS affine, and check them.

Geometry convention (the one MONAI's ``MetaTensor`` uses): the array is indexed ``[c, i, j, k]`` and ``affine`` maps
``(i, j, k, 1)`` to RAS millimetres. NIfTI files are read with nibabel so the affine is the file's own (sform when set,
else qform) bit for bit; NRRD/MHA/MHD and DICOM are read with SimpleITK and their LPS geometry is converted to RAS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageData",
    "is_image_file",
    "strip_image_suffix",
    "read_image",
    "sitk_to_ras",
    "affine_to_lps",
    "check_image",
    "check_orthonormal",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_FORMAT_HINT = "give a NIfTI (.nii/.nii.gz), NRRD (.nrrd), MetaImage (.mha/.mhd) file or a folder of DICOM files"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class ImageData:
    """One image read from disk.

    Attributes:
        array: voxels, shape ``(C, X, Y, Z)`` (``C`` = 1 for a plain 3D file), float32.
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


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the name ends with a supported image suffix (case-insensitive)."""
    name = str(path).lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.endswith(".seg.nrrd")


def strip_image_suffix(path: str | os.PathLike) -> str:
    """``/a/b/case_01.nii.gz`` -> ``case_01``."""
    name = Path(path).name
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def sitk_to_ras(image: Any) -> np.ndarray:
    """4x4 voxel-to-RAS affine of a SimpleITK image (ITK geometry is LPS)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = np.asarray(image.GetOrigin(), dtype=np.float64)
    return LPS_TO_RAS @ lps


def affine_to_lps(affine: np.ndarray) -> np.ndarray:
    """Voxel-to-LPS 4x4 matrix (what NRRD, ITK and DICOM use) from a voxel-to-RAS affine."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def check_orthonormal(affine: np.ndarray, source: str, tol: float = 1e-3) -> None:
    """Raise when the direction cosines (columns of ``affine[:3, :3]`` over their norms) are not orthonormal."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(m)):
        raise UserInputError(f"{source} has a degenerate affine (zero or non-finite voxel size); fix its header "
                             "(pixdim / spacing) before predicting")
    d = m / norms
    if np.abs(d.T @ d - np.eye(3)).max() > tol:
        raise UserInputError(f"{source} has a non-orthonormal (sheared) direction matrix, which ITK, 3D Slicer and "
                             "this tool cannot represent; resample it onto an orthonormal grid (e.g. Slicer "
                             "'Resample Scalar Volume' or nibabel.processing.resample_from_to) and try again")


def check_image(image: ImageData, expected_channels: int | None = None, channel_names: list[str] | None = None) -> None:
    """Validate a read image: 3D (or 4D with the bundle's channel count), finite voxels, orthonormal directions.

    Raises:
        UserInputError: naming ``image.source`` and the fix.
    """
    src = image.source
    arr = image.array
    if arr.ndim != 4 or min(arr.shape[1:]) < 2:
        shape = tuple(int(v) for v in arr.shape[1:])  # arrays are channel-first
        raise UserInputError(f"{src} is 2D (shape {shape}); ultralight3d segments 3D volumes: give the whole 3D "
                             "scan (a single slice or a projection cannot be segmented)")
    if expected_channels is not None and arr.shape[0] != expected_channels:
        names = f" ({', '.join(channel_names)})" if channel_names else ""
        if arr.shape[0] > 1 and expected_channels == 1:
            raise UserInputError(f"{src} is 4D with {arr.shape[0]} volumes (shape {tuple(arr.shape[1:])} x "
                                 f"{arr.shape[0]}) but the bundle expects one 3D image; split it (e.g. keep one "
                                 "time point / contrast) and pass that 3D volume")
        raise UserInputError(f"{src} has {arr.shape[0]} channel(s) but the bundle expects {expected_channels}"
                             f"{names}; give one image per channel with --channel NAME=FILE or a 4D file with "
                             f"{expected_channels} volumes")
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise UserInputError(f"{src} has {bad} NaN/inf voxel(s); replace them (e.g. with 0 or the background "
                             "value) before predicting")
    check_orthonormal(image.affine, src)


def _read_nifti(path: Path) -> ImageData:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for a broken file
        raise UserInputError(
            f"{path} is not a readable NIfTI image ({type(err).__name__}: {err}); {_FORMAT_HINT}") from err
    affine = np.asarray(img.affine, dtype=np.float64)
    data = np.asarray(data)
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector images store components on axis 4
        data = data[:, :, :, 0, :]
    if data.ndim == 3:
        arr = data[None]
    elif data.ndim == 4:
        arr = np.moveaxis(data, -1, 0)  # channel-last (MSD) -> channel-first
    elif data.ndim == 2:
        arr = data[None]  # 2D: check_image names it
    else:
        raise UserInputError(f"{path} has {data.ndim} dimensions (shape {data.shape}); give a 3D volume")
    return ImageData(arr.astype(np.float32, copy=False), affine, str(path), {"format": "nifti"})


def _read_sitk(path: Path) -> ImageData:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except Exception as err:
        msg = str(err).strip().splitlines()
        detail = next((m for m in msg if "orthonormal" in m.lower()), msg[-1] if msg else "")
        if "orthonormal" in str(err).lower():
            raise UserInputError(f"{path} has a non-orthonormal direction matrix, which ITK cannot read; resample it "
                                 "onto an orthonormal grid and try again") from err
        raise UserInputError(f"{path} is not a readable image ({detail.strip()}); {_FORMAT_HINT}") from err
    return sitk_image_to_data(img, str(path), {"format": "itk"})


def sitk_image_to_data(img: Any, source: str, meta: dict[str, Any] | None = None) -> ImageData:
    """SimpleITK image -> :class:`ImageData` (channel-first ``(C, X, Y, Z)``, RAS affine)."""
    import SimpleITK as sitk

    dim = img.GetDimension()
    data = sitk.GetArrayFromImage(img)  # (z, y, x[, comp]) for 3D
    ncomp = img.GetNumberOfComponentsPerPixel()
    if dim == 2:
        arr = (data if ncomp == 1 else data[..., 0]).T[None]
        affine = np.eye(4)
        return ImageData(arr.astype(np.float32), affine, source, dict(meta or {}))
    if dim == 4:
        # (t, z, y, x) -> (t, x, y, z)
        arr = np.transpose(data, (0, 3, 2, 1))
        sub = sitk.Extract(img, list(img.GetSize()[:3]) + [0], [0, 0, 0, 0])
        affine = sitk_to_ras(sub)
    elif dim == 3:
        arr = np.transpose(data, (2, 1, 0))[None] if ncomp == 1 else np.transpose(data, (3, 2, 1, 0))
        affine = sitk_to_ras(img)
    else:
        raise UserInputError(f"{source} has {dim} dimensions; give a 3D volume")
    return ImageData(arr.astype(np.float32, copy=False), affine, source, dict(meta or {}))


def read_image(path: str | os.PathLike) -> ImageData:
    """Read one NIfTI / NRRD / MHA / MHD file (no checks beyond readability; see :func:`check_image`).

    Raises:
        UserInputError: missing file, unsupported suffix, or unreadable content.
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path} does not exist; check the path")
    if path.is_dir():
        from .dicom import read_dicom_folder

        return read_dicom_folder(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if is_image_file(path):
        return _read_sitk(path)
    raise UserInputError(f"{path} is not a supported image file; {_FORMAT_HINT}")
