"""Input side of inference: image readers, DICOM series discovery/validation, case discovery and input checks."""

from __future__ import annotations

from .cases import CaseSpec, discover_cases, load_case, parse_channel_args
from .dicom import DicomSeries, read_dicom_folder, read_series, scan_dicom, validate_series
from .image import (
    IMAGE_SUFFIXES,
    ImageData,
    affine_to_lps,
    check_image,
    check_orthonormal,
    is_image_file,
    read_image,
    sitk_to_ras,
    strip_image_suffix,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "CaseSpec",
    "DicomSeries",
    "ImageData",
    "affine_to_lps",
    "check_image",
    "check_orthonormal",
    "discover_cases",
    "is_image_file",
    "load_case",
    "parse_channel_args",
    "read_dicom_folder",
    "read_image",
    "read_series",
    "scan_dicom",
    "sitk_to_ras",
    "strip_image_suffix",
    "validate_series",
]
