"""Dataset protocols and the train / validate / infer pipelines built from them.

A *protocol* is plain data: a JSON file in the repository's top-level ``transforms/`` folder (``feta.json``,
``synapse.json``, ``prostate.json``, ``generic.json``, ``demo.json``) naming the channels, labels, spacing,
orientation, intensity normalisation, patch size and augmentation. :func:`get_pipeline` turns a protocol into a
``monai.transforms.Compose``; every bundle calls it, so each pipeline is defined exactly once.

The chains follow 3D UX-Net (``MASILab/3DUX-Net`` ``load_datasets_transforms.py``) on current MONAI:

train:    LoadChannelsd -> [MapLabelValued] -> [Spacingd] -> Orientationd -> [Spacingd] -> intensity ->
          [CropForegroundd(allow_smaller)] -> SpatialPadd(patch) -> RandCropByPosNegLabeld(allow_smaller) ->
          ResizeWithPadOrCropd(patch) -> augmentation -> EnsureTyped
validate: the deterministic part of train (no crop to patch: sliding-window validation on the whole volume)
infer:    the same for ``image`` only; every step is invertible (``Invertd`` returns outputs to the input grid)

Example::

    >>> from ultralight3d.transforms import get_pipeline, get_protocol
    >>> get_protocol("prostate")["channels"]
    ['T2', 'ADC']
    >>> train = get_pipeline("feta", "train", patch_size=(96, 96, 96))
    >>> out = train({"image": "sub-001_T2w.nii.gz", "label": "sub-001_dseg.nii.gz"})  # list of 2 crops
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai import transforms as mt

from ..errors import UserInputError
from ..io.geometry import RAS_AXIS_LABELS
from .dictionary import LoadChannelsd

__all__ = ["PROTOCOL_DIR_ENV", "protocol_dir", "list_protocols", "get_protocol", "get_pipeline", "STAGES"]

PROTOCOL_DIR_ENV = "ULTRALIGHT3D_TRANSFORMS_DIR"
STAGES = ("train", "validate", "infer")
_OVERRIDABLE = {
    "channels", "labels", "spacing", "spacing_before_orientation", "orientation", "normalization",
    "crop_foreground", "label_map", "patch_size", "num_samples", "pos", "neg", "augment",
}  # fmt: skip


def protocol_dir() -> Path:
    """Folder holding the protocol JSON files.

    ``$ULTRALIGHT3D_TRANSFORMS_DIR`` when set (a folder of your own protocols); else the copy of the repository's
    top-level ``transforms/`` folder that an installed wheel carries as ``ultralight3d/_protocols``; else (a source
    checkout or editable install) the top-level ``transforms/`` folder itself. There is one copy in the repository.
    """
    env = os.environ.get(PROTOCOL_DIR_ENV)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parents[1]
    installed = package / "_protocols"
    return installed if installed.is_dir() else package.parent / "transforms"


def list_protocols() -> list[str]:
    """Names of the available protocols (JSON files in :func:`protocol_dir`)."""
    d = protocol_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


@cache
def _read_protocol(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def get_protocol(name: str) -> dict[str, Any]:
    """The protocol ``name`` as a dict (a fresh copy) with the derived keys ``num_classes`` and ``in_channels``.

    Keys: ``name, description, channels, labels, num_classes, in_channels, spacing, spacing_before_orientation,
    orientation, normalization, crop_foreground, label_map, patch_size, num_samples, pos, neg, augment``.

    Raises:
        UserInputError: unknown protocol (the message lists the known ones).
    """
    path = protocol_dir() / f"{name}.json"
    if not path.is_file():
        known = ", ".join(list_protocols()) or f"none found in {protocol_dir()}"
        raise UserInputError(
            f"unknown transform protocol '{name}' (no {path}); known protocols: {known}. "
            f"Set {PROTOCOL_DIR_ENV} to a folder of protocol JSON files to add your own"
        )
    proto = copy.deepcopy(_read_protocol(str(path)))
    proto["num_classes"] = len(proto["labels"])
    proto["in_channels"] = len(proto["channels"])
    return proto


def _resolve(protocol: str | Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    proto = get_protocol(protocol) if isinstance(protocol, str) else copy.deepcopy(dict(protocol))
    unknown = set(params) - _OVERRIDABLE - {"keys", "image_key", "label_key", "reader", "num_channels", "in_channels",
                                            "window", "allow_missing_label"}  # fmt: skip
    if unknown:
        raise UserInputError(
            f"unknown transform parameter(s) {sorted(unknown)}; "
            f"allowed: {sorted(_OVERRIDABLE | {'window', 'in_channels'})}"
        )
    for k, v in params.items():
        if k in _OVERRIDABLE and v is not None:
            proto[k] = v
    if params.get("window") is not None:  # shorthand: window=(a_min, a_max) -> [0, 1]
        a_min, a_max = params["window"]
        proto["normalization"] = {"kind": "window", "a_min": float(a_min), "a_max": float(a_max),
                                  "b_min": 0.0, "b_max": 1.0, "clip": True}  # fmt: skip
    n_ch = params.get("num_channels", params.get("in_channels"))
    if n_ch is not None and int(n_ch) != len(proto["channels"]):
        proto["channels"] = [f"channel{i}" for i in range(int(n_ch))]
    proto["in_channels"] = len(proto["channels"])
    proto["num_classes"] = len(proto["labels"])
    return proto


def _label_map(raw: Mapping[str, Any] | None) -> tuple[list[int], list[int]] | None:
    if not raw:
        return None
    items = [(int(k), int(v)) for k, v in raw.items() if not str(k).startswith("_")]
    return [a for a, _ in items], [b for _, b in items]


def _normalization(keys: str, norm: Mapping[str, Any]) -> list[mt.Transform]:
    kind = norm.get("kind", "zscore")
    if kind == "window":
        return [
            mt.ScaleIntensityRanged(
                keys=keys, a_min=norm["a_min"], a_max=norm["a_max"], b_min=norm.get("b_min", 0.0),
                b_max=norm.get("b_max", 1.0), clip=norm.get("clip", True),
            )
        ]  # fmt: skip
    if kind == "zscore":
        return [
            mt.NormalizeIntensityd(
                keys=keys, nonzero=bool(norm.get("nonzero", True)), channel_wise=bool(norm.get("channel_wise", True))
            )
        ]
    if kind == "none":
        return []
    raise UserInputError(f"unknown normalization kind '{kind}'; use 'window', 'zscore' or 'none'")


def get_pipeline(protocol: str | Mapping[str, Any], stage: str, **params: Any) -> mt.Compose:
    """Build the MONAI pipeline of ``protocol`` for ``stage``.

    Args:
        protocol: a protocol name (see :func:`list_protocols`) or a protocol dict (as from :func:`get_protocol`).
        stage: ``"train"`` (random patches, list of ``num_samples`` dicts per case), ``"validate"`` (whole volume,
            image + label) or ``"infer"`` (whole volume, image only, invertible).
        params: overrides of protocol keys: ``patch_size``, ``num_samples``, ``spacing``, ``orientation``,
            ``normalization``, ``window=(a_min, a_max)`` (``None`` keeps the protocol's value; ``spacing=False`` turns
            resampling off), ``label_map`` (``{orig: new}``), ``crop_foreground``,
            ``augment``, ``channels`` / ``in_channels``, ``labels``; and ``image_key`` / ``label_key`` (default
            ``"image"`` / ``"label"``), ``reader`` (MONAI reader name).

    Returns:
        ``Compose`` mapping ``{"image": path | [paths], "label": path}`` to ``{"image": (C, H, W, D), "label":
        (1, H, W, D)}`` float32 ``MetaTensor``s (train: a list of ``num_samples`` such dicts of patch size, as
        plain tensors).

    Raises:
        UserInputError: unknown protocol, stage or parameter.
    """
    if stage not in STAGES:
        raise UserInputError(f"unknown pipeline stage '{stage}'; use one of {', '.join(STAGES)}")
    p = _resolve(protocol, params)
    img, lab = params.get("image_key", "image"), params.get("label_key", "label")
    keys = [img] if stage == "infer" else [img, lab]
    interp = ["bilinear"] if stage == "infer" else ["bilinear", "nearest"]
    allow_missing = bool(params.get("allow_missing_label", False))

    xs: list[mt.Transform] = [
        LoadChannelsd(keys=img, label_keys=[] if stage == "infer" else [lab], reader=params.get("reader"),
                      num_channels=p["in_channels"], allow_missing_keys=allow_missing),
    ]  # fmt: skip
    lm = _label_map(p.get("label_map"))
    if lm is not None and stage != "infer":
        xs.append(mt.MapLabelValued(keys=lab, orig_labels=lm[0], target_labels=lm[1], allow_missing_keys=allow_missing))
    spacing: list[mt.MapTransform] = (
        [mt.Spacingd(keys=keys, pixdim=tuple(p["spacing"]), mode=interp, allow_missing_keys=allow_missing)]
        if p.get("spacing")
        else []
    )
    orient: list[mt.MapTransform] = (
        [mt.Orientationd(keys=keys, axcodes=p["orientation"], labels=RAS_AXIS_LABELS, allow_missing_keys=allow_missing)]
        if p.get("orientation")
        else []
    )
    xs += spacing + orient if p.get("spacing_before_orientation") else orient + spacing
    xs += _normalization(img, p.get("normalization") or {"kind": "none"})
    if p.get("crop_foreground"):
        xs.append(mt.CropForegroundd(keys=keys, source_key=img, allow_smaller=True, allow_missing_keys=allow_missing))

    if stage == "train":
        patch = tuple(int(s) for s in p["patch_size"])
        xs += [
            mt.SpatialPadd(keys=keys, spatial_size=patch, mode="constant"),
            mt.RandCropByPosNegLabeld(
                keys=keys, label_key=lab, spatial_size=patch, pos=p.get("pos", 1), neg=p.get("neg", 1),
                num_samples=int(p.get("num_samples", 2)), image_key=img, image_threshold=0, allow_smaller=True,
            ),
            mt.ResizeWithPadOrCropd(keys=keys, spatial_size=patch, mode="constant"),
        ]  # fmt: skip
        xs += _augmentation(img, lab, patch, p.get("augment") or {})
    # training patches need no meta data (plain tensors are faster); validate/infer keep it for Invertd
    xs.append(mt.EnsureTyped(keys=keys, dtype=torch.float32, track_meta=stage != "train",
                             allow_missing_keys=allow_missing))  # fmt: skip
    return mt.Compose(xs)


def _augmentation(img: str, lab: str, patch: Sequence[int], aug: Mapping[str, Any]) -> list[mt.Transform]:
    keys = [img, lab]
    out: list[mt.Transform] = []
    if "flip" in aug:
        out += [mt.RandFlipd(keys=keys, prob=aug["flip"].get("prob", 0.5), spatial_axis=a) for a in range(3)]
    if "rotate90" in aug:
        out.append(mt.RandRotate90d(keys=keys, prob=aug["rotate90"].get("prob", 0.5),
                                    max_k=aug["rotate90"].get("max_k", 3)))  # fmt: skip
    if "scale_intensity" in aug:
        out.append(mt.RandScaleIntensityd(keys=img, factors=aug["scale_intensity"].get("factors", 0.1),
                                          prob=aug["scale_intensity"].get("prob", 0.5)))  # fmt: skip
    if "shift_intensity" in aug:
        out.append(mt.RandShiftIntensityd(keys=img, offsets=aug["shift_intensity"].get("offsets", 0.1),
                                          prob=aug["shift_intensity"].get("prob", 0.5)))  # fmt: skip
    if "affine" in aug:
        a = aug["affine"]
        out.append(
            mt.RandAffined(
                keys=keys, mode=("bilinear", "nearest"), prob=a.get("prob", 1.0), spatial_size=tuple(patch),
                rotate_range=tuple(a.get("rotate_range", (0.0, 0.0, np.pi / 15))),
                scale_range=tuple(a.get("scale_range", (0.1, 0.1, 0.1))),
                padding_mode=a.get("padding_mode", "reflection"),
            )
        )  # fmt: skip
    return out
