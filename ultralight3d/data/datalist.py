"""The datalist contract: a MONAI decathlon-style JSON listing training/validation/test cases with fixed folds.

Layout (paths relative to the folder holding the JSON; ``image`` may be a list of files, one per channel)::

    {"name": str, "description": str,
     "protocol": "generic",                     # transform protocol (transforms/<protocol>.json) the data are for
     "labels": {"0": "background", "1": "...", ...}, "num_classes": int,   # class table, max value + 1
     "channels": ["T2", "ADC"], "in_channels": 2,
     "modality": {"0": "T2", "1": "ADC"},       # MSD spelling of the channel names
     "label_map": {"0": 0, "1": 7, ...},        # optional: original label value -> training value (Synapse 8-organ)
     "num_folds": 5, "fold_seed": 20240725, "fold_method": str,
     "training": [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz", "fold": 0, "case": "a"}, ...],
     "validation": [...],                       # optional fixed held-out set
     "test": [{"image": "imagesTs/b.nii.gz", "case": "b"}, ...]}

MONAI's :func:`monai.data.load_decathlon_datalist` reads it as it is; :func:`datalist_config` returns the keys a
bundle configures itself from. Folds are the same for every user (:func:`assign_folds`): case (or subject) ids are
sorted, shuffled with ``random.Random(FOLD_SEED)`` and dealt round-robin; the seed and the method are recorded.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = [
    "CONFIG_KEYS",
    "FOLD_METHOD",
    "FOLD_SEED",
    "NUM_FOLDS",
    "assign_folds",
    "datalist_config",
    "label_mapping",
    "load_datalist",
    "load_section",
    "read_datalist_json",
    "resolve_item",
]

#: Default number of cross-validation folds.
NUM_FOLDS = 5
#: Default fold shuffle seed (keep it to get the same folds as everyone else).
FOLD_SEED = 20240725
FOLD_METHOD = "sorted group ids, random.Random(fold_seed).shuffle, dealt round-robin into num_folds folds"
#: Datalist keys a bundle configures itself from (see :func:`datalist_config`).
CONFIG_KEYS = ("protocol", "labels", "num_classes", "channels", "in_channels", "label_map")
_PATH_KEYS = ("image", "label")


def assign_folds(groups: Iterable[str], num_folds: int = NUM_FOLDS, seed: int = FOLD_SEED) -> dict[str, int]:
    """Deterministic fold per group id: sorted, shuffled with ``random.Random(seed)``, dealt round-robin.

    Args:
        groups: case or subject ids (repeats allowed: cases of one subject share a fold).
        num_folds: number of folds.
        seed: shuffle seed, recorded in the datalist.

    Returns:
        ``{group: fold}`` with folds in ``0..num_folds-1`` whose sizes differ by at most one.
    """
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    return {g: i % num_folds for i, g in enumerate(unique)}


def read_datalist_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and sanity-check a datalist JSON (no path resolution).

    Args:
        path: the datalist file, or a folder holding ``datalist.json``.

    Returns:
        The parsed dictionary.

    Raises:
        UserInputError: missing file, invalid JSON, or a structure that is not a datalist.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "datalist.json"
    if not path.is_file():
        raise UserInputError(
            f"datalist {path} not found; create it with `ultralight3d prepare msd-prostate|feta|synapse|folder "
            f"--root <dataset folder>` or pass the path of an existing datalist JSON"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(
            f"datalist {path} is not valid JSON ({err}); recreate it with `ultralight3d prepare ... --overwrite`"
        ) from err
    if not isinstance(data, dict) or not isinstance(data.get("training"), list):
        raise UserInputError(
            f"datalist {path} has no 'training' list; it must be a MONAI decathlon-style datalist "
            f"(recreate it with `ultralight3d prepare ... --overwrite`)"
        )
    for section in ("training", "validation", "test"):
        items = data.get(section, [])
        if not isinstance(items, list):
            raise UserInputError(f"datalist {path}: '{section}' must be a list of cases; recreate the datalist")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item:
                raise UserInputError(
                    f"datalist {path}: {section} entry {i} has no 'image'; every case needs an 'image' path"
                )
            if section != "test" and "label" not in item:
                raise UserInputError(
                    f"datalist {path}: {section} entry {i} ({item.get('case', item['image'])}) has no 'label'; "
                    f"training and validation cases need a label file"
                )
    return data


def _case_key(item: dict[str, Any]) -> str:
    """Identity of a case: its ``case`` id, else its image path(s)."""
    if "case" in item:
        return str(item["case"])
    image = item["image"]
    return "|".join(image) if isinstance(image, (list, tuple)) else str(image)


def resolve_item(item: dict[str, Any], base_dir: str | os.PathLike) -> dict[str, Any]:
    """Copy of ``item`` with its ``image``/``label`` paths (strings or lists) made absolute against ``base_dir``."""
    base = Path(base_dir)
    out = dict(item)
    for key in _PATH_KEYS:
        if key not in out:
            continue
        value = out[key]
        if isinstance(value, (list, tuple)):
            out[key] = [str((base / v).resolve()) if not os.path.isabs(v) else str(v) for v in value]
        else:
            out[key] = str((base / value).resolve()) if not os.path.isabs(value) else str(value)
    return out


def load_datalist(
    path: str | os.PathLike, fold: int | None = 0, base_dir: str | os.PathLike | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a datalist into (train, val) cases with absolute paths.

    Args:
        path: datalist JSON (or a folder holding ``datalist.json``).
        fold: cross-validation fold held out for validation (0-4). ``None`` validates on the fixed ``validation``
            section and trains on every ``training`` case that is not also in ``validation``.
        base_dir: folder the relative paths refer to; defaults to the folder holding the JSON.

    Returns:
        ``(train, val)``: lists of dicts with absolute ``image`` (str or list of str) and ``label`` paths plus the
        other keys of each entry (``case``, ``fold``...).

    Raises:
        UserInputError: missing/invalid datalist, a fold that does not exist, entries without a fold, or an empty
            split.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "datalist.json"
    data = read_datalist_json(path)
    base = Path(base_dir).expanduser() if base_dir is not None else path.parent
    training = data["training"]
    if fold is None:
        validation = data.get("validation") or []
        if not validation:
            raise UserInputError(
                f"datalist {path} has no 'validation' section; pass a fold (0-{NUM_FOLDS - 1}) instead of "
                f"fold=None / --fold all"
            )
        # A fixed validation set may repeat training cases (MSD Prostate: the fold-0 cases); never train on them.
        held_out = {_case_key(item) for item in validation}
        train_items = [item for item in training if _case_key(item) not in held_out]
        val_items = list(validation)
    else:
        try:
            fold = int(fold)
        except (TypeError, ValueError) as err:
            raise UserInputError(f"fold must be an integer 0-{NUM_FOLDS - 1} or None, got {fold!r}") from err
        missing = [item.get("case", item["image"]) for item in training if "fold" not in item]
        if missing:
            raise UserInputError(
                f"datalist {path}: {len(missing)} training case(s) have no 'fold' (e.g. {missing[0]}); recreate it "
                f"with `ultralight3d prepare ... --overwrite` or use fold=None with a 'validation' section"
            )
        folds = sorted({int(item["fold"]) for item in training})
        if fold not in folds:
            raise UserInputError(f"fold {fold} does not exist in datalist {path} (folds present: {folds})")
        train_items = [item for item in training if int(item["fold"]) != fold]
        val_items = [item for item in training if int(item["fold"]) == fold]
    if not train_items:
        raise UserInputError(f"datalist {path}: no training cases left for fold {fold}; add more cases")
    return [resolve_item(i, base) for i in train_items], [resolve_item(i, base) for i in val_items]


def load_section(
    path: str | os.PathLike, section: str = "test", base_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """One section (``"training"``, ``"validation"`` or ``"test"``) of a datalist with absolute paths.

    Raises:
        UserInputError: missing/invalid datalist or an unknown section name.
    """
    if section not in ("training", "validation", "test"):
        raise UserInputError(f"unknown datalist section {section!r}; use 'training', 'validation' or 'test'")
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "datalist.json"
    data = read_datalist_json(path)
    base = Path(base_dir).expanduser() if base_dir is not None else path.parent
    return [resolve_item(item, base) for item in data.get(section) or []]


def label_mapping(datalist: str | os.PathLike | dict[str, Any]) -> tuple[list[int], list[int]] | None:
    """``(orig_labels, target_labels)`` for :class:`monai.transforms.MapLabelValued`, or ``None`` without a map.

    A datalist may carry ``"label_map": {"original value": new value}`` (Synapse 8-organ protocol: the 5 organs
    outside the protocol map to 0). Values missing from the map are left unchanged by ``MapLabelValued``, so the
    preparers list every original value.
    """
    data = datalist if isinstance(datalist, dict) else read_datalist_json(datalist)
    mapping = data.get("label_map")
    if not mapping:
        return None
    pairs = sorted((int(k), int(v)) for k, v in mapping.items())
    return [a for a, _ in pairs], [b for _, b in pairs]


def datalist_config(datalist: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """What a bundle needs from a datalist written by ``ultralight3d prepare``: :data:`CONFIG_KEYS`.

    Returns:
        ``{"protocol": str | None, "labels": {"0": "background", ...}, "num_classes": int, "channels": [str],
        "in_channels": int, "label_map": {str: int} | None}``; for older datalists without ``num_classes`` /
        ``channels`` / ``in_channels`` these are derived from ``labels`` / ``modality``.

    Raises:
        UserInputError: missing/invalid datalist, or one without a ``labels`` table.
    """
    data = datalist if isinstance(datalist, dict) else read_datalist_json(datalist)
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise UserInputError(
            "the datalist has no 'labels' table; recreate it with `ultralight3d prepare ... --overwrite`"
        )
    labels = {str(k): str(v) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
    channels = data.get("channels")
    if not channels:
        modality = data.get("modality") or {"0": "image"}
        channels = [str(modality[k]) for k in sorted(modality, key=int)]
    return {
        "protocol": data.get("protocol"),
        "labels": labels,
        "num_classes": int(data.get("num_classes") or max(int(k) for k in labels) + 1),
        "channels": [str(c) for c in channels],
        "in_channels": int(data.get("in_channels") or len(channels)),
        "label_map": data.get("label_map") or None,
    }
