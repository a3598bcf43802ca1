"""Dataset preparation: the datalist contract read by bundles, preparers for public datasets, downloads, phantoms.

Modules::

    datalist      the datalist contract (load_datalist, datalist_config, label_mapping) and the folds (assign_folds)
    common        Case, protocol tables (labels/channels from transforms/<protocol>.json), JSON/path helpers
    checks        header checks (missing/duplicate files, grids, channels) and voxel checks (NaN/inf, label values)
    finish        the shared tail of every preparer: checks, folds, datalist JSON, summary
    msd_prostate  prepare_msd_prostate      feta     prepare_feta
    synapse       prepare_synapse           folder   prepare_folder
    download      download_msd_prostate     phantom  make_phantom_case, generate_phantom_dataset

``load_datalist`` and friends import nothing heavy; the preparers, downloads and phantoms are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports
from .datalist import (
    FOLD_SEED,
    NUM_FOLDS,
    assign_folds,
    datalist_config,
    label_mapping,
    load_datalist,
    load_section,
    read_datalist_json,
    resolve_item,
)

__all__ = [
    "FOLD_SEED",
    "NUM_FOLDS",
    "DatasetSummary",
    "PrepareResult",
    "assign_folds",
    "datalist_config",
    "download_msd_prostate",
    "format_summary",
    "generate_phantom_dataset",
    "label_mapping",
    "load_datalist",
    "load_section",
    "make_phantom_case",
    "prepare_feta",
    "prepare_folder",
    "prepare_msd_prostate",
    "prepare_synapse",
    "read_datalist_json",
    "resolve_item",
]

if TYPE_CHECKING:  # the names of _EXPORTS, for type checkers and editors
    from .download import download_msd_prostate
    from .feta import prepare_feta
    from .finish import DatasetSummary, PrepareResult, format_summary
    from .folder import prepare_folder
    from .msd_prostate import prepare_msd_prostate
    from .phantom import generate_phantom_dataset, make_phantom_case
    from .synapse import prepare_synapse

_EXPORTS = {
    ".download": ["download_msd_prostate"],
    ".feta": ["prepare_feta"],
    ".finish": ["DatasetSummary", "PrepareResult", "format_summary"],
    ".folder": ["prepare_folder"],
    ".msd_prostate": ["prepare_msd_prostate"],
    ".phantom": ["generate_phantom_dataset", "make_phantom_case"],
    ".synapse": ["prepare_synapse"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
