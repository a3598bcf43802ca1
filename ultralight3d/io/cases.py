"""Turn ``-i`` inputs (file, folder of files, DICOM folder, ``--channel NAME=…``) into cases and load them.

A case is one subject to segment: one source per channel. Sources are image files or DICOM series. Multi-channel
cases are loaded channel by channel and every channel after the first is resampled (linear) onto the first channel's
grid, so the prediction lives on the first channel's grid.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from .dicom import DicomSeries, format_series_list, read_series, scan_dicom
from .files import channel_file_name, is_image_file, list_image_files, split_channel, strip_image_suffix
from .geometry import same_grid
from .image import check_image, read_image
from .volume import ImageData

__all__ = ["Source", "CaseSpec", "discover_cases", "load_case", "parse_channel_args"]

Source = Path | DicomSeries


@dataclass
class CaseSpec:
    """One case: id, one source per channel, or the reason it cannot be run (reported, others go on)."""

    case_id: str
    sources: list[Source] = field(default_factory=list)
    error: str | None = None

    @property
    def is_dicom(self) -> bool:
        return bool(self.sources) and isinstance(self.sources[0], DicomSeries)

    def describe(self) -> str:
        return ", ".join(s.label() if isinstance(s, DicomSeries) else str(s) for s in self.sources)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "case"


def parse_channel_args(items: list[str] | None) -> dict[str, str]:
    """``["T2=/a", "ADC=1.2.3"]`` -> ``{"T2": "/a", "ADC": "1.2.3"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UserInputError(
                f"--channel {item!r} must look like NAME=FILE_OR_FOLDER_OR_SERIESUID (e.g. T2=scan.nii.gz)"
            )
        name, value = item.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _pick_series(candidates: list[DicomSeries], channel: str, n_channels: int, where: str) -> DicomSeries:
    """Choose the series for ``channel`` among a study's series: the only one, or the only one whose description
    contains the channel name."""
    if n_channels == 1 and len(candidates) == 1:
        return candidates[0]
    key = _norm(channel)
    matches = [s for s in candidates if key and key in _norm(s.description)]
    if len(matches) == 1:
        return matches[0]
    hint = (
        f"pass --channel {channel}=SERIES_UID (or a folder holding only that series)"
        if n_channels > 1 or channel != "image"
        else "pass --series SERIES_UID"
    )
    reason = "several series match" if matches else "no single series matches"
    listing = format_series_list(matches or candidates)
    raise UserInputError(f"{where}: {reason} channel '{channel}'; {hint}. Series found:\n{listing}")


def _dicom_cases(series: list[DicomSeries], channels: list[str], where: str) -> list[CaseSpec]:
    studies: dict[tuple[str, str], list[DicomSeries]] = {}
    for s in series:
        studies.setdefault((s.patient_id, s.study_uid), []).append(s)
    n_studies: dict[str, int] = {}
    for pid, _study in studies:
        n_studies[pid] = n_studies.get(pid, 0) + 1
    seen: dict[str, int] = {}
    cases = []
    for (pid, _study), members in studies.items():
        seen[pid] = seen.get(pid, 0) + 1
        case_id = _safe_id(pid or "dicom") + (f"_{seen[pid]}" if n_studies[pid] > 1 else "")
        try:
            sources: list[Source] = [
                _pick_series(members, ch, len(channels), f"{where} (patient {pid})") for ch in channels
            ]
            cases.append(CaseSpec(case_id, sources))
        except UserInputError as err:
            cases.append(CaseSpec(case_id, [], str(err)))
    return cases


def _resolve_channel_value(value: str, input_series: list[DicomSeries] | None) -> Source:
    path = Path(value)
    if path.is_file() and is_image_file(path):
        return path
    if path.is_dir():
        found = scan_dicom(path)
        if len(found) == 1:
            return found[0]
        if not found:
            raise UserInputError(
                f"{path} holds no DICOM series; give an image file, a DICOM folder or a SeriesInstanceUID"
            )
        raise UserInputError(
            f"{path} holds {len(found)} DICOM series; give the SeriesInstanceUID instead:\n{format_series_list(found)}"
        )
    if path.is_file():
        raise UserInputError(f"{path} is not a supported image file; give a NIfTI/NRRD/MHA file or a DICOM folder")
    for s in input_series or []:
        if s.uid == value:
            return s
    if re.fullmatch(r"[0-9.]+", value):
        raise UserInputError(
            f"no DICOM series with SeriesInstanceUID {value} under the input folder; check the UID "
            "(the error for an ambiguous folder lists them)"
        )
    raise UserInputError(f"{value} does not exist; check the path given with --channel")


def discover_cases(
    inputs: str | os.PathLike | None,
    channels: list[str] | None = None,
    channel_sources: dict[str, str] | None = None,
    series_uids: list[str] | None = None,
) -> list[CaseSpec]:
    """Find the cases to segment.

    Args:
        inputs: a file, a folder of image files (nnU-Net style ``<case>_0000.nii.gz`` … for multi-channel bundles), or
            a folder holding DICOM series (recursive; one case per patient study). May be None with
            ``channel_sources``.
        channels: the bundle's channel names (``["image"]`` for single-channel bundles); their order is the input
            channel order.
        channel_sources: ``{channel: file | DICOM folder | SeriesInstanceUID}``: one explicit case.
        series_uids: restrict DICOM discovery to these SeriesInstanceUIDs.

    Returns:
        Cases in a stable order; a case that cannot be resolved carries ``error`` (e.g. an ambiguous series listing).

    Raises:
        UserInputError: the input does not exist or holds nothing to segment.
    """
    channels = list(channels or ["image"])
    path = Path(inputs) if inputs is not None else None
    if path is not None and not path.exists():
        raise UserInputError(
            f"input {path} does not exist; give a NIfTI/NRRD/MHA file, a folder of them or a DICOM folder"
        )
    if channel_sources:
        unknown = [k for k in channel_sources if k not in channels]
        missing = [c for c in channels if c not in channel_sources]
        if unknown or missing:
            raise UserInputError(
                f"--channel gave {sorted(channel_sources)} but the bundle's channels are {channels}; "
                f"pass one --channel NAME=… for each of {channels}"
            )
        input_series = scan_dicom(path) if path is not None and path.is_dir() else None
        sources = [_resolve_channel_value(channel_sources[c], input_series) for c in channels]
        first = sources[0]
        case_id = (
            split_channel(strip_image_suffix(first))[0]
            if isinstance(first, Path)
            else _safe_id(first.patient_id or (path.name if path else "case"))
        )
        return [CaseSpec(_safe_id(case_id), sources)]
    if path is None:
        raise UserInputError("no input given; pass -i FILE_OR_FOLDER or --channel NAME=… for each channel")
    if path.is_file():
        if is_image_file(path):
            return [CaseSpec(_safe_id(strip_image_suffix(path)), [path])]
        series = scan_dicom(path.parent)
        series = [s for s in series if path in s.files]
        if series:
            return _dicom_cases(series, channels, str(path))
        raise UserInputError(
            f"{path} is not a supported image file; give a NIfTI (.nii/.nii.gz), NRRD, MHA/MHD file or a DICOM folder"
        )
    files = list_image_files(path)  # hidden files (macOS ._* resource forks) are skipped
    if files:
        if len(channels) == 1:
            return [CaseSpec(_safe_id(strip_image_suffix(f)), [f]) for f in files]
        groups: dict[str, dict[int, Path]] = {}
        singles: list[Path] = []
        for f in files:
            case, channel = split_channel(strip_image_suffix(f))
            if channel is not None:
                groups.setdefault(case, {})[channel] = f
            else:
                singles.append(f)
        cases = []
        for case_id, members in sorted(groups.items()):
            want = list(range(len(channels)))
            if sorted(members) != want:
                first_name, last = channel_file_name(case_id, 0), channel_file_name(case_id, len(channels) - 1)
                cases.append(
                    CaseSpec(
                        _safe_id(case_id),
                        [],
                        (
                            f"{path}: case {case_id} has channel files {sorted(members)} but the bundle needs "
                            f"{len(channels)} ({', '.join(channels)}) named {first_name} … {last}"
                        ),
                    )
                )
            else:
                cases.append(CaseSpec(_safe_id(case_id), [members[i] for i in want]))
        # files without a channel suffix: one 4D file per case (e.g. MSD imagesTs)
        cases += [CaseSpec(_safe_id(strip_image_suffix(f)), [f]) for f in singles]
        return cases
    series = scan_dicom(path)
    if series_uids:
        series = [s for s in series if s.uid in set(series_uids)]
        if not series:
            raise UserInputError(f"{path} holds no DICOM series with SeriesInstanceUID {', '.join(series_uids)}")
    if not series:
        raise UserInputError(
            f"{path} holds no NIfTI/NRRD/MHA files and no DICOM series; give a folder of images or DICOM files"
        )
    return _dicom_cases(series, channels, str(path))


def _read_source(source: Source) -> ImageData:
    if isinstance(source, DicomSeries):
        return read_series(source)
    return read_image(source)


def _resample_to(moving: ImageData, ref: ImageData) -> np.ndarray:
    """Linear resampling of ``moving`` (C, X, Y, Z) onto ``ref``'s grid (world coordinates), zero outside."""
    from scipy.ndimage import map_coordinates

    if same_grid(ref.geometry, moving.geometry):
        return moving.array
    vox = np.linalg.inv(moving.affine) @ ref.affine  # ref voxel -> moving voxel
    grid = np.indices(ref.array.shape[1:], dtype=np.float32).reshape(3, -1)
    coords = vox[:3, :3].astype(np.float32) @ grid + vox[:3, 3:4].astype(np.float32)
    out = np.stack(
        [
            map_coordinates(ch, coords, order=1, mode="constant", cval=0.0).reshape(ref.array.shape[1:])
            for ch in moving.array
        ]
    )
    return out.astype(np.float32)


def load_case(spec: CaseSpec, channels: list[str] | None = None) -> ImageData:
    """Read and check a case: one image per channel (or one multi-volume file), the others resampled onto the first.

    Returns:
        :class:`ImageData` with ``array`` shape ``(C, X, Y, Z)`` and the first channel's affine; ``meta`` holds
        ``"reference"`` (the first channel's ImageData without voxels) and, for DICOM, ``"dicom_files"``.

    Raises:
        UserInputError: unreadable/ill-formed input (names the file and the fix).
    """
    if spec.error:
        raise UserInputError(spec.error)
    channels = list(channels or ["image"])
    images = [_read_source(s) for s in spec.sources]
    first = images[0]
    if len(images) == 1:
        check_image(first, expected_channels=len(channels), channel_names=channels)
        return first
    for name, img in zip(channels, images, strict=False):
        check_image(img, expected_channels=1, channel_names=[name])
    arrays = [first.array] + [_resample_to(img, first) for img in images[1:]]
    meta = dict(first.meta)
    meta["channel_sources"] = [img.source for img in images]
    return ImageData(np.concatenate(arrays, 0), first.affine, first.source, meta)
