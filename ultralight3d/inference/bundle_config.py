"""The ``configs/inference.json`` every bundle ships, as data: one template, per-bundle values filled in.

The config's ``predictor`` id builds :class:`ultralight3d.inference.Predictor` (the CLI builds the same id through
:meth:`Predictor.from_bundle`), ``evaluator`` wraps it in a :class:`PredictRunner` whose ``run()`` is the bundle's
``run``. MONAI's InferProperties ids (``bundle_root``, ``device``, ``dataset_dir``, ``dataset``, ``evaluator``,
``network_def``, ``inferer``) and the model-zoo/Slicer ids (``datalist`` as a list of paths, ``output_dir``,
``dataloader#num_workers``) are all present.

Run it like any model-zoo bundle::

    python -m monai.bundle run --config_file bundles/feta_ultralight_unet3d/configs/inference.json \\
        --bundle_root bundles/feta_ultralight_unet3d --dataset_dir scans/ --output_dir out/
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["INFERENCE_TEMPLATE", "render_inference_config", "write_inference_config"]

INFERENCE_TEMPLATE: dict[str, Any] = {
    "imports": ["$import os", "$import torch", "$import ultralight3d", "$import ultralight3d.inference",
                "$import ultralight3d.training", "$import ultralight3d.transforms"],
    "bundle_root": "$ultralight3d.training.find_bundle_root()",
    "device": "$ultralight3d.training.select_device()",
    "stitch_device": "auto",
    "ckpt_path": "$@bundle_root + '/models/model.pt'",
    "onnx_path": "$@bundle_root + '/models/model.onnx'",
    "labels_file": "$@bundle_root + '/models/labels.csv'",
    "engine": "torch",
    "dataset_dir": "$@bundle_root + '/data'",
    "datalist": "$ultralight3d.inference.list_inputs(@dataset_dir)",
    "output_dir": "$@bundle_root + '/eval'",
    "overwrite": False,
    "protocol": "generic",
    "transform_params": {},
    "in_channels": 1,
    "num_classes": 2,
    "channels": "$ultralight3d.inference.channel_names(@protocol, @in_channels)",
    "model_name": "ultralight_unet3d_base",
    "network_def": {
        "_target_": "ultralight3d.create_model",
        "model_name": "@model_name",
        "spatial_dims": 3,
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
    },
    "network": "$@network_def.to(@device)",
    "preprocessing": (
        "$ultralight3d.inference.build_preprocessing(@protocol, dict(@transform_params, in_channels=@in_channels))"),
    "roi_size": [96, 96, 96],
    "sw_batch_size": 2,
    "overlap": 0.5,
    "tta": False,
    "amp": True,
    "optimize": True,
    "progress": True,
    "inferer": {
        "_target_": "SlidingWindowInferer",
        "roi_size": "@roi_size",
        "sw_batch_size": "@sw_batch_size",
        "overlap": "@overlap",
        "mode": "gaussian",
        "sw_device": "@device",
        "progress": "@progress",
    },
    "predictor": {
        "_target_": "ultralight3d.inference.Predictor",
        "model": "$@network_def if @engine == 'torch' else @onnx_path",
        "checkpoint": "$@ckpt_path if @engine == 'torch' else None",
        "engine": "@engine",
        "preprocessing": "@preprocessing",
        "labels": "@labels_file",
        "channels": "@channels",
        "roi_size": "@roi_size",
        "sw_batch_size": "@sw_batch_size",
        "overlap": "@overlap",
        "mode": "gaussian",
        "device": "@device",
        "stitch_device": "@stitch_device",
        "amp": "@amp",
        "optimize": "@optimize",
        "tta": "@tta",
        "name": "@model_name",
        "progress": "@progress",
    },
    "dataset": "$[{'image': p} for p in @datalist]",
    "dataloader": {"num_workers": 0},
    "evaluator": {
        "_target_": "ultralight3d.inference.PredictRunner",
        "predictor": "@predictor",
        "datalist": "@datalist",
        "output_dir": "@output_dir",
        "overwrite": "@overwrite",
    },
    "initialize": [],
    "run": ["$@evaluator.run()"],
    "finalize": [],
}


def render_inference_config(protocol: str, model_name: str, **values: Any) -> dict[str, Any]:
    """The template with ``protocol``, ``model_name`` and other top-level ids (``in_channels``, ``num_classes``,
    ``roi_size``, ``transform_params``, or new ones such as ``variant``) set.

    Args:
        protocol: transform protocol name (``ultralight3d.transforms``), as in the bundle's train.json.
        model_name: registry name, or an expression such as ``"$'ultralight_unet3d_' + @variant"``.
    """
    cfg = copy.deepcopy(INFERENCE_TEMPLATE)
    cfg["protocol"] = protocol
    cfg["model_name"] = model_name
    new = {k: v for k, v in values.items() if k not in cfg}
    cfg.update({k: v for k, v in values.items() if k in cfg})
    if new:  # extra ids go right before network_def so the file reads top-down
        items = list(cfg.items())
        at = [k for k, _ in items].index("model_name")
        cfg = dict(items[:at] + list(new.items()) + items[at:])
    return cfg


def write_inference_config(bundle_dir: str | os.PathLike, protocol: str, model_name: str, **values: Any) -> Path:
    """Write ``<bundle_dir>/configs/inference.json`` from the template (replaces the file)."""
    path = Path(bundle_dir) / "configs" / "inference.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(render_inference_config(protocol, model_name, **values), indent=4) + "\n")
    return path
