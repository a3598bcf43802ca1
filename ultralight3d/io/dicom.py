"""DICOM series discovery and validation with pydicom, volume reading with SimpleITK.

A folder is scanned recursively; files are grouped by ``SeriesInstanceUID``; each series is checked (one image size
and orientation, one frame per file, no duplicate or missing slice positions) and sorted by ``ImagePositionPatient``
along the slice normal before SimpleITK reads it, so the volume's frame order is the order the DICOM-SEG refers to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from .volume import ImageData, sitk_image_to_data

__all__ = ["DicomSeries", "scan_dicom", "validate_series", "read_series", "read_dicom_folder", "format_series_list"]


@dataclass
class DicomSeries:
    """One DICOM series found on disk.

    Attributes:
        uid: SeriesInstanceUID.
        files: the series' files (sorted along the slice normal once :func:`validate_series` ran).
        description: SeriesDescription (may be empty).
        study_uid: StudyInstanceUID.
        patient_id: PatientID.
        modality: Modality.
        series_number: SeriesNumber (None when absent).
    """

    uid: str
    files: list[Path] = field(default_factory=list)
    description: str = ""
    study_uid: str = ""
    patient_id: str = ""
    modality: str = ""
    series_number: int | None = None
    validated: bool = False

    @property
    def folder(self) -> Path:
        """Common parent folder of the files."""
        return Path(os.path.commonpath([str(f.parent) for f in self.files])) if self.files else Path(".")

    def label(self) -> str:
        """One line: UID, description, slices, folder (for ambiguity listings)."""
        return (
            f"{self.uid}  '{self.description}' (series {self.series_number}, {self.modality}, "
            f"{len(self.files)} files) in {self.folder}"
        )


def format_series_list(series: list[DicomSeries]) -> str:
    """Numbered multi-line listing of series."""
    return "\n".join(f"  - {s.label()}" for s in series)


def scan_dicom(folder: str | os.PathLike) -> list[DicomSeries]:
    """Find every DICOM image series under ``folder`` (recursive), grouped by SeriesInstanceUID.

    Non-DICOM files (and DICOM files without pixel data such as DICOMDIR or SR) are ignored.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    found: dict[str, DicomSeries] = {}
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            path = Path(root) / name
            try:
                ds = pydicom.dcmread(
                    path,
                    stop_before_pixels=True,
                    specific_tags=[
                        "SeriesInstanceUID",
                        "StudyInstanceUID",
                        "SeriesDescription",
                        "PatientID",
                        "Modality",
                        "SeriesNumber",
                        "Rows",
                        "SOPClassUID",
                    ],
                )
            except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError):
                continue
            uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
            if not uid or "Rows" not in ds:
                continue
            if uid not in found:
                num = getattr(ds, "SeriesNumber", None)
                found[uid] = DicomSeries(
                    uid=uid,
                    description=str(getattr(ds, "SeriesDescription", "") or ""),
                    study_uid=str(getattr(ds, "StudyInstanceUID", "") or ""),
                    patient_id=str(getattr(ds, "PatientID", "") or ""),
                    modality=str(getattr(ds, "Modality", "") or ""),
                    series_number=int(num) if num not in (None, "") else None,
                )
            found[uid].files.append(path)
    return sorted(found.values(), key=lambda s: (s.patient_id, s.study_uid, s.series_number or 0, s.uid))


def validate_series(series: DicomSeries, gap_tolerance: float = 0.25) -> DicomSeries:
    """Check one series and sort its files along the slice normal (in place).

    Raises:
        UserInputError: multi-frame files, mixed sizes/orientations (mixed series), duplicate positions, or a missing
            slice (a gap larger than ``1 + gap_tolerance`` times the typical slice spacing).
    """
    import pydicom

    folder = series.folder
    infos = []
    for f in series.files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise UserInputError(
                f"DICOM series {series.uid} in {folder}: {f.name} is a multi-frame (enhanced) image, "
                "which is not supported; convert the series to NIfTI (e.g. dcm2niix) and pass the "
                "NIfTI file"
            )
        ipp = getattr(ds, "ImagePositionPatient", None)
        iop = getattr(ds, "ImageOrientationPatient", None)
        if ipp is None or iop is None:
            raise UserInputError(
                f"DICOM series {series.uid} in {folder}: {f.name} has no ImagePositionPatient/"
                "ImageOrientationPatient, so the 3D geometry is unknown; export the series with "
                "patient geometry or convert it with dcm2niix"
            )
        infos.append((f, np.asarray(ipp, float), np.asarray(iop, float), (int(ds.Rows), int(ds.Columns))))
    if len(infos) < 2:
        raise UserInputError(
            f"DICOM series {series.uid} in {folder} has {len(infos)} slice(s); a 3D volume needs at "
            "least 2 slices: export the whole series"
        )
    sizes = {i[3] for i in infos}
    if len(sizes) > 1:
        raise UserInputError(
            f"DICOM series {series.uid} in {folder} mixes image sizes {sorted(sizes)} (a mixed "
            "series); export each acquisition as its own series or select the files of one"
        )
    iop0 = infos[0][2]
    if any(np.abs(i[2] - iop0).max() > 1e-4 for i in infos):
        raise UserInputError(
            f"DICOM series {series.uid} in {folder} mixes slice orientations (a mixed series, e.g. "
            "a localizer); select the files of one orientation"
        )
    normal = np.cross(iop0[:3], iop0[3:])
    pos = np.array([float(i[1] @ normal) for i in infos])
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    files = [infos[k][0] for k in order]
    steps = np.diff(pos)
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        raise UserInputError(
            f"DICOM series {series.uid} in {folder} has several images at one slice position "
            f"({files[k].name} and {files[k + 1].name}): a mixed series (echoes, time points or "
            "b-values); split it so each series holds one image per position"
        )
    typical = float(np.median(steps))
    big = np.nonzero(steps > typical * (1 + gap_tolerance))[0]
    if big.size:
        k = int(big[0])
        missing = int(round(steps[k] / typical)) - 1
        raise UserInputError(
            f"DICOM series {series.uid} in {folder} is missing {max(missing, 1)} slice(s) between "
            f"{files[k].name} and {files[k + 1].name} (gap {steps[k]:.2f} mm, slice spacing "
            f"{typical:.2f} mm); re-export the complete series from the PACS/scanner"
        )
    if np.any(np.abs(steps - typical) > typical * gap_tolerance):
        raise UserInputError(
            f"DICOM series {series.uid} in {folder} has uneven slice spacing "
            f"({steps.min():.2f}-{steps.max():.2f} mm); resample it to even spacing first"
        )
    series.files = files
    series.validated = True
    return series


def read_series(series: DicomSeries) -> ImageData:
    """Validate ``series`` and read it as a 3D volume (SimpleITK) with RAS affine; ``meta['dicom_files']`` holds the
    files in frame order (frame ``k`` of the array is ``dicom_files[k]``)."""
    import SimpleITK as sitk

    if not series.validated:
        validate_series(series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        img = reader.Execute()
    except RuntimeError as err:
        raise UserInputError(
            f"DICOM series {series.uid} in {series.folder} could not be read "
            f"({str(err).strip().splitlines()[-1]}); check that the files are complete"
        ) from err
    data = sitk_image_to_data(
        img,
        f"DICOM series {series.uid} in {series.folder}",
        {"format": "dicom", "dicom_files": list(series.files), "series_uid": series.uid},
    )
    return data


def read_dicom_folder(folder: str | os.PathLike, series_uid: str | None = None) -> ImageData:
    """Read the one DICOM series in ``folder`` (or the one with ``series_uid``).

    Raises:
        UserInputError: no DICOM series, or several and none chosen (the message lists them).
    """
    folder = Path(folder)
    series = scan_dicom(folder)
    if series_uid:
        series = [s for s in series if s.uid == series_uid]
    if not series:
        what = f"with SeriesInstanceUID {series_uid}" if series_uid else "or image files"
        raise UserInputError(f"{folder} holds no DICOM series {what}; give a NIfTI/NRRD/MHA file or a DICOM folder")
    if len(series) > 1:
        raise UserInputError(
            f"{folder} holds {len(series)} DICOM series; choose one with --series UID:\n{format_series_list(series)}"
        )
    return read_series(series[0])
