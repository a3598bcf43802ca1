"""Evaluation: per-case, per-class Dice / HD95 / normalised surface Dice and the reports built from them."""

from __future__ import annotations

from .evaluate import (
    OUTPUT_FILES,
    case_id_from_path,
    evaluate_cases,
    find_label_files,
    format_markdown_table,
    read_label_map,
)
from .metrics import DEFAULT_TOLERANCE_MM, STATUSES, compute_case_metrics, summarize_cases

__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "OUTPUT_FILES",
    "STATUSES",
    "case_id_from_path",
    "compute_case_metrics",
    "evaluate_cases",
    "find_label_files",
    "format_markdown_table",
    "read_label_map",
    "summarize_cases",
]
