"""Input side: file-name facts, voxel grids, image readers, DICOM series discovery/validation, cases and input checks.

Layering (each module imports only those above it)::

    files     IMAGE_SUFFIXES, is_image_file, strip_image_suffix, NNUNET_CHANNEL_RE / split_channel
    geometry  ImageGeometry, read_geometry, GRID_TOLERANCE, grid_mismatch / same_grid, RAS<->LPS
    volume    ImageData, sitk_image_to_data, nonfinite_count
    dicom     scan_dicom, validate_series, read_series, read_dicom_folder
    image     read_image, check_image
    cases     discover_cases, load_case, parse_channel_args
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports

if TYPE_CHECKING:  # the names of _EXPORTS, for type checkers and editors
    from .cases import CaseSpec, discover_cases, load_case, parse_channel_args
    from .dicom import DicomSeries, read_dicom_folder, read_series, scan_dicom, validate_series
    from .files import (
        IMAGE_SUFFIXES,
        NNUNET_CHANNEL_RE,
        SEG_NRRD_SUFFIX,
        channel_file_name,
        is_hidden,
        is_image_file,
        list_image_files,
        split_channel,
        strip_image_suffix,
    )
    from .geometry import (
        GRID_TOLERANCE,
        ImageGeometry,
        affine_to_lps,
        check_orthonormal,
        grid_mismatch,
        read_geometry,
        same_grid,
        sitk_to_ras,
    )
    from .image import check_image, read_image
    from .volume import ImageData, nonfinite_count, sitk_image_to_data

_EXPORTS = {
    ".cases": ["CaseSpec", "discover_cases", "load_case", "parse_channel_args"],
    ".dicom": ["DicomSeries", "read_dicom_folder", "read_series", "scan_dicom", "validate_series"],
    ".files": [
        "IMAGE_SUFFIXES",
        "NNUNET_CHANNEL_RE",
        "SEG_NRRD_SUFFIX",
        "channel_file_name",
        "is_hidden",
        "is_image_file",
        "list_image_files",
        "split_channel",
        "strip_image_suffix",
    ],
    ".geometry": [
        "GRID_TOLERANCE",
        "ImageGeometry",
        "affine_to_lps",
        "check_orthonormal",
        "grid_mismatch",
        "read_geometry",
        "same_grid",
        "sitk_to_ras",
    ],
    ".image": ["check_image", "read_image"],
    ".volume": ["ImageData", "nonfinite_count", "sitk_image_to_data"],
}
__all__ = [
    "GRID_TOLERANCE",
    "IMAGE_SUFFIXES",
    "NNUNET_CHANNEL_RE",
    "SEG_NRRD_SUFFIX",
    "CaseSpec",
    "DicomSeries",
    "ImageData",
    "ImageGeometry",
    "affine_to_lps",
    "channel_file_name",
    "check_image",
    "check_orthonormal",
    "discover_cases",
    "grid_mismatch",
    "is_hidden",
    "is_image_file",
    "list_image_files",
    "load_case",
    "nonfinite_count",
    "parse_channel_args",
    "read_dicom_folder",
    "read_geometry",
    "read_image",
    "read_series",
    "same_grid",
    "scan_dicom",
    "sitk_image_to_data",
    "sitk_to_ras",
    "split_channel",
    "strip_image_suffix",
    "validate_series",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
