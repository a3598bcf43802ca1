"""Label tables: a bundle's ``models/labels.csv`` (Slicer CSV colour table = Auto3DSeg labels.csv) and ``.ctbl``.

The CSV header is ``LabelValue,Name,Color_R,Color_G,Color_B,Color_A`` with 0-255 integers; background (0) is left out.
A label may carry DICOM terminology (:class:`Terminology`: SNOMED CT category, type, type modifier such as
laterality, anatomic region). It is read from either column set Slicer uses and, when any label has one, written in
both, so one file serves both readers:

* the Slicer colour table (``vtkMRMLColorTableStorageNode``): ``Category_CodingScheme``, ``Category_CodeValue``,
  ``Category_CodeMeaning``, then ``Type_*``, ``TypeModifier_*``, ``Region_*``, ``RegionModifier_*``;
* the MONAI Auto3DSeg / TotalSegmentator ``labels.csv``:
  ``SegmentedPropertyCategoryCodeSequence.CodingSchemeDesignator``, ``….CodeValue``, ``….CodeMeaning``, then
  ``SegmentedPropertyTypeCodeSequence.*``, ``SegmentedPropertyTypeModifierCodeSequence.*``,
  ``AnatomicRegionSequence.*``, ``AnatomicRegionModifierSequence.*``.

Other extra columns are kept in :attr:`Label.extra` and written back unchanged. A protocol
(``transforms/<protocol>.json``) declares its classes' terminology under ``terminology``
(:meth:`LabelTable.from_protocol`).

Example::

    >>> table = read_label_table("bundles/prostate_ultralight_unet3d/models/labels.csv")
    >>> [(lab.value, lab.name) for lab in table]
    [(1, 'peripheral zone'), (2, 'transition zone')]
    >>> LabelTable.from_protocol("synapse").get(3).terminology.type_modifier    # left kidney
    ('SCT', '7771000', 'Left')
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserInputError
from .utils import atomic_path

__all__ = [
    "LABEL_CSV_HEADER",
    "SLICER_TERMINOLOGY_COLUMNS",
    "DICOM_TERMINOLOGY_COLUMNS",
    "SLICER_GENERAL_ANATOMY",
    "DICOM_MASTER_LIST",
    "ANATOMIC_CONTEXT",
    "Code",
    "Terminology",
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

#: Slicer terminology context names (``Modules/Loadable/Terminologies/Resources`` of Slicer/Slicer).
SLICER_GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER_LIST = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

#: (coding scheme designator, code value, code meaning), e.g. ``("SCT", "10200004", "Liver")``.
Code = tuple[str, str, str]

# terminology part -> (Slicer colour-table column prefix, DICOM attribute name used by Auto3DSeg)
_PARTS = {
    "category": ("Category", "SegmentedPropertyCategoryCodeSequence"),
    "type": ("Type", "SegmentedPropertyTypeCodeSequence"),
    "type_modifier": ("TypeModifier", "SegmentedPropertyTypeModifierCodeSequence"),
    "region": ("Region", "AnatomicRegionSequence"),
    "region_modifier": ("RegionModifier", "AnatomicRegionModifierSequence"),
}
_SLICER_FIELDS = ("CodingScheme", "CodeValue", "CodeMeaning")
_DICOM_FIELDS = ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")
SLICER_TERMINOLOGY_COLUMNS = [f"{p}_{f}" for p, _ in _PARTS.values() for f in _SLICER_FIELDS]
DICOM_TERMINOLOGY_COLUMNS = [f"{d}.{f}" for _, d in _PARTS.values() for f in _DICOM_FIELDS]
_TERMINOLOGY_COLUMNS = set(SLICER_TERMINOLOGY_COLUMNS) | set(DICOM_TERMINOLOGY_COLUMNS)
# keys of a protocol's / model card's terminology dict -> Terminology fields
_JSON_KEYS = {
    "category": "category",
    "type": "type",
    "modifier": "type_modifier",
    "type_modifier": "type_modifier",
    "region": "region",
    "region_modifier": "region_modifier",
}

# Distinct colours (Slicer GenericAnatomyColors-like) used when a table gives none.
_PALETTE = [
    (128, 174, 128),
    (241, 214, 145),
    (177, 122, 101),
    (111, 184, 210),
    (216, 101, 79),
    (221, 130, 101),
    (144, 238, 144),
    (192, 104, 88),
    (220, 245, 20),
    (78, 63, 0),
    (255, 250, 220),
    (230, 220, 70),
    (200, 200, 235),
    (250, 250, 210),
    (244, 214, 49),
    (0, 151, 206),
    (216, 101, 79),
    (183, 156, 220),
]


def default_color(value: int) -> tuple[int, int, int, int]:
    """A stable RGBA colour for label ``value`` (>= 1)."""
    r, g, b = _PALETTE[(int(value) - 1) % len(_PALETTE)]
    return (r, g, b, 255)


def _code(value: Any, what: str, source: str) -> Code | None:
    """``["SCT", "10200004", "Liver"]`` (or a tuple) -> a :data:`Code`; None/empty -> None."""
    if value is None or (isinstance(value, (list, tuple)) and not any(str(v).strip() for v in value)):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(str(v).strip() for v in value):
        raise UserInputError(
            f"{source}: terminology '{what}' must be [coding scheme, code value, code meaning] such as "
            f'["SCT", "10200004", "Liver"], got {value!r}'
        )
    return (str(value[0]).strip(), str(value[1]).strip(), str(value[2]).strip())


@dataclass(frozen=True)
class Terminology:
    """DICOM coded terminology of one segment, as DICOM-SEG, Slicer's ``.seg.nrrd`` and colour tables store it.

    Attributes:
        category: segmented property category (``("SCT", "123037004", "Anatomical Structure")``).
        type: segmented property type (``("SCT", "64033007", "Kidney")``).
        type_modifier: e.g. laterality ``("SCT", "7771000", "Left")``.
        region: anatomic region (when the category is not an anatomical structure, e.g. a lesion's organ).
        region_modifier: modifier of ``region``.
        context: Slicer terminology context holding the type (None: unknown, e.g. read from a CSV table).
        region_context: Slicer anatomic context.
    """

    category: Code
    type: Code
    type_modifier: Code | None = None
    region: Code | None = None
    region_modifier: Code | None = None
    context: str | None = SLICER_GENERAL_ANATOMY
    region_context: str | None = ANATOMIC_CONTEXT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "terminology") -> Terminology:
        """From the JSON form of a protocol or model card: ``{"category": [scheme, value, meaning], "type": [...],
        "modifier": [...], "region": [...], "region_modifier": [...], "context": "..."}`` (``category`` and
        ``type`` required).

        Raises:
            UserInputError: a missing category/type, a malformed code or an unknown key.
        """
        unknown = set(data) - set(_JSON_KEYS) - {"context", "region_context"}
        if unknown:
            raise UserInputError(
                f"{source}: unknown terminology key(s) {sorted(unknown)}; use category, type, modifier, region, "
                "region_modifier, context"
            )
        codes = {attr: _code(data.get(key), key, source) for key, attr in _JSON_KEYS.items() if key in data}
        category, type_ = codes.pop("category", None), codes.pop("type", None)
        if category is None or type_ is None:
            raise UserInputError(f"{source}: terminology needs both 'category' and 'type' codes")
        return cls(
            category,
            type_,
            context=str(data.get("context") or SLICER_GENERAL_ANATOMY),
            region_context=str(data.get("region_context") or ANATOMIC_CONTEXT),
            **codes,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form read by :meth:`from_dict`."""
        out: dict[str, Any] = {"category": list(self.category), "type": list(self.type)}
        for key, attr in (("modifier", "type_modifier"), ("region", "region"), ("region_modifier", "region_modifier")):
            if getattr(self, attr) is not None:
                out[key] = list(getattr(self, attr))
        if self.context:
            out["context"] = self.context
        return out

    def slicer_entry(self) -> str:
        """Slicer's ``TerminologyEntry`` string (``.seg.nrrd`` ``SegmentN_Tags``): ``context~category~type~modifier~
        anatomic context~region~region modifier``, codes as ``scheme^value^meaning`` (``^^`` when absent)."""

        def j(code: Code | None) -> str:
            return "^".join(code) if code else "^^"

        return "~".join(
            [
                self.context or "",
                j(self.category),
                j(self.type),
                j(self.type_modifier),
                self.region_context or "",
                j(self.region),
                j(self.region_modifier),
            ]
        )

    def slicerio(self) -> dict[str, Any]:
        """The ``terminology`` dict of a slicerio segment (written by ``slicerio.write_segmentation``)."""
        out: dict[str, Any] = {
            "contextName": self.context or "",
            "category": list(self.category),
            "type": list(self.type),
        }
        if self.type_modifier:
            out["typeModifier"] = list(self.type_modifier)
        out["anatomicContextName"] = self.region_context or ""
        if self.region:
            out["anatomicRegion"] = list(self.region)
            if self.region_modifier:
                out["anatomicRegionModifier"] = list(self.region_modifier)
        return out

    def columns(self) -> dict[str, str]:
        """Both CSV column sets (Slicer colour table and Auto3DSeg ``labels.csv``), empty strings where absent."""
        out: dict[str, str] = {}
        for attr, (slicer, dicom) in _PARTS.items():
            code: Code | None = getattr(self, attr)
            for i, (sf, df) in enumerate(zip(_SLICER_FIELDS, _DICOM_FIELDS)):
                out[f"{slicer}_{sf}"] = out[f"{dicom}.{df}"] = code[i] if code else ""
        return out

    @classmethod
    def from_columns(cls, row: Mapping[str, Any]) -> Terminology | None:
        """From a CSV row with either column set (Slicer's are preferred when both are filled); None when the row has
        no complete category and type (a code needs all three of scheme, value and meaning)."""
        for style in ("slicer", "dicom"):
            codes: dict[str, Code | None] = {}
            for attr, (slicer, dicom) in _PARTS.items():
                names = (
                    [f"{slicer}_{f}" for f in _SLICER_FIELDS]
                    if style == "slicer"
                    else [f"{dicom}.{f}" for f in _DICOM_FIELDS]
                )
                parts = [str(row.get(n) or "").strip() for n in names]
                codes[attr] = (parts[0], parts[1], parts[2]) if all(parts) else None  # partly filled: not a code
            category, type_ = codes.pop("category"), codes.pop("type")
            if category is not None and type_ is not None:
                # a CSV table does not store the context (Slicer's own reader leaves it empty too)
                return cls(category, type_, context=None, **codes)  # type: ignore[arg-type]
        return None

    def same_codes(self, other: Terminology | None) -> bool:
        """True when ``other`` has the same category/type/modifier/region codes (contexts ignored)."""
        if other is None:
            return False

        def key(t: Terminology) -> tuple:
            return tuple(None if c is None else c[:2] for c in (t.category, t.type, t.type_modifier, t.region))

        return key(self) == key(other)


@dataclass(frozen=True)
class Label:
    """One foreground label: integer value, display name, RGBA colour (0-255), optional terminology and extra
    columns."""

    value: int
    name: str
    color: tuple[int, int, int, int]
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    terminology: Terminology | None = field(default=None, compare=False)

    @property
    def color_float(self) -> tuple[float, float, float]:
        """RGB in 0-1 (what ``.seg.nrrd`` stores)."""
        return tuple(round(c / 255.0, 6) for c in self.color[:3])  # type: ignore[return-value]

    @property
    def safe_name(self) -> str:
        """The name as a file-name part: ``"left kidney"`` -> ``"left_kidney"``."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or f"label_{self.value}"


def _key(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", str(text).strip().lower())


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
    def from_protocol(cls, protocol: str | Mapping[str, Any]) -> LabelTable:
        """The class table of a protocol (``transforms/<protocol>.json``): its ``labels`` with default colours and,
        for the classes it lists under ``terminology``, their codes.

        Raises:
            UserInputError: unknown protocol or a malformed terminology entry.
        """
        proto = _protocol(protocol)
        source = f"protocol {proto.get('name', '?')}"
        terms = {
            int(k): Terminology.from_dict(v, f"{source} terminology of class {k}")
            for k, v in (proto.get("terminology") or {}).items()
            if not str(k).startswith("_")
        }
        names = {int(k): str(v) for k, v in proto["labels"].items() if int(k) != 0}
        unknown = sorted(set(terms) - set(names))
        if unknown:
            raise UserInputError(f"{source}: terminology given for class(es) {unknown} that are not in its labels")
        return cls([Label(v, n, default_color(v), terminology=terms.get(v)) for v, n in sorted(names.items())])

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], source: str = "label list") -> LabelTable:
        """Build from ``[{"value": 1, "name": "liver", "color": [r, g, b, a], "terminology": {...}}, ...]`` (the
        ``labels`` of a model card; a background entry (value 0) is dropped, a missing colour gets the default, the
        optional ``terminology`` is read by :meth:`Terminology.from_dict`, other keys go to ``extra``).

        Raises:
            UserInputError: an entry without an integer ``value`` or without a ``name``.
        """
        labs = []
        for rec in records:
            try:
                value, name = int(rec["value"]), str(rec["name"])
            except (KeyError, TypeError, ValueError) as err:
                raise UserInputError(
                    f"{source}: label entry {dict(rec)} needs an integer 'value' and a 'name'"
                ) from err
            if value == 0:
                continue
            rgba = [int(c) for c in (rec.get("color") or [])]
            color = (*rgba[:3], rgba[3] if len(rgba) > 3 else 255) if len(rgba) >= 3 else default_color(value)
            term = rec.get("terminology")
            terminology = Terminology.from_dict(term, f"{source} label {value}") if isinstance(term, Mapping) else None
            extra = {str(k): str(v) for k, v in rec.items() if k not in ("value", "name", "color", "terminology")}
            if terminology is None:
                terminology = Terminology.from_columns(extra)
            if terminology is not None:
                extra = {k: v for k, v in extra.items() if k not in _TERMINOLOGY_COLUMNS}
            labs.append(Label(value, name, color, extra, terminology))  # type: ignore[arg-type]
        return cls(labs)

    def to_records(self, background: bool = True) -> list[dict[str, Any]]:
        """The table as model-card ``labels`` (inverse of :meth:`from_records`), background first when asked."""
        out: list[dict[str, Any]] = [{"value": 0, "name": "background", "color": [0, 0, 0, 0]}] if background else []
        for lab in self:
            rec: dict[str, Any] = {"value": lab.value, "name": lab.name, "color": list(lab.color), **lab.extra}
            if lab.terminology is not None:
                rec["terminology"] = lab.terminology.to_dict()
            out.append(rec)
        return out

    @classmethod
    def generic(cls, num_classes: int) -> LabelTable:
        """``label_1`` ... ``label_{num_classes-1}`` with default colours (``num_classes`` includes background)."""
        return cls([Label(v, f"label_{v}", default_color(v)) for v in range(1, int(num_classes))])

    def __getitem__(self, index):
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

    @property
    def has_terminology(self) -> bool:
        return any(lab.terminology is not None for lab in self._labels)

    def get(self, value: int) -> Label:
        """The label with ``value``; unknown values get a generic name and colour."""
        for lab in self._labels:
            if lab.value == int(value):
                return lab
        return Label(int(value), f"label_{int(value)}", default_color(int(value)))

    def resolve(self, classes: Iterable[str | int], option: str = "--roi-subset") -> list[int]:
        """Label values of ``classes``: names (case-insensitive; ``_``/``-`` match spaces, ``left_kidney``) or
        integer values, in the order given, without duplicates.

        Raises:
            UserInputError: a class that is not in the table (the message lists the known ones).
        """
        by_name = {_key(lab.name): lab.value for lab in self._labels}
        out: list[int] = []
        for item in classes:
            text = str(item).strip()
            value = by_name.get(_key(text))
            if value is None and re.fullmatch(r"\d+", text) and int(text) in self.values:
                value = int(text)
            if value is None:
                known = ", ".join(f"{lab.value}={lab.name!r}" for lab in self._labels) or "none"
                raise UserInputError(f"{option}: unknown class {text!r}; this model's classes are {known}")
            if value not in out:
                out.append(value)
        return out

    def subset(self, values: Iterable[int]) -> LabelTable:
        """The labels whose value is in ``values``."""
        keep = {int(v) for v in values}
        return LabelTable([lab for lab in self._labels if lab.value in keep])

    def with_terminology(self, other: LabelTable) -> LabelTable:
        """This table with the terminology of ``other`` (e.g. :meth:`from_protocol`) taken for each label of the
        same value and name (case-insensitive) that has no terminology of its own, or only the same codes without
        their context (as a CSV table stores them). Labels that differ keep what they have."""
        ref = {lab.value: lab for lab in other}
        labs = []
        for lab in self._labels:
            theirs = ref.get(lab.value)
            term = lab.terminology
            if theirs is not None and theirs.terminology is not None and _key(theirs.name) == _key(lab.name):
                if term is None or (term.context is None and term.same_codes(theirs.terminology)):
                    term = theirs.terminology
            labs.append(Label(lab.value, lab.name, lab.color, dict(lab.extra), term))
        return LabelTable(labs)

    def describes_same_classes(self, other: LabelTable) -> bool:
        """Same label values with the same names (case-insensitive)."""
        return [(lab.value, _key(lab.name)) for lab in self] == [(lab.value, _key(lab.name)) for lab in other]


def _protocol(protocol: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(protocol, Mapping):
        return dict(protocol)
    from .transforms import get_protocol  # lazy: MONAI is not needed to read a label table

    return get_protocol(protocol)


def read_label_table(path: str | os.PathLike) -> LabelTable:
    """Read a ``labels.csv`` (``LabelValue,Name,Color_R,Color_G,Color_B,Color_A``; colour columns optional;
    terminology columns of either Slicer style read into :attr:`Label.terminology`).

    Raises:
        UserInputError: missing file, missing ``LabelValue``/``Name`` columns, or a non-integer value/colour.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"label table {path} not found; add models/labels.csv to the bundle (header {','.join(LABEL_CSV_HEADER)})"
        )
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "LabelValue" not in fields or "Name" not in fields:
            raise UserInputError(
                f"label table {path} has columns {fields}; it needs the header {','.join(LABEL_CSV_HEADER)}"
            )
        labels = []
        for row_no, row in enumerate(reader, start=2):
            try:
                value = int(row["LabelValue"])
                rgba = [
                    int(row[k]) if row.get(k) not in (None, "") else None
                    for k in ("Color_R", "Color_G", "Color_B", "Color_A")
                ]
            except ValueError as err:
                raise UserInputError(
                    f"label table {path} line {row_no}: {err}; label values and colours must be "
                    "integers (colours 0-255)"
                ) from err
            if value == 0:
                continue
            r, g, b, a = rgba
            color = default_color(value) if r is None or g is None or b is None else (r, g, b, 255 if a is None else a)
            if any(not 0 <= c <= 255 for c in color):
                raise UserInputError(f"label table {path} line {row_no}: colour {color} outside 0-255")
            terminology = Terminology.from_columns(row)
            drop = set(LABEL_CSV_HEADER) | (_TERMINOLOGY_COLUMNS if terminology is not None else set())
            extra = {k: v or "" for k, v in row.items() if k is not None and k not in drop}
            labels.append(Label(value, row["Name"].strip(), color, extra, terminology))
    return LabelTable(labels)


def label_csv_text(table: LabelTable) -> str:
    """Content of the Slicer CSV colour table (background left out): ``LabelValue,Name,Color_*``, then, when any
    label has terminology, both terminology column sets (Slicer's colour-table columns and Auto3DSeg's DICOM
    attribute columns), then any extra columns the labels were read with."""
    term_cols = SLICER_TERMINOLOGY_COLUMNS + DICOM_TERMINOLOGY_COLUMNS if table.has_terminology else []
    extra_cols: list[str] = []
    for lab in table:
        extra_cols += [k for k in lab.extra if k not in extra_cols and k not in term_cols]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LABEL_CSV_HEADER + term_cols + extra_cols)
    for lab in table:
        terms = lab.terminology.columns() if lab.terminology is not None else {}
        writer.writerow(
            [
                lab.value,
                lab.name,
                *lab.color,
                *[terms.get(c, "") for c in term_cols],
                *[lab.extra.get(c, "") for c in extra_cols],
            ]
        )
    return buf.getvalue()


def ctbl_text(table: LabelTable) -> str:
    """Content of an old-style Slicer ``.ctbl`` (``index name R G B A``, underscores for spaces, background row 0)."""
    lines = ["# Color table file", f"# {len(table) + 1} values", "0 background 0 0 0 0"]
    for lab in table:
        lines.append(
            f"{lab.value} {'_'.join(lab.name.split())} {lab.color[0]} {lab.color[1]} {lab.color[2]} {lab.color[3]}"
        )
    return "\n".join(lines) + "\n"


def write_label_csv(table: LabelTable, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the Slicer CSV colour table (background left out; terminology columns when the labels have them)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(label_csv_text(table), encoding="utf-8")
    return Path(path)


def write_ctbl(table: LabelTable, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an old-style Slicer ``.ctbl`` (``index name R G B A``, underscores for spaces, background row 0)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(ctbl_text(table), encoding="utf-8")
    return Path(path)
