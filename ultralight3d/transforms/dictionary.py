"""Dictionary transforms MONAI does not provide: multi-file, multi-grid channel loading.

``LoadChannelsd`` loads one key that holds either

* one file: a 3D volume, or a 4D channel-last volume such as MSD Task05 Prostate (``EnsureChannelFirst`` reads the
  channel axis from the reader's ``original_channel_dim``), or
* a list of files, one per channel (e.g. ProstateX T2 + ADC): every channel after the first is resampled onto the
  first channel's grid (``ResampleToMatch``, bilinear, zeros outside) and the channels are stacked.

The result is a channel-first ``MetaTensor`` whose affine and meta data are the first channel's, with no pending
operations, so a later ``Invertd`` brings predictions back to the first channel's exact grid.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, LoadImage, MapTransform, ResampleToMatch

from ..errors import UserInputError
from ..io.geometry import ImageGeometry, same_grid

__all__ = ["LoadChannelsd", "load_channels", "find_user_error"]


def find_user_error(exc: BaseException) -> UserInputError | None:
    """The :class:`UserInputError` behind ``exc`` (MONAI's ``Compose`` re-raises transform errors as ``RuntimeError``).

    CLI code can catch any exception from a pipeline and show this one-line message instead of a stack trace.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, UserInputError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def load_channels(
    value: str | Path | Sequence[str | Path],
    reader: str | None = None,
    num_channels: int | None = None,
    interp_mode: str = "bilinear",
    dtype: Any = torch.float32,
) -> MetaTensor:
    """Load one file or a list of per-channel files as a channel-first volume on the first file's grid.

    Args:
        value: a path, or a list of paths (one per channel).
        reader: MONAI reader name (``"ITKReader"``, ``"NibabelReader"``...); ``None`` picks by extension.
        num_channels: expected number of channels; a mismatch raises :class:`UserInputError`.
        interp_mode: interpolation used to resample channels 2..n onto the first channel's grid.
        dtype: output dtype.

    Returns:
        ``MetaTensor`` of shape ``(C, H, W, D)`` with the first channel's affine.

    Raises:
        UserInputError: a file is missing, unreadable, not 3D/4D, or the channel count is wrong.
    """
    paths = [value] if isinstance(value, (str, Path)) else list(value)
    if not paths:
        raise UserInputError("an image entry is an empty list; give one file, or one file per channel")
    loader = LoadImage(reader=reader, image_only=True, dtype=dtype)
    to_cf = EnsureChannelFirst()
    vols: list[MetaTensor] = []
    for p in paths:
        if not Path(p).exists():
            raise UserInputError(f"image file {p} does not exist; fix the path in the datalist")
        try:
            img = to_cf(loader(str(p)))
        except Exception as err:  # noqa: BLE001 - reader errors are deep inside MONAI/ITK
            raise UserInputError(f"cannot read image {p}: {err}; convert it to NIfTI (.nii.gz), NRRD or MHA") from err
        if img.ndim != 4:
            raise UserInputError(f"image {p} has {img.ndim - 1} spatial dimensions; a 3D volume is needed")
        vols.append(img)  # type: ignore[arg-type]  # LoadImage(image_only=True) returns a MetaTensor
    first = vols[0]
    first.applied_operations = []
    if len(vols) > 1:
        resample = ResampleToMatch(mode=interp_mode, padding_mode="zeros", dtype=dtype)
        parts = [first.as_tensor()]
        for v in vols[1:]:
            if same_grid(
                ImageGeometry.from_affine(np.asarray(v.affine), v.shape[1:]),
                ImageGeometry.from_affine(np.asarray(first.affine), first.shape[1:]),
            ):
                parts.append(v.as_tensor())
            else:
                parts.append(torch.as_tensor(resample(v, img_dst=first)).as_subclass(torch.Tensor))
        out = MetaTensor(torch.cat(parts, dim=0).to(dtype), affine=first.affine.clone(), meta=dict(first.meta))
    else:
        out = first
    out.applied_operations = []
    if num_channels is not None and out.shape[0] != num_channels:
        raise UserInputError(
            f"image {_describe(value)} has {out.shape[0]} channel(s) but this protocol needs {num_channels}; "
            f"list one file per channel in the datalist (or one 4D channel-last file)"
        )
    return out


class LoadChannelsd(MapTransform):
    """Dictionary wrapper of :func:`load_channels` (image keys) plus a plain channel-first load for label keys.

    Args:
        keys: image keys (one file or a list of files each).
        label_keys: keys loaded as a single-channel label map (nearest, integer values kept).
        reader: MONAI reader name or ``None``.
        num_channels: expected channel count of the image keys.
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        reader: str | None = None,
        num_channels: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)  # type: ignore[arg-type]
        image_keys = [keys] if isinstance(keys, str) else list(keys)  # type: ignore[arg-type]
        super().__init__(image_keys + label_keys, allow_missing_keys)
        self.label_keys = set(label_keys)
        self.reader = reader
        self.num_channels = num_channels

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if key in self.label_keys:
                lab = load_channels(d[key], reader=self.reader, num_channels=None)
                if lab.shape[0] != 1:
                    raise UserInputError(f"label {d[key]} has {lab.shape[0]} channels; a single label map is needed")
                d[key] = lab
            else:
                d[key] = load_channels(d[key], reader=self.reader, num_channels=self.num_channels)
            d[key].meta["filename_or_obj"] = str(data[key][0] if isinstance(data[key], (list, tuple)) else data[key])
        return d
