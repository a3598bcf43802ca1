"""Data side of the bundles: the train/validation split, what the datalist says about the data, the class table,
and the label-value check that runs before the first training step.

The datalist written by ``ultralight3d prepare`` (:mod:`ultralight3d.data.datalist`) may carry ``labels``
(``{"0": "background", "1": "liver", ...}``), ``num_classes`` and ``channels``; :func:`read_dataset_info` reads them
defensively (any of them may be missing) so the custom bundle needs no ``--num_classes`` when the datalist says it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..labels import Label, LabelTable, default_color, read_label_table

__all__ = [
    "SPLITS",
    "load_split",
    "read_dataset_info",
    "num_classes_for",
    "in_channels_for",
    "protocol_value",
    "class_names",
    "channel_names",
    "label_table",
    "synapse_protocol",
    "LabelCheck",
]

logger = logging.getLogger(__name__)

#: ``split`` values of a bundle: cross-validation folds of the ``training`` cases, or the datalist's fixed
#: ``validation`` section (Synapse: the 12 TransUNet test cases).
SPLITS = ("folds", "fixed")
_NO_FOLD = {"none", "all", "fixed", ""}


# ------------------------------------------------------------------------------------------------------ the split
def _check_files(cases: Sequence[Mapping[str, Any]], datalist: Path, section: str) -> None:
    for case in cases:
        for key in ("image", "label"):
            value = case.get(key)
            for path in value if isinstance(value, (list, tuple)) else [value] if value else []:
                if not os.path.exists(path):
                    raise UserInputError(
                        f"{key} {path} of case '{case.get('case', '?')}' ({section} cases of datalist {datalist}) does "
                        "not exist; restore the file, or re-run `ultralight3d prepare ... --overwrite` to list the "
                        "cases again"
                    )


def load_split(
    dataset_dir: str | os.PathLike,
    datalist_file: str | os.PathLike | None = None,
    fold: int | str | None = 0,
    split: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, val)`` cases of a bundle run, from the datalist written by ``ultralight3d prepare``.

    Args:
        dataset_dir: dataset root (bundle id ``dataset_dir``).
        datalist_file: datalist JSON; default ``<dataset_dir>/datalist.json``.
        fold: validation fold (0-4) when ``split`` is ``"folds"``; ``None`` / ``"none"`` / ``"all"`` mean the fixed
            split (kept for older command lines).
        split: ``"folds"`` (validate on ``fold``, train on the other folds) or ``"fixed"`` (train on the
            ``training`` cases, validate on the datalist's ``validation`` section, e.g. Synapse's 12 TransUNet test
            cases). ``None``: ``"folds"`` unless ``fold`` says otherwise.

    Raises:
        UserInputError: no datalist (the message says how to make one), an invalid one, an unknown split, a fold that
            does not exist, or an image/label file listed but missing.
    """
    from ..data.datalist import load_datalist

    path = Path(datalist_file) if datalist_file else Path(dataset_dir) / "datalist.json"
    if not path.is_file():
        raise UserInputError(
            f"datalist {path} not found; run `ultralight3d prepare ... --root {dataset_dir}` to write it, or pass "
            f"--dataset_dir <folder holding datalist.json> / --datalist_file <file>"
        )
    if isinstance(fold, str) and fold.strip().lower() in _NO_FOLD:
        fold = None
    split = str(split if split is not None else ("fixed" if fold is None else "folds")).strip().lower()
    if split not in SPLITS:
        raise UserInputError(
            f"--split {split!r} is not one of {', '.join(SPLITS)} ('folds' validates on --fold N, "
            "'fixed' on the datalist's validation section)"
        )
    if split == "folds" and fold is None:
        raise UserInputError("--split folds needs --fold N (0-4); use --split fixed for the datalist's validation set")
    train, val = load_datalist(path, fold=None if split == "fixed" else int(fold))  # type: ignore[arg-type]
    _check_files(train, path, "training")
    _check_files(val, path, "validation")
    logger.info(
        f"datalist {path}: {len(train)} training / {len(val)} validation cases "
        f"({'fixed validation section' if split == 'fixed' else f'fold {fold} held out'})"
    )
    return train, val


# ------------------------------------------------------------------------------------------- what the data says
def read_dataset_info(datalist_file: str | os.PathLike | None) -> dict[str, Any]:
    """``labels`` (``{value: name}``), ``num_classes``, ``channels`` and ``in_channels`` of a datalist, as
    :func:`ultralight3d.data.datalist.datalist_config` reads them (derived for older datalists).

    A missing or unreadable datalist gives ``{}`` here (:func:`load_split` reports it with the fix); so does any key
    that is not well-formed.
    """
    if not datalist_file or not Path(datalist_file).is_file():
        return {}
    from ..data.datalist import datalist_config

    try:
        cfg = datalist_config(Path(datalist_file))
    except (UserInputError, OSError, ValueError, TypeError, KeyError):
        return {}
    info: dict[str, Any] = {}
    try:
        info["labels"] = {int(k): str(v) for k, v in dict(cfg.get("labels") or {}).items()}
    except (TypeError, ValueError):
        pass
    if isinstance(cfg.get("num_classes"), int) and cfg["num_classes"] >= 2:
        info["num_classes"] = int(cfg["num_classes"])
    channels = cfg.get("channels")
    if isinstance(channels, list) and channels:
        info["channels"] = [str(c) for c in channels]
        info["in_channels"] = int(cfg.get("in_channels") or len(channels))
    return info


def _explicit(value: int, default: int) -> bool:
    return int(value) != int(default)


def num_classes_for(
    num_classes: int,
    default: int,
    protocol: str | Mapping[str, Any],
    transform_params: Mapping[str, Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
) -> int:
    """The number of classes the network is built with (background included).

    ``num_classes`` when it was set (it differs from the bundle's shipped ``default``: a command-line
    ``--num_classes 5`` always wins); else the highest label of ``transform_params["labels"]`` + 1; else the datalist's
    ``num_classes`` (``dataset_info``, passed by the custom bundle); else the protocol's labels.
    """
    if _explicit(num_classes, default):
        return int(num_classes)
    labels = (transform_params or {}).get("labels")
    if labels:
        return max(int(k) for k in dict(labels)) + 1
    if dataset_info and isinstance(dataset_info.get("num_classes"), int):
        found = int(dataset_info["num_classes"])
        if found != int(num_classes):
            logger.info(f"num_classes {found} from the datalist (pass --num_classes to override)")
        return found
    proto_labels = protocol_value(protocol, None, "labels") or {}
    return max(int(k) for k in dict(proto_labels)) + 1 if proto_labels else int(num_classes)


def in_channels_for(
    in_channels: int,
    default: int,
    protocol: str | Mapping[str, Any],
    transform_params: Mapping[str, Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
) -> int:
    """The number of input channels: ``in_channels`` when set (differs from ``default``), else the channels of
    ``transform_params``, of the datalist (``dataset_info``), or of the protocol."""
    if _explicit(in_channels, default):
        return int(in_channels)
    channels = (transform_params or {}).get("channels")
    if channels:
        return len(channels)
    if dataset_info and isinstance(dataset_info.get("in_channels"), int):
        found = int(dataset_info["in_channels"])
        if found != int(in_channels):
            logger.info(f"in_channels {found} from the datalist (pass --in_channels to override)")
        return found
    return len(protocol_value(protocol, None, "channels") or []) or int(in_channels)


def protocol_value(protocol: str | Mapping[str, Any], transform_params: Mapping[str, Any] | None, key: str) -> Any:
    """``transform_params[key]`` when given (not ``None``), else the protocol's value."""
    from ..transforms import get_protocol

    params = dict(transform_params or {})
    if params.get(key) is not None:
        return params[key]
    proto = get_protocol(protocol) if isinstance(protocol, str) else dict(protocol)
    return proto.get(key)


def class_names(
    num_classes: int,
    protocol: str | Mapping[str, Any],
    transform_params: Mapping[str, Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
) -> dict[int, str]:
    """Foreground class names ``{1: name, ...}`` for ``num_classes`` classes (background included in the count).

    Names come from ``transform_params["labels"]``, else the datalist's ``labels`` (``dataset_info``; the custom
    bundle passes it), else the protocol's; values without a name get ``class<value>``.
    """
    params = dict(transform_params or {})
    source: Mapping[Any, Any] | None = params.get("labels")
    if not source and dataset_info:
        source = dataset_info.get("labels")
    if not source:
        source = protocol_value(protocol, None, "labels") or {}
    named = {int(k): str(v) for k, v in dict(source).items()}
    return {v: named.get(v, f"class{v}") for v in range(1, int(num_classes))}


def channel_names(
    in_channels: int,
    protocol: str | Mapping[str, Any],
    transform_params: Mapping[str, Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
) -> list[str]:
    """One name per input channel: ``transform_params["channels"]``, the datalist's, or the protocol's."""
    names = list((transform_params or {}).get("channels") or [])
    if not names and dataset_info:
        names = list(dataset_info.get("channels") or [])
    if not names:
        names = list(protocol_value(protocol, None, "channels") or [])
    if len(names) != int(in_channels):
        names = names if len(names) > int(in_channels) else names + [f"channel{i}" for i in range(len(names), 99)]
        names = names[: int(in_channels)]
    return [str(n) for n in names]


def label_table(names: Mapping[int, str], labels_file: str | os.PathLike | None = None) -> LabelTable:
    """The class table of ``names``. A class that ``labels_file`` lists with the same value keeps that entry's colour
    and, when the name is the same too, its terminology and extra columns; other classes get default colours."""
    known: dict[int, Label] = {}
    if labels_file and Path(labels_file).is_file():
        try:
            known = {lab.value: lab for lab in read_label_table(labels_file)}
        except UserInputError as err:
            logger.warning(f"ignoring the colours of {labels_file}: {err}")
    table = []
    for v, n in sorted(names.items()):
        value, name, lab = int(v), str(n), known.get(int(v))
        if lab is not None and lab.name == name:
            table.append(lab)
        else:
            table.append(Label(value, name, lab.color if lab is not None else default_color(value)))
    return LabelTable(table)


# ----------------------------------------------------------------------------------------------------- Synapse
def synapse_protocol(organs: int | str = 8) -> str:
    """The protocol of a Synapse bundle: ``"synapse"`` (the papers' 8 organs, the 13 stored BTCV labels mapped onto
    them) or ``"synapse13"`` (all 13 BTCV organs as stored, ``transforms/synapse13.json``).

    Raises:
        UserInputError: ``organs`` is neither 8 nor 13.
    """
    return "synapse13" if _organs(organs) == 13 else "synapse"


def _organs(organs: int | str) -> int:
    try:
        value = int(organs)
    except (TypeError, ValueError):
        value = -1
    if value not in (8, 13):
        raise UserInputError(
            f"--organs must be 8 (the papers' Synapse protocol) or 13 (all BTCV organs), got {organs!r}"
        )
    return value


# ------------------------------------------------------------------------------------------- label-value check
def _label_paths(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)] if isinstance(value, (str, os.PathLike)) else []


def _read_label_values(path: str) -> list[int]:
    """The distinct values of a label file (NIfTI with nibabel, other formats with SimpleITK)."""
    if path.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        arr = np.asarray(nib.load(path).dataobj)  # type: ignore[attr-defined]
    else:
        import SimpleITK as sitk

        arr = sitk.GetArrayViewFromImage(sitk.ReadImage(path))
    if arr.dtype.kind == "f":
        arr = arr[np.isfinite(arr)]
    return [int(v) for v in np.unique(arr)]


class LabelCheck:
    """Refuse label values outside ``0 .. num_classes-1`` before the first training step, naming the file.

    The training and validation cases are scanned once: labels already in a ``CacheDataset``'s cache are read from
    memory (after the protocol's label mapping), the others from their files (the protocol's ``label_map`` applied
    to the stored values). File results are remembered in ``cache_file`` (keyed by path, size and modification
    time) so a resumed run does not read them again.

    Args:
        datasets: the MONAI datasets of the run (``train#dataset``, ``validate#dataset``).
        num_classes: classes of the network, background included.
        label_map: ``{stored value: trained value}`` of the protocol (``None``: values as stored).
        cache_file: JSON file remembering file scans (``None``: no memory).
        label_key: key of the label in a case.
    """

    def __init__(
        self,
        datasets: Sequence[Any],
        num_classes: int,
        label_map: Mapping[Any, Any] | None = None,
        cache_file: str | os.PathLike | None = None,
        label_key: str = "label",
    ) -> None:
        self.datasets = [d for d in datasets if d is not None]
        self.num_classes = int(num_classes)
        self.label_map = {int(k): int(v) for k, v in dict(label_map or {}).items() if not str(k).startswith("_")}
        self.cache_file = Path(cache_file) if cache_file else None
        self.label_key = label_key

    def _cached(self, dataset: Any, index: int) -> tuple[int, int] | None:
        cache = getattr(dataset, "_cache", None)
        if getattr(dataset, "hash_as_key", False) or not isinstance(cache, list) or index >= len(cache):
            return None
        item = cache[index]
        if not isinstance(item, Mapping) or self.label_key not in item:
            return None
        import torch

        lab = torch.as_tensor(item[self.label_key])
        return (int(lab.min()), int(lab.max())) if lab.numel() else (0, 0)

    def _load_memory(self) -> dict[str, Any]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_memory(self, memory: dict[str, Any]) -> None:
        if self.cache_file is None:
            return
        from ..utils import atomic_path

        try:
            with atomic_path(self.cache_file, overwrite=True) as tmp:
                tmp.write_text(json.dumps(memory), encoding="utf-8")
        except (OSError, UserInputError):  # pragma: no cover  (a read-only run folder only costs a re-scan)
            pass

    def scan(self) -> list[tuple[str, int, int]]:
        """``[(label file or case, min, max)]`` of every case (after the label mapping)."""
        memory = self._load_memory()
        fresh: dict[str, Any] = {}
        out = []
        for dataset in self.datasets:
            data = getattr(dataset, "data", None) or []
            for i, case in enumerate(data):
                if not isinstance(case, Mapping):
                    continue
                paths = _label_paths(case.get(self.label_key))
                cached = self._cached(dataset, i)
                if cached is not None:
                    out.append((paths[0] if paths else str(case.get("case", i)), *cached))
                    continue
                for path in paths:
                    try:
                        st = os.stat(path)
                    except OSError as err:
                        raise UserInputError(
                            f"label {path} of case '{case.get('case', i)}' cannot be read "
                            f"({err.strerror}); restore it or re-run `ultralight3d prepare`"
                        ) from err
                    key = f"{st.st_size}:{st.st_mtime_ns}"
                    entry = memory.get(path)
                    if not isinstance(entry, dict) or entry.get("key") != key:
                        entry = {"key": key, "values": _read_label_values(path)}
                    fresh[path] = entry
                    values = [self.label_map.get(int(v), int(v)) for v in entry["values"]] or [0]
                    out.append((path, min(values), max(values)))
        self._save_memory(fresh)
        return out

    def run(self) -> None:
        """Raise :class:`UserInputError` naming the first label file with a value outside ``0..num_classes-1``."""
        bad = [(p, lo, hi) for p, lo, hi in self.scan() if lo < 0 or hi >= self.num_classes]
        if not bad:
            return
        path, lo, hi = bad[0]
        value = hi if hi >= self.num_classes else lo
        more = f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""
        raise UserInputError(
            f"label {path} contains the value {value}{more}, but this training has num_classes={self.num_classes} "
            f"(values 0-{self.num_classes - 1}); fix the label file, map the value with --transform_params "
            f"\"{{'label_map': {{'{value}': 0}}}}\", or pass --num_classes {max(value + 1, self.num_classes)} if it "
            "is a real class"
        )

    def check_batch(self, batch: Any, iteration: int) -> None:
        """Per-step safety net: refuse a collated batch whose label holds a value outside the classes."""
        if not isinstance(batch, Mapping) or self.label_key not in batch:
            return
        import torch

        lab = batch[self.label_key]
        if not isinstance(lab, torch.Tensor) or lab.numel() == 0:
            return
        lo, hi = float(lab.min()), float(lab.max())
        if lo >= 0 and hi < self.num_classes:
            return
        meta = getattr(lab, "meta", {}) or {}
        names = meta.get("filename_or_obj")
        where = ", ".join(str(n) for n in (names if isinstance(names, (list, tuple)) else [names]) if n) or "?"
        value = int(hi if hi >= self.num_classes else lo)
        raise UserInputError(
            f"iteration {iteration}: label {where} contains the value {value}, but this training has "
            f"num_classes={self.num_classes}; fix the label file or pass --num_classes {value + 1}"
        )
