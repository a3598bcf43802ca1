"""Compatibility names for code written against the former one-module preparer; import from
:mod:`ultralight3d.data` (or the modules listed there) instead. Geometry lives in :mod:`ultralight3d.io.geometry`,
label and channel tables in the protocol files ``transforms/<protocol>.json``."""

from __future__ import annotations

from typing import Any

from ..io.geometry import ImageGeometry, read_geometry
from .datalist import FOLD_METHOD, FOLD_SEED, NUM_FOLDS, assign_folds
from .feta import prepare_feta
from .finish import DatasetSummary, PrepareResult, format_summary
from .folder import prepare_folder
from .msd_prostate import MSD_ORIENTATION_NOTE, prepare_msd_prostate
from .synapse import SYNAPSE_TEST_CASES, SYNAPSE_TRAINING_CASES, prepare_synapse

__all__ = [
    "FOLD_METHOD",
    "FOLD_SEED",
    "MSD_ORIENTATION_NOTE",
    "NUM_FOLDS",
    "SYNAPSE_TEST_CASES",
    "SYNAPSE_TRAINING_CASES",
    "DatasetSummary",
    "ImageGeometry",
    "PrepareResult",
    "assign_folds",
    "format_summary",
    "prepare_feta",
    "prepare_folder",
    "prepare_msd_prostate",
    "prepare_synapse",
    "read_geometry",
]

#: Former label-table constants -> the protocol whose ``labels`` replace them (read on access, never copied here).
_FORMER_TABLES = {"SYNAPSE_LABELS_13": "synapse13", "SYNAPSE_LABELS_8": "synapse", "FETA_LABELS": "feta",
                  "MSD_PROSTATE_LABELS": "prostate"}  # fmt: skip


def __getattr__(name: str) -> Any:
    """The former label constants, read from their one home ``transforms/<protocol>.json``; use
    ``ultralight3d.transforms.get_protocol(name)["labels"]`` instead."""
    if name in _FORMER_TABLES:
        from .common import protocol_tables

        return dict(protocol_tables(_FORMER_TABLES[name]).labels)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
