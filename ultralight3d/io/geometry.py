"""Voxel grids: header geometry, RAS/LPS conventions and the one "same grid" comparison of the package.

Conventions: an affine maps voxel indices ``(i, j, k, 1)`` to RAS millimetres (nibabel, MONAI ``MetaTensor``);
:class:`ImageGeometry` holds the ITK view of the same grid (LPS origin, spacing, direction cosines), as read from a
file header (:func:`read_geometry`), a SimpleITK image (:meth:`ImageGeometry.from_sitk`) or an affine
(:meth:`ImageGeometry.from_affine`).

Two grids are the *same grid* (:func:`same_grid`, :func:`grid_mismatch`) when they have the same size and no voxel
centre moves by more than :data:`GRID_TOLERANCE` times the smallest voxel size between them (the corners are the
worst case, the map being affine). That one rule replaces the separate spacing / origin / direction tolerances: a
spacing difference counts by how far it shifts the far corner, a rotation by how far it moves the corners.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = [
    "GRID_TOLERANCE",
    "LPS_TO_RAS",
    "ImageGeometry",
    "affine_to_lps",
    "check_orthonormal",
    "format_values",
    "grid_mismatch",
    "max_voxel_displacement",
    "read_geometry",
    "same_grid",
    "sitk_to_ras",
]

#: Two grids of equal size are the same when no voxel centre moves by more than this fraction of the smallest voxel
#: size between them (0.01: a hundredth of a voxel; real image/label pairs written by one tool differ by < 1e-4).
GRID_TOLERANCE = 0.01

#: ``diag(-1, -1, 1, 1)``: flips x and y between the LPS (ITK, DICOM, NRRD) and RAS (NIfTI, MONAI) conventions.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: the axis labels of the RAS convention, given to MONAI's ``Orientation(d)`` explicitly: its default (the same
#: labels) warns on every construction that it will change to the MetaTensor's space.
RAS_AXIS_LABELS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("I", "S"))


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
    """Raise when the direction cosines (columns of ``affine[:3, :3]`` over their norms) are not orthonormal.

    Raises:
        UserInputError: zero/non-finite voxel size or a sheared direction matrix (names ``source`` and the fix).
    """
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(m)):
        raise UserInputError(
            f"{source} has a degenerate affine (zero or non-finite voxel size); fix its header "
            "(pixdim / spacing) before predicting"
        )
    d = m / norms
    if np.abs(d.T @ d - np.eye(3)).max() > tol:
        raise UserInputError(
            f"{source} has a non-orthonormal (sheared) direction matrix, which ITK, 3D Slicer and "
            "this tool cannot represent; resample it onto an orthonormal grid (e.g. Slicer "
            "'Resample Scalar Volume' or nibabel.processing.resample_from_to) and try again"
        )


@dataclass(frozen=True)
class ImageGeometry:
    """Geometry of one image grid (ITK/LPS convention, spatial axes only).

    Attributes:
        path: the file (or a description of the source; empty when built from an affine without one).
        ndim: spatial dimensions (2 or 3).
        size: voxels per spatial axis.
        spacing: voxel size in mm per spatial axis.
        origin: position of the first voxel (LPS, mm).
        direction: row-major ``ndim x ndim`` direction cosines (LPS); column ``k`` is the direction of axis ``k``.
        channels: number of channels (size of the 4th axis of a 4D file, or pixel components), 1 for plain 3D.
    """

    path: Path
    ndim: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    channels: int = 1

    @classmethod
    def from_sitk(cls, image: Any, path: str | os.PathLike = "") -> ImageGeometry:
        """Geometry of a SimpleITK image or ``ImageFileReader`` after ``ReadImageInformation()`` (3 spatial axes of a
        4D image; pixel components and the 4th axis count as channels)."""
        dim = int(image.GetDimension())
        size = tuple(int(s) for s in image.GetSize())
        direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
        components = getattr(image, "GetNumberOfComponentsPerPixel", None) or image.GetNumberOfComponents
        channels = int(components())
        sp = min(dim, 3)
        if dim > 3:
            channels *= int(np.prod(size[3:]))
        return cls(
            path=Path(path),
            ndim=sp,
            size=size[:sp],
            spacing=tuple(float(s) for s in image.GetSpacing())[:sp],
            origin=tuple(float(s) for s in image.GetOrigin())[:sp],
            direction=tuple(direction[:sp, :sp].ravel().tolist()),
            channels=channels,
        )

    @classmethod
    def from_affine(
        cls, affine: np.ndarray, shape: Sequence[int], path: str | os.PathLike = "", channels: int = 1
    ) -> ImageGeometry:
        """Geometry of a 3D grid given by a voxel-to-RAS ``affine`` and its spatial ``shape``."""
        lps = affine_to_lps(affine)
        m = lps[:3, :3]
        spacing = np.linalg.norm(m, axis=0)
        direction = m / np.where(spacing > 0, spacing, 1.0)[None, :]
        return cls(
            path=Path(path),
            ndim=3,
            size=tuple(int(s) for s in shape[:3]),
            spacing=tuple(float(s) for s in spacing),
            origin=tuple(float(v) for v in lps[:3, 3]),
            direction=tuple(direction.ravel().tolist()),
            channels=int(channels),
        )

    @property
    def lps_matrix(self) -> np.ndarray:
        """``ndim x ndim`` voxel-step matrix in LPS mm: ``direction @ diag(spacing)``."""
        d = np.asarray(self.direction, dtype=float).reshape(self.ndim, self.ndim)
        return d * np.asarray(self.spacing, dtype=float)[None, :]

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS affine (3D grids)."""
        if self.ndim != 3:
            raise ValueError(f"{self.path}: a {self.ndim}D grid has no 4x4 affine")
        lps = np.eye(4)
        lps[:3, :3] = self.lps_matrix
        lps[:3, 3] = self.origin
        return LPS_TO_RAS @ lps

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
    return ImageGeometry.from_sitk(reader, path)


def format_values(values: Sequence[float], digits: int = 3) -> str:
    """``(1, 0.5, 2)``-style tuple text for messages (``-0`` printed as ``0``)."""
    return "(" + ", ".join(f"{v + 0.0:.{digits}g}" if isinstance(v, float) else str(v) for v in values) + ")"


def _corners(size: Sequence[int]) -> np.ndarray:
    return np.array(list(itertools.product(*[(0, max(int(n) - 1, 0)) for n in size])), dtype=float)


def max_voxel_displacement(a: ImageGeometry, b: ImageGeometry) -> float:
    """Largest distance (mm) between the positions of one voxel index in ``a`` and in ``b`` (grids of one size)."""
    idx = _corners(a.size)
    pa = np.asarray(a.origin, dtype=float) + idx @ a.lps_matrix.T
    pb = np.asarray(b.origin, dtype=float) + idx @ b.lps_matrix.T
    return float(np.linalg.norm(pa - pb, axis=1).max())


def grid_mismatch(
    reference: ImageGeometry, other: ImageGeometry, reference_name: str = "image", tolerance: float = GRID_TOLERANCE
) -> list[str]:
    """How ``other`` differs from the ``reference`` grid; empty when they are the same grid (module docstring).

    Args:
        reference: the grid that is right (e.g. the image).
        other: the grid checked against it (e.g. its label).
        reference_name: what the reference is called in the messages (``"size (8, 8, 9) vs image (8, 8, 8)"``).
        tolerance: fraction of the smallest voxel size a voxel may move (default :data:`GRID_TOLERANCE`).

    Returns:
        One short phrase per differing property (size; else spacing, origin, orientation), e.g.
        ``["origin (-5, 0, 0) vs image (0, 0, 0) mm (LPS)"]``.
    """
    ref, oth, name = reference, other, reference_name
    if ref.size != oth.size:
        return [f"size {format_values(oth.size)} vs {name} {format_values(ref.size)}"]
    threshold = tolerance * float(min(*ref.spacing, *oth.spacing))
    displacement = max_voxel_displacement(ref, oth)
    if displacement <= threshold:
        return []
    diffs = []
    extent = np.asarray(ref.size, dtype=float) - 1
    if np.any(np.abs(np.subtract(ref.spacing, oth.spacing)) * extent > threshold):
        diffs.append(f"spacing {format_values(oth.spacing, 5)} vs {name} {format_values(ref.spacing, 5)} mm")
    if float(np.linalg.norm(np.subtract(ref.origin, oth.origin))) > threshold:
        diffs.append(f"origin {format_values(oth.origin, 6)} vs {name} {format_values(ref.origin, 6)} mm (LPS)")
    d_ref = np.asarray(ref.direction, dtype=float).reshape(ref.ndim, ref.ndim)
    d_oth = np.asarray(oth.direction, dtype=float).reshape(oth.ndim, oth.ndim)
    turn = _corners(ref.size) @ ((d_ref - d_oth) * np.asarray(ref.spacing, dtype=float)[None, :]).T
    if float(np.linalg.norm(turn, axis=1).max()) > threshold:
        diffs.append(f"orientation {oth.orientation} vs {name} {ref.orientation} (direction cosines differ)")
    if not diffs:  # each part within the tolerance, together not
        diffs.append(f"voxel positions differ by up to {displacement:.3g} mm")
    return diffs


def same_grid(a: ImageGeometry, b: ImageGeometry, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when ``a`` and ``b`` are the same grid (equal size, no voxel moves more than ``tolerance`` voxels)."""
    return not grid_mismatch(a, b, tolerance=tolerance)
