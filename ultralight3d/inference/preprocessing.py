"""Inference preprocessing: the bundle protocol's ``"infer"`` pipeline, minus its file loading.

The predictor reads images itself (:mod:`ultralight3d.io`: NIfTI/NRRD/MHA/DICOM with exact geometry and clear errors)
and hands the pipeline ``{"image": MetaTensor (C, X, Y, Z)}``; so loader transforms at the head of a protocol pipeline
(``LoadImaged``, ``EnsureChannelFirstd`` and the protocol's multi-file loader) are dropped. Every remaining transform
must be invertible: the prediction goes back through ``Compose.inverse`` (nearest) onto the input grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)

from ..io.geometry import RAS_AXIS_LABELS

__all__ = ["default_preprocessing", "strip_loaders", "build_preprocessing", "channel_names"]


def default_preprocessing(
    orientation: str | None = "RAS",
    spacing: Sequence[float] | None = None,
    intensity: str = "zscore",
    a_min: float = -175.0,
    a_max: float = 250.0,
    **_: Any,
) -> Compose:
    """A minimal invertible pipeline on ``"image"``: reorient, resample, normalise.

    Args:
        orientation: axis codes (``"RAS"``) or None to keep the input's.
        spacing: target voxel size in mm, or None to keep the input's.
        intensity: ``"zscore"`` (non-zero voxels, per channel), ``"window"`` (``a_min..a_max`` -> 0..1, clipped) or
            ``"none"``.
    """
    transforms: list[Any] = []
    if orientation:
        transforms.append(Orientationd(keys="image", axcodes=orientation, labels=RAS_AXIS_LABELS))
    if spacing:
        transforms.append(Spacingd(keys="image", pixdim=tuple(float(s) for s in spacing), mode="bilinear"))
    if intensity == "zscore":
        transforms.append(NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    elif intensity == "window":
        transforms.append(ScaleIntensityRanged(keys="image", a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True))
    elif intensity != "none":
        raise ValueError(f"intensity must be 'zscore', 'window' or 'none', got {intensity!r}")
    transforms.append(EnsureTyped(keys="image", dtype="float32", track_meta=True))
    return Compose(transforms)


def strip_loaders(pipeline: Compose) -> Compose:
    """Drop file-loading transforms (``LoadImaged``, ``EnsureChannelFirstd``, ``*Load*`` classes) from the head of
    ``pipeline`` (flattened), keeping everything after them."""
    flat = list(pipeline.flatten().transforms)
    start = 0
    for i, t in enumerate(flat):
        name = type(t).__name__
        if isinstance(t, (LoadImaged, EnsureChannelFirstd)) or "Load" in name or "ChannelFirst" in name:
            start = i + 1
    return Compose(flat[start:])


def build_preprocessing(protocol: str | None = None, params: dict[str, Any] | None = None) -> Compose:
    """The ``"infer"`` pipeline of ``protocol`` (``ultralight3d.transforms.get_pipeline``) without its loaders, or
    :func:`default_preprocessing` (``params`` as keyword arguments) when no protocol is given."""
    params = dict(params or {})
    if protocol:
        from ..transforms import get_pipeline

        return strip_loaders(get_pipeline(protocol, "infer", **params))
    return default_preprocessing(**params)


def channel_names(protocol: str | None, in_channels: int) -> list[str]:
    """The protocol's channel names when their count is ``in_channels``, else ``channel0`` … (as
    ``ultralight3d.transforms`` names channels of an overridden count); ``["image"]`` … without a protocol."""
    if protocol:
        from ..transforms import get_protocol

        names = list(get_protocol(protocol)["channels"])
        if len(names) == int(in_channels):
            return names
        return [f"channel{i}" for i in range(int(in_channels))]
    return ["image"] if int(in_channels) == 1 else [f"channel{i}" for i in range(int(in_channels))]
