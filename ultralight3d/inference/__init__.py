"""Inference: the bundle loader, the predictor (sliding window, TTA, ensembles, inversion to the input grid), its
engines, post-processing, statistics, per-case records and output writers.

Every name below is imported from its module on first use (:func:`ultralight3d.lazy_exports`), so importing this
package costs nothing and ``from ultralight3d.inference import Predictor`` loads only the predictor's own imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports

if TYPE_CHECKING:  # the names of _EXPORTS, for type checkers and editors
    from .bundle_config import INFERENCE_TEMPLATE, LoadedBundle, code_expressions, is_trusted_location, load_bundle
    from .engines import ONNX_META_KEY, OnnxRuntimeModel, OpenVINOModel
    from .outputs import (
        label_volumes_ml,
        write_class_masks,
        write_color_tables,
        write_dicom_seg,
        write_nifti_label,
        write_nifti_probabilities,
        write_seg_nrrd,
        write_summary,
    )
    from .postprocessing import (
        ComponentRule,
        PostprocessLabels,
        PostprocessLabelsd,
        override_rules,
        parse_rules,
        postprocess_label,
        rules_from_protocol,
        voxel_volume_ml,
    )
    from .predictor import CaseResult, OutputOptions, Predictor, RunResult, channel_argmax, load_checkpoint
    from .preprocessing import build_preprocessing, channel_names, default_preprocessing, strip_loaders
    from .records import CaseLocked, case_lock, read_records
    from .runner import PredictRunner, list_inputs
    from .statistics import label_statistics, write_statistics
    from .threads import default_threads, set_threads

_EXPORTS = {
    ".bundle_config": ["INFERENCE_TEMPLATE", "LoadedBundle", "code_expressions", "is_trusted_location", "load_bundle"],
    ".engines": ["ONNX_META_KEY", "OnnxRuntimeModel", "OpenVINOModel"],
    ".outputs": [
        "label_volumes_ml",
        "write_class_masks",
        "write_color_tables",
        "write_dicom_seg",
        "write_nifti_label",
        "write_nifti_probabilities",
        "write_seg_nrrd",
        "write_summary",
    ],
    ".postprocessing": [
        "ComponentRule",
        "PostprocessLabels",
        "PostprocessLabelsd",
        "override_rules",
        "parse_rules",
        "postprocess_label",
        "rules_from_protocol",
        "voxel_volume_ml",
    ],
    ".predictor": ["CaseResult", "OutputOptions", "Predictor", "RunResult", "channel_argmax", "load_checkpoint"],
    ".preprocessing": ["build_preprocessing", "channel_names", "default_preprocessing", "strip_loaders"],
    ".records": ["CaseLocked", "case_lock", "read_records"],
    ".runner": ["PredictRunner", "list_inputs"],
    ".statistics": ["label_statistics", "write_statistics"],
    ".threads": ["default_threads", "set_threads"],
}
__all__ = [
    "INFERENCE_TEMPLATE",
    "ONNX_META_KEY",
    "CaseLocked",
    "CaseResult",
    "ComponentRule",
    "LoadedBundle",
    "OnnxRuntimeModel",
    "OpenVINOModel",
    "OutputOptions",
    "PostprocessLabels",
    "PostprocessLabelsd",
    "PredictRunner",
    "Predictor",
    "RunResult",
    "build_preprocessing",
    "case_lock",
    "channel_argmax",
    "channel_names",
    "code_expressions",
    "default_preprocessing",
    "default_threads",
    "is_trusted_location",
    "label_statistics",
    "label_volumes_ml",
    "list_inputs",
    "load_bundle",
    "load_checkpoint",
    "override_rules",
    "parse_rules",
    "postprocess_label",
    "read_records",
    "rules_from_protocol",
    "set_threads",
    "strip_loaders",
    "voxel_volume_ml",
    "write_class_masks",
    "write_color_tables",
    "write_dicom_seg",
    "write_nifti_label",
    "write_nifti_probabilities",
    "write_seg_nrrd",
    "write_statistics",
    "write_summary",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
