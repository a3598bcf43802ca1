"""Package side of the MONAI bundles in ``bundles/``: what plain MONAI config cannot express.

Bundles stay configuration; they call this package with ``$ultralight3d.bundle...`` expressions and
``ultralight3d.bundle.<Class>`` targets:

- :mod:`~ultralight3d.bundle.paths` - the bundle root from the command line (``find_bundle_root``);
- :mod:`~ultralight3d.bundle.devices` - device and DDP process group;
- :mod:`~ultralight3d.bundle.data` - the train/validation split, what the datalist says (classes, channels), the
  class table, the label-value check;
- :mod:`~ultralight3d.bundle.network` - the network factory that remembers its arguments, settings checks, the
  model card;
- :mod:`~ultralight3d.bundle.sampling` - a data order that resumes exactly;
- :mod:`~ultralight3d.bundle.rng` - the random state saved with each checkpoint;
- :mod:`~ultralight3d.bundle.logs` - CSV and TensorBoard logs that continue across resumes;
- :mod:`~ultralight3d.bundle.runs` - run folders, resume checkpoints, publishing;
- :mod:`~ultralight3d.bundle.state` - :class:`TrainingState`, the handler that saves, resumes and guards training;
- :mod:`~ultralight3d.bundle.evaluate_step` - the scoring step of ``evaluate.json``;
- :mod:`~ultralight3d.bundle.user_errors` - one-line user errors for ``python -m monai.bundle run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports

if TYPE_CHECKING:  # the names of _EXPORTS, for type checkers and editors
    from .data import (
        SPLITS,
        LabelCheck,
        channel_names,
        class_names,
        in_channels_for,
        label_table,
        load_split,
        num_classes_for,
        protocol_value,
        read_dataset_info,
        synapse_protocol,
    )
    from .devices import init_distributed, select_device
    from .evaluate_step import evaluate_predictions, prediction_path
    from .logs import MetricsLog, every, summary_writer
    from .network import (
        ModelCardInfo,
        check_patch_size,
        check_settings,
        create_network,
        network_for_checkpoint,
        network_spec,
    )
    from .paths import find_bundle_root
    from .runs import (
        RUN_FINISHED_MARKER,
        ResumePoint,
        find_resume_point,
        latest_checkpoint,
        publish_model,
        resolve_run_dir,
    )
    from .sampling import ResumableSampler
    from .settings import as_bool
    from .state import NonFiniteError, TrainingState

_EXPORTS = {
    ".data": [
        "SPLITS",
        "LabelCheck",
        "channel_names",
        "class_names",
        "in_channels_for",
        "label_table",
        "load_split",
        "num_classes_for",
        "protocol_value",
        "read_dataset_info",
        "synapse_protocol",
    ],
    ".devices": ["init_distributed", "select_device"],
    ".evaluate_step": ["evaluate_predictions", "prediction_path"],
    ".logs": ["MetricsLog", "every", "summary_writer"],
    ".network": [
        "ModelCardInfo",
        "check_patch_size",
        "check_settings",
        "create_network",
        "network_for_checkpoint",
        "network_spec",
    ],
    ".paths": ["find_bundle_root"],
    ".runs": [
        "RUN_FINISHED_MARKER",
        "ResumePoint",
        "find_resume_point",
        "latest_checkpoint",
        "publish_model",
        "resolve_run_dir",
    ],
    ".sampling": ["ResumableSampler"],
    ".settings": ["as_bool"],
    ".state": ["NonFiniteError", "TrainingState"],
}
__all__ = [
    "SPLITS", "LabelCheck", "channel_names", "class_names", "in_channels_for", "num_classes_for", "label_table",
    "load_split", "protocol_value", "read_dataset_info", "synapse_protocol",
    "init_distributed", "select_device", "evaluate_predictions", "prediction_path",
    "MetricsLog", "every", "summary_writer",
    "ModelCardInfo", "check_patch_size", "check_settings", "create_network", "network_for_checkpoint", "network_spec",
    "find_bundle_root", "RUN_FINISHED_MARKER", "ResumePoint", "find_resume_point", "latest_checkpoint",
    "publish_model", "resolve_run_dir", "ResumableSampler", "as_bool", "NonFiniteError", "TrainingState",
]  # fmt: skip
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
