"""Label tables: a bundle's ``models/labels.csv`` (Slicer CSV colour table = Auto3DSeg labels.csv) and ``.ctbl``.

The CSV header is ``LabelValue,Name,Color_R,Color_G,Color_B,Color_A`` with 0-255 integers; background (0) is left out.
Extra columns (DICOM terminology triplets) are kept in :attr:`Label.extra` and ignored otherwise.

Example::

    >>> table = read_label_table("bundles/prostate_ultralight_unet3d/models/labels.csv")
    >>> [(lab.value, lab.name) for lab in table]
    [(1, 'peripheral zone'), (2, 'transition zone')]
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserInputError
from .utils import atomic_path

__all__ = [
    "LABEL_CSV_HEADER",
    "Label",
    "LabelTable",
    "read_label_table",
    "write_label_csv",
    "write_ctbl",
    "label_csv_text",
    "ctbl_text",
    "default_color",
]

LABEL_CSV_HEADER = ["LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A"]

# Distinct colours (Slicer GenericAnatomyColors-like) used when a table gives none.
_PALETTE = [
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79), (221, 130, 101),
    (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70),
    (200, 200, 235), (250, 250, 210), (244, 214, 49), (0, 151, 206), (216, 101, 79), (183, 156, 220),
]


def default_color(value: int) -> tuple[int, int, int, int]:
    """A stable RGBA colour for label ``value`` (>= 1)."""
    r, g, b = _PALETTE[(int(value) - 1) % len(_PALETTE)]
    return (r, g, b, 255)


@dataclass(frozen=True)
class Label:
    """One foreground label: integer value, display name, RGBA colour (0-255)."""

    value: int
    name: str
    color: tuple[int, int, int, int]
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def color_float(self) -> tuple[float, float, float]:
        """RGB in 0-1 (what ``.seg.nrrd`` stores)."""
        return tuple(round(c / 255.0, 6) for c in self.color[:3])  # type: ignore[return-value]


class LabelTable(Sequence[Label]):
    """Ordered foreground labels (background 0 excluded)."""

    def __init__(self, labels: Sequence[Label]) -> None:
        values = [lab.value for lab in labels]
        if len(set(values)) != len(values):
            raise UserInputError(f"label table has duplicate label values {values}; give each label one row")
        self._labels = sorted(labels, key=lambda lab: lab.value)

    @classmethod
    def from_names(cls, names: dict[int, str] | Sequence[str]) -> LabelTable:
        """Build from ``{value: name}`` or a list of names for values 1..n (a ``"0"`` entry is dropped)."""
        items = names.items() if isinstance(names, dict) else enumerate(names, start=1)
        labs = [Label(int(v), str(n), default_color(int(v))) for v, n in items if int(v) != 0]
        return cls(labs)

    @classmethod
    def generic(cls, num_classes: int) -> LabelTable:
        """``label_1`` ... ``label_{num_classes-1}`` with default colours (``num_classes`` includes background)."""
        return cls([Label(v, f"label_{v}", default_color(v)) for v in range(1, int(num_classes))])

    def __getitem__(self, index):  # type: ignore[override]
        return self._labels[index]

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[Label]:
        return iter(self._labels)

    def __repr__(self) -> str:
        return f"LabelTable({[(lab.value, lab.name) for lab in self._labels]})"

    @property
    def values(self) -> list[int]:
        return [lab.value for lab in self._labels]

    @property
    def names(self) -> dict[int, str]:
        return {lab.value: lab.name for lab in self._labels}

    def get(self, value: int) -> Label:
        """The label with ``value``; unknown values get a generic name and colour."""
        for lab in self._labels:
            if lab.value == int(value):
                return lab
        return Label(int(value), f"label_{int(value)}", default_color(int(value)))


def read_label_table(path: str | os.PathLike) -> LabelTable:
    """Read a ``labels.csv`` (``LabelValue,Name,Color_R,Color_G,Color_B,Color_A``; colour columns optional).

    Raises:
        UserInputError: missing file, missing ``LabelValue``/``Name`` columns, or a non-integer value/colour.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"label table {path} not found; add models/labels.csv to the bundle "
                             f"(header {','.join(LABEL_CSV_HEADER)})")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "LabelValue" not in fields or "Name" not in fields:
            raise UserInputError(f"label table {path} has columns {fields}; it needs the header "
                                 f"{','.join(LABEL_CSV_HEADER)}")
        labels = []
        for row_no, row in enumerate(reader, start=2):
            try:
                value = int(row["LabelValue"])
                rgba = [int(row[k]) if row.get(k) not in (None, "") else None
                        for k in ("Color_R", "Color_G", "Color_B", "Color_A")]
            except ValueError as err:
                raise UserInputError(f"label table {path} line {row_no}: {err}; label values and colours must be "
                                     "integers (colours 0-255)") from err
            if value == 0:
                continue
            color = default_color(value) if any(c is None for c in rgba[:3]) else (
                rgba[0], rgba[1], rgba[2], 255 if rgba[3] is None else rgba[3])
            if any(not 0 <= c <= 255 for c in color):
                raise UserInputError(f"label table {path} line {row_no}: colour {color} outside 0-255")
            extra = {k: v for k, v in row.items() if k not in LABEL_CSV_HEADER and k is not None}
            labels.append(Label(value, row["Name"].strip(), color, extra))  # type: ignore[arg-type]
    return LabelTable(labels)


def label_csv_text(table: LabelTable) -> str:
    """Content of the Slicer CSV colour table (background left out)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LABEL_CSV_HEADER)
    for lab in table:
        writer.writerow([lab.value, lab.name, *lab.color])
    return buf.getvalue()


def ctbl_text(table: LabelTable) -> str:
    """Content of an old-style Slicer ``.ctbl`` (``index name R G B A``, underscores for spaces, background row 0)."""
    lines = ["# Color table file", f"# {len(table) + 1} values", "0 background 0 0 0 0"]
    for lab in table:
        lines.append(f"{lab.value} {'_'.join(lab.name.split())} {lab.color[0]} {lab.color[1]} {lab.color[2]} "
                     f"{lab.color[3]}")
    return "\n".join(lines) + "\n"


def write_label_csv(table: LabelTable, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the Slicer CSV colour table (background left out)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(label_csv_text(table), encoding="utf-8")
    return Path(path)


def write_ctbl(table: LabelTable, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an old-style Slicer ``.ctbl`` (``index name R G B A``, underscores for spaces, background row 0)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(ctbl_text(table), encoding="utf-8")
    return Path(path)
