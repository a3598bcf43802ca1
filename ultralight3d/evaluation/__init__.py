"""Evaluation: per-case, per-class Dice / HD95 / normalised surface Dice and the reports built from them.

References in a dataset's original labels are mapped into the model's label space with the protocol's ``label_map``
(:func:`remap_reference`, :func:`remap_labels`, :func:`protocol_label_map`; ``evaluate_cases(..., label_map=...)``),
exactly as training maps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports

if TYPE_CHECKING:  # the names of _EXPORTS, for type checkers and editors
    from .evaluate import (
        OUTPUT_FILES,
        case_id_from_path,
        evaluate_cases,
        find_label_files,
        format_markdown_table,
        read_label_map,
    )
    from .metrics import DEFAULT_TOLERANCE_MM, STATUSES, compute_case_metrics, summarize_cases
    from .pairing import pair_files, resolve_class_names
    from .remap import normalise_label_map, protocol_label_map, remap_labels, remap_reference

_EXPORTS = {
    ".evaluate": [
        "OUTPUT_FILES",
        "case_id_from_path",
        "evaluate_cases",
        "find_label_files",
        "format_markdown_table",
        "read_label_map",
    ],
    ".metrics": ["DEFAULT_TOLERANCE_MM", "STATUSES", "compute_case_metrics", "summarize_cases"],
    ".pairing": ["pair_files", "resolve_class_names"],
    ".remap": ["normalise_label_map", "protocol_label_map", "remap_labels", "remap_reference"],
}
__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "OUTPUT_FILES",
    "STATUSES",
    "case_id_from_path",
    "compute_case_metrics",
    "evaluate_cases",
    "find_label_files",
    "format_markdown_table",
    "normalise_label_map",
    "pair_files",
    "protocol_label_map",
    "read_label_map",
    "remap_labels",
    "remap_reference",
    "resolve_class_names",
    "summarize_cases",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
