"""Dataset preparation: the datalist contract read by bundles, preparers for public datasets, downloads.

``load_datalist`` and friends import nothing heavy; the preparers (``ultralight3d.data.prepare``) and downloads
(``ultralight3d.data.download``) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from .datalist import NUM_FOLDS, label_mapping, load_datalist, load_section, read_datalist_json, resolve_item

__all__ = [
    "NUM_FOLDS",
    "download_msd_prostate",
    "label_mapping",
    "load_datalist",
    "load_section",
    "prepare_feta",
    "prepare_folder",
    "prepare_msd_prostate",
    "prepare_synapse",
    "read_datalist_json",
    "resolve_item",
]

_LAZY = {
    "prepare_feta": "prepare",
    "prepare_folder": "prepare",
    "prepare_msd_prostate": "prepare",
    "prepare_synapse": "prepare",
    "download_msd_prostate": "download",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
