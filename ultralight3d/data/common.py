"""Pieces shared by the dataset preparers: the discovered case, protocol tables, JSON and path helpers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = ["Case", "ProtocolTables", "labels_from_json", "protocol_tables", "read_json", "rel", "resolve_output"]


@dataclass
class Case:
    """One case found by a preparer.

    Attributes:
        case: case id (unique in the dataset).
        images: one file per channel (or one 4D file).
        label: the label file (None for test cases).
        group: fold unit (subject); defaults to the case id.
        fixed_split: ``"validation"`` for protocol-defined held-out cases (Synapse).
    """

    case: str
    images: list[Path]
    label: Path | None = None
    group: str | None = None
    fixed_split: str | None = None


@dataclass(frozen=True)
class ProtocolTables:
    """The label and channel tables of one transform protocol (``transforms/<name>.json``)."""

    name: str
    labels: dict[str, str]
    channels: list[str]
    label_map: dict[str, int] | None


def protocol_tables(name: str) -> ProtocolTables:
    """Labels (``{"0": "background", ...}``, sorted by value), channels and label map (comment keys ``_*`` dropped)
    of the protocol ``name``, read through :func:`ultralight3d.transforms.get_protocol` (their one home).

    Raises:
        UserInputError: unknown protocol (the message lists the known ones).
    """
    from ..transforms import get_protocol

    proto = get_protocol(name)
    labels = {str(k): str(v) for k, v in sorted(proto["labels"].items(), key=lambda kv: int(kv[0]))}
    raw_map = proto.get("label_map") or {}
    label_map = {str(k): int(v) for k, v in raw_map.items() if not str(k).startswith("_")} or None
    return ProtocolTables(name, labels, [str(c) for c in proto["channels"]], label_map)


def labels_from_json(value: Any, source: Path) -> dict[str, str]:
    """Label table from MSD (``{"0": "background"}``) or nnU-Net v2 (``{"background": 0}``) style dicts.

    Raises:
        UserInputError: not a dict of integer class values (names ``source``).
    """
    if not isinstance(value, dict) or not value:
        raise UserInputError(f'{source}: \'labels\' must be a non-empty dict such as {{"0": "background", ...}}')
    out: dict[int, str] = {}
    for k, v in value.items():
        if str(k).lstrip("-").isdigit():
            out[int(k)] = str(v)
        elif isinstance(v, int):
            out[v] = str(k)
        else:  # nnU-Net region labels ([1, 2]) are not supported
            raise UserInputError(
                f"{source}: label entry {k!r}: {v!r} is not a class value; use integer class values "
                f"(region-based labels are not supported)"
            )
    out.setdefault(0, "background")
    return {str(k): out[k] for k in sorted(out)}


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object (e.g. an archive's ``dataset.json``).

    Raises:
        UserInputError: invalid JSON or not an object (names the file and ``what`` to fix).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path} is not valid JSON ({err}); fix or re-extract the {what}") from err
    if not isinstance(data, dict):
        raise UserInputError(f"{path} is not a JSON object; fix or re-extract the {what}")
    return data


def resolve_output(root: Path, output: str | os.PathLike | None) -> Path:
    """Datalist path: ``output`` (a file, or a folder -> ``<folder>/datalist.json``), default
    ``<root>/datalist.json``."""
    if output is None:
        return root / "datalist.json"
    out = Path(output).expanduser()
    if out.is_dir() or str(output).endswith(("/", os.sep)):
        return out / "datalist.json"
    return out


def rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX separators)."""
    # abspath, not resolve: keep symlinked dataset folders as the user laid them out
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()
