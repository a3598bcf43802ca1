"""Inference: the predictor (sliding window, TTA, inversion to the input grid) and its output writers."""

from __future__ import annotations

from .bundle_config import INFERENCE_TEMPLATE, render_inference_config, write_inference_config
from .outputs import (
    label_volumes_ml,
    write_color_tables,
    write_dicom_seg,
    write_nifti_label,
    write_nifti_probabilities,
    write_seg_nrrd,
    write_summary,
)
from .predictor import CaseResult, Predictor, RunResult, load_checkpoint
from .preprocessing import build_preprocessing, channel_names, default_preprocessing, strip_loaders
from .runner import PredictRunner, list_inputs

__all__ = [
    "INFERENCE_TEMPLATE",
    "render_inference_config",
    "write_inference_config",
    "CaseResult",
    "PredictRunner",
    "Predictor",
    "RunResult",
    "build_preprocessing",
    "channel_names",
    "default_preprocessing",
    "label_volumes_ml",
    "list_inputs",
    "load_checkpoint",
    "strip_loaders",
    "write_color_tables",
    "write_dicom_seg",
    "write_nifti_label",
    "write_nifti_probabilities",
    "write_seg_nrrd",
    "write_summary",
]
