"""Which prediction goes with which reference, and what the classes are called.

:func:`pair_files` matches two files, or two folders by case id (``<case>_seg.nii.gz`` with ``<case>.nii.gz``; when
no id matches, ids are compared without the letters every file of a folder starts with, so BTCV's
``img0001_seg.nii.gz`` meets ``label0001.nii.gz``). :func:`resolve_class_names` finds the class table.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..labels import LabelTable
from .evaluate import find_label_files, read_label_map
from .remap import remap_labels

__all__ = ["pair_files", "resolve_class_names"]

logger = logging.getLogger(__name__)

_LEADING_LETTERS = re.compile(r"^([A-Za-z]+)_?(?=\d)")


def _strip_shared_prefix(ids: Mapping[str, Path]) -> dict[str, Path] | None:
    """``ids`` keyed without the run of letters every id starts with (``img0001`` -> ``0001``), None if they differ."""
    prefixes = {m.group(0) if (m := _LEADING_LETTERS.match(cid)) else None for cid in ids}
    prefix = prefixes.pop() if len(prefixes) == 1 else None
    if prefix is None:
        return None
    return {cid[len(prefix) :]: path for cid, path in ids.items()}


def pair_files(pred: str | Path, label: str | Path) -> tuple[list[Path], list[Path]]:
    """Pair predictions with references: two files, or two folders matched by case id (``_seg`` postfix ignored).

    Raises:
        UserInputError: a prediction has no reference, or nothing matches.
    """
    pred, label = Path(pred), Path(label)
    if pred.is_file() and label.is_file():
        return [pred], [label]
    if pred.is_dir() != label.is_dir() or not pred.exists() or not label.exists():
        for p in (pred, label):
            if not p.exists():
                raise UserInputError(f"{p} does not exist; check the path")
        raise UserInputError(f"prediction {pred} and reference {label} must both be files or both be folders")
    preds, labels = find_label_files(pred), find_label_files(label)
    if not set(preds) & set(labels):
        p2, l2 = _strip_shared_prefix(preds), _strip_shared_prefix(labels)
        if p2 is not None and l2 is not None and set(p2) & set(l2):
            logger.info(
                "Case ids matched without their folder prefixes (e.g. %s <-> %s)",
                preds[sorted(preds)[0]].name,
                labels[sorted(labels)[0]].name,
            )
            preds, labels = p2, l2
    missing = sorted(set(preds) - set(labels))
    if missing:
        raise UserInputError(
            f"no reference label in {label} for predicted cases {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}; check that the file names match "
            "(<case>_seg.nii.gz is matched with <case>.nii.gz)"
        )
    unpredicted = sorted(set(labels) - set(preds))
    if unpredicted:
        logger.warning("%d labelled cases have no prediction and are not scored: %s", len(unpredicted), unpredicted[:5])
    cases = sorted(preds)
    return [preds[c] for c in cases], [labels[c] for c in cases]


def _parse_classes(text: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition(":")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise UserInputError(f"--classes expects 'value:name,...' such as '1:PZ,2:TZ', got '{text}'")
        names[int(value)] = name.strip()
    return names


def _names_from_dataset_json(folder: Path) -> dict[int, str] | None:
    for candidate in (
        folder / "dataset.json",
        folder.parent / "dataset.json",
        folder / "datalist.json",
        folder.parent / "datalist.json",
    ):
        if not candidate.is_file():
            continue
        try:
            labels = json.loads(candidate.read_text(encoding="utf-8")).get("labels")
        except (json.JSONDecodeError, AttributeError):
            labels = None
        if isinstance(labels, dict) and labels:
            # MSD dataset.json maps "value": "name"; the newer nnU-Net v2 form maps "name": value
            if all(str(k).isdigit() for k in labels):
                names = {int(k): str(v) for k, v in labels.items()}
            else:
                names = {int(v): str(k) for k, v in labels.items() if not isinstance(v, list)}
            names.pop(0, None)
            if names:
                logger.info("Class names from %s: %s", candidate, names)
                return names
    return None


def resolve_class_names(
    labels_csv: str | Path | None,
    classes: str | None,
    label_paths: list[Path],
    protocol: str | None = None,
    table: LabelTable | None = None,
    label_map: Mapping[Any, Any] | None = None,
) -> dict[int, str]:
    """The class table, from the first of: ``labels_csv`` (a ``labels.csv``), ``classes`` (``"1:PZ,2:TZ"``),
    ``table`` (a bundle's or model card's), the protocol's labels, a ``dataset.json`` beside the references, or the
    values found in the references (after ``label_map``), named ``label <value>``.

    Raises:
        UserInputError: unreadable table, bad ``classes`` text, or references holding only background.
    """
    if labels_csv:
        from ..labels import read_label_table

        return read_label_table(labels_csv).names
    if classes:
        return _parse_classes(classes)
    if table is not None and len(table):
        return table.names
    if protocol:
        from ..transforms import get_protocol

        names = {int(k): str(v) for k, v in get_protocol(protocol)["labels"].items() if int(k) != 0}
        if names:
            return names
    folder = label_paths[0].parent
    found = _names_from_dataset_json(folder) if label_map is None else None
    if found:
        return found
    values: set[int] = set()
    for path in label_paths:
        values |= {int(v) for v in np.unique(remap_labels(read_label_map(path)[0], label_map))}
    values.discard(0)
    if not values:
        raise UserInputError(f"the label maps in {folder} hold only background; pass --classes or --labels")
    logger.info(
        "No class table given: scoring the label values found, %s (pass --labels labels.csv for names)", sorted(values)
    )
    return {v: f"label {v}" for v in sorted(values)}
