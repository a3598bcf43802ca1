"""Post-processing of label maps per class: keep the largest connected component, drop components under a volume.

The rules are data, declared per class in a protocol's ``postprocessing`` table (``transforms/<protocol>.json``)::

    "postprocessing": {"1": {"largest_component": true}, "3": {"min_volume_ml": 0.5}}

``ultralight3d predict`` applies them to the label map on the output (input) grid, where volumes in ml follow from
the voxel size; its ``--largest-component``, ``--min-volume-ml`` and ``--no-postprocessing`` replace them. Removed
voxels become background (0), as in nnU-Net's ``remove_all_but_largest_component`` and TotalSegmentator's
``--remove_small_blobs``. Components are found by :func:`scipy.ndimage.label` with full (26-)connectivity, MONAI's
``KeepLargestConnectedComponent`` default.

The same rules run in a MONAI pipeline (a bundle's ``postprocessing``) as :class:`PostprocessLabelsd`::

    {"_target_": "ultralight3d.inference.PostprocessLabelsd", "keys": "pred", "protocol": "@protocol"}

Example::

    >>> rules = rules_from_protocol("synapse")            # {1: ComponentRule(largest_component=True), ...}
    >>> clean, report = postprocess_label(label, rules, voxel_volume_ml=0.0045)
    >>> report[5]
    {'components': 3, 'removed_components': 2, 'removed_voxels': 41}
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from ..errors import UserInputError
from ..labels import LabelTable

__all__ = [
    "ComponentRule",
    "Rules",
    "parse_rules",
    "rules_from_protocol",
    "override_rules",
    "voxel_volume_ml",
    "postprocess_label",
    "PostprocessLabels",
    "PostprocessLabelsd",
]


@dataclass(frozen=True)
class ComponentRule:
    """What to do with the connected components of one class.

    Attributes:
        largest_component: keep only the largest connected component.
        min_volume_ml: remove components smaller than this volume (ml); None: no limit.
    """

    largest_component: bool = False
    min_volume_ml: float | None = None

    @property
    def active(self) -> bool:
        return self.largest_component or bool(self.min_volume_ml)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.largest_component:
            out["largest_component"] = True
        if self.min_volume_ml:
            out["min_volume_ml"] = self.min_volume_ml
        return out


#: label value -> rule.
Rules = dict[int, ComponentRule]


def parse_rules(spec: Mapping[Any, Any] | None, source: str = "postprocessing") -> Rules:
    """``{"1": {"largest_component": true, "min_volume_ml": 0.5}, "_desc_": "..."}`` -> :data:`Rules` (keys starting
    with ``_`` are comments).

    Raises:
        UserInputError: a non-integer class, an unknown key, or a volume that is not a number > 0.
    """
    rules: Rules = {}
    for key, value in (spec or {}).items():
        if str(key).startswith("_"):
            continue
        where = f"{source} of class {key}"
        try:
            cls = int(key)
        except (TypeError, ValueError):
            raise UserInputError(f"{source}: class {key!r} must be an integer label value") from None
        if isinstance(value, ComponentRule):
            rules[cls] = value
            continue
        if not isinstance(value, Mapping):
            raise UserInputError(f'{where} must be an object such as {{"largest_component": true}}, got {value!r}')
        unknown = set(value) - {"largest_component", "min_volume_ml"}
        if unknown:
            raise UserInputError(f"{where}: unknown key(s) {sorted(unknown)}; use largest_component, min_volume_ml")
        vol = value.get("min_volume_ml")
        if vol is not None:
            try:
                vol = float(vol)
            except (TypeError, ValueError):
                raise UserInputError(f"{where}: min_volume_ml must be a number of ml, got {vol!r}") from None
            if not 0 < vol < float("inf"):
                raise UserInputError(f"{where}: min_volume_ml must be > 0, got {vol}")
        rule = ComponentRule(bool(value.get("largest_component", False)), vol)
        if rule.active:
            rules[cls] = rule
    return rules


def rules_from_protocol(protocol: str | Mapping[str, Any] | None, labels: LabelTable | None = None) -> Rules:
    """The ``postprocessing`` table of a protocol (name or dict); with ``labels``, only for the classes whose value
    and name agree with the protocol's (a relabelled model does not inherit rules meant for other classes)."""
    if not protocol:
        return {}
    if isinstance(protocol, str):
        from ..transforms import get_protocol

        proto: Mapping[str, Any] = get_protocol(protocol)
    else:
        proto = protocol
    rules = parse_rules(proto.get("postprocessing"), f"protocol {proto.get('name', '?')} postprocessing")
    if labels is None:
        return rules
    names = {int(k): str(v) for k, v in (proto.get("labels") or {}).items()}
    table = {lab.value: lab.name for lab in labels}

    def norm(text: str) -> str:
        return " ".join(text.replace("_", " ").lower().split())

    return {v: r for v, r in rules.items() if v in table and v in names and norm(table[v]) == norm(names[v])}


def override_rules(
    rules: Rules,
    values: Iterable[int],
    largest_component: bool | Sequence[int] | None = None,
    min_volume_ml: float | None = None,
    enabled: bool = True,
) -> Rules:
    """The rules after the command-line overrides.

    Args:
        rules: the declared rules (protocol).
        values: every foreground label value.
        largest_component: True: every class; a list: those classes; None/False: none. Given together with
            ``min_volume_ml`` or alone, the overrides *replace* ``rules``.
        min_volume_ml: minimum component volume for every class.
        enabled: False drops every rule (``--no-postprocessing``); it cannot be combined with the other two.

    Raises:
        UserInputError: ``enabled=False`` together with an override.
    """
    overrides = bool(largest_component) or min_volume_ml is not None
    if not enabled:
        if overrides:
            raise UserInputError(
                "--no-postprocessing cannot be combined with --largest-component or --min-volume-ml; drop one of them"
            )
        return {}
    if not overrides:
        return dict(rules)
    every = [int(v) for v in values]
    largest = set(every) if largest_component is True else {int(v) for v in (largest_component or [])}
    out: Rules = {}
    for v in every:
        rule = ComponentRule(v in largest, float(min_volume_ml) if min_volume_ml is not None else None)
        if rule.active:
            out[v] = rule
    return out


def voxel_volume_ml(affine: np.ndarray | torch.Tensor) -> float:
    """Volume of one voxel in ml: |det(affine[:3, :3])| (mm³) / 1000."""
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    return abs(float(np.linalg.det(a[:3, :3]))) / 1000.0


def postprocess_label(
    label: np.ndarray, rules: Mapping[int, ComponentRule], voxel_volume_ml: float
) -> tuple[np.ndarray, dict[int, dict[str, int]]]:
    """Apply per-class component rules to an integer label map.

    For each class with a rule: components smaller than ``min_volume_ml`` are removed first, then, with
    ``largest_component``, all but the largest remaining one. Removed voxels become 0.

    Args:
        label: integer label map (any number of spatial dims; not changed).
        rules: label value -> :class:`ComponentRule`.
        voxel_volume_ml: volume of one voxel in ml (:func:`voxel_volume_ml` of the label's affine).

    Returns:
        the cleaned label map (a copy, same dtype) and, per class with a rule, ``{"components": n,
        "removed_components": k, "removed_voxels": m}``.
    """
    from scipy import ndimage

    out = np.array(label, copy=True)
    structure = np.ones((3,) * out.ndim, dtype=bool)  # full connectivity (26 in 3D)
    report: dict[int, dict[str, int]] = {}
    for value, rule in sorted(rules.items()):
        if not rule.active:
            continue
        mask = out == value
        comps, n = ndimage.label(mask, structure=structure)
        entry = {"components": int(n), "removed_components": 0, "removed_voxels": 0}
        report[int(value)] = entry
        if n == 0:
            continue
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        sizes[0] = 0
        keep = sizes > 0
        if rule.min_volume_ml:
            keep &= sizes * voxel_volume_ml >= rule.min_volume_ml
        if rule.largest_component and keep.any():
            best = int(np.argmax(np.where(keep, sizes, 0)))
            keep[:] = False
            keep[best] = True
        drop = ~keep
        drop[0] = False
        if drop[1:].any():
            removed = drop[comps] & mask
            out[removed] = 0
            entry["removed_components"] = int(drop[1:].sum())
            entry["removed_voxels"] = int(removed.sum())
    return out, report


class PostprocessLabels(Transform):
    """Array transform: :func:`postprocess_label` on a label map ``(1, X, Y, Z)`` or ``(X, Y, Z)`` (numpy or torch,
    e.g. the output of ``AsDiscrete(argmax=True)``); the voxel volume comes from ``affine`` or, for a MetaTensor, its
    own affine, so put it after ``Invertd`` for volumes on the input grid.

    Args:
        rules: :data:`Rules` or the JSON form (``{"1": {"largest_component": true}}``).
        protocol: take the rules from this protocol's ``postprocessing`` table instead.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, rules: Mapping[Any, Any] | None = None, protocol: str | Mapping[str, Any] | None = None) -> None:
        if rules is not None and protocol is not None:
            raise UserInputError("give PostprocessLabels either rules or a protocol, not both")
        self.rules: Rules = parse_rules(rules) if rules is not None else rules_from_protocol(protocol)
        self.last_report: dict[int, dict[str, int]] = {}

    def __call__(self, img: Any, affine: Any = None) -> Any:
        if not self.rules:
            return img
        if affine is None:
            affine = getattr(img, "affine", None)
        vox = voxel_volume_ml(affine) if affine is not None else 1e-3  # no geometry: 1 mm³ voxels
        is_torch = isinstance(img, torch.Tensor)
        arr = img.detach().cpu().numpy() if is_torch else np.asarray(img)
        squeeze = arr.ndim == 4
        if squeeze and arr.shape[0] != 1:
            raise ValueError(
                f"PostprocessLabels needs a label map (1, X, Y, Z), got {arr.shape[0]} channels; put it after "
                "AsDiscrete(argmax=True)"
            )
        lab = arr[0] if squeeze else arr
        clean, self.last_report = postprocess_label(np.rint(lab).astype(np.int64), self.rules, vox)
        clean = clean.astype(lab.dtype, copy=False)
        res = clean[None] if squeeze else clean
        if is_torch:
            out = img.clone()
            out[...] = torch.as_tensor(res, dtype=img.dtype)
            return out
        return res


class PostprocessLabelsd(MapTransform):
    """Dictionary version of :class:`PostprocessLabels` (e.g. ``keys="pred"`` in a bundle's ``postprocessing``).

    Args:
        keys: keys of the label maps.
        rules: :data:`Rules` or the JSON form.
        protocol: take the rules from this protocol instead.
        allow_missing_keys: skip absent keys.
    """

    backend = PostprocessLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        rules: Mapping[Any, Any] | None = None,
        protocol: str | Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = PostprocessLabels(rules, protocol)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
