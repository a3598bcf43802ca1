"""Package-side glue for the training bundles: bundle root, run folders, resume, iteration limits, CSV logs.

Bundles (``bundles/<name>/configs/train.json``) stay configuration; the few things plain MONAI config cannot express
live here and are called with ``$ultralight3d.training...`` expressions.
"""

from __future__ import annotations

from .bundle import find_bundle_root, init_distributed, select_device
from .evaluation import evaluate_predictions, load_split
from .handlers import CSVLogger, IterationLimit, every, read_class_names, times
from .runs import RUN_FINISHED_MARKER, finish_run, latest_checkpoint, publish_model, resolve_run_dir

__all__ = [
    "find_bundle_root", "init_distributed", "select_device", "CSVLogger", "IterationLimit", "every", "times",
    "read_class_names", "evaluate_predictions", "load_split", "RUN_FINISHED_MARKER",
    "finish_run", "latest_checkpoint", "publish_model", "resolve_run_dir",
]  # fmt: skip
