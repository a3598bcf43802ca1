"""A random-weights nnU-Net v2 model folder that ``nnUNetv2_predict_from_modelfolder`` accepts (benchmark helper).

Run with the benchmark venv's Python (nnU-Net is installed there, never in the project's venv; this file imports
nothing of ``ultralight3d``)::

    /work/bench-venv/bin/python benchmarks/nnunet_random_model.py --plans nnUNetPlans.json \\
        --dataset-json dataset.json --out /tmp/model                 # [--configuration 3d_fullres] [--seed 0]

The network of the plans' configuration is built by nnU-Net's own code, ``nnUNetTrainer.build_network_architecture``
(``get_network_from_plans`` with its He initialisation; deep supervision off, as the predictor builds it), after
``torch.manual_seed(seed)``. Written: ``<out>/plans.json``, ``<out>/dataset.json`` and
``<out>/fold_0/checkpoint_final.pth`` holding exactly the keys ``nnUNetPredictor.initialize_from_trained_model_folder``
reads: ``network_weights``, ``trainer_name``, ``init_args["configuration"]`` and ``inference_allowed_mirroring_axes``.
Prints one JSON line: the parameter count and the architecture.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any


def build(plans_file: Path, dataset_json: Path, configuration: str, seed: int) -> tuple[Any, dict[str, Any]]:
    """The randomly initialised network of ``configuration`` and a summary of it (JSON-serialisable)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset = json.loads(dataset_json.read_text())
    plans_manager = PlansManager(str(plans_file))
    config = plans_manager.get_configuration(configuration)
    in_channels = determine_num_input_channels(plans_manager, config, dataset)
    out_channels = plans_manager.get_label_manager(dataset).num_segmentation_heads
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(
        plans_manager, config, in_channels, out_channels, enable_deep_supervision=False
    )
    kwargs = config.network_arch_init_kwargs
    summary = {
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "network_class": config.network_arch_class_name,
        "n_stages": kwargs.get("n_stages"),
        "features_per_stage": kwargs.get("features_per_stage"),
        "kernel_sizes": kwargs.get("kernel_sizes"),
        "strides": kwargs.get("strides"),
        "n_conv_per_stage": kwargs.get("n_conv_per_stage"),
        "n_conv_per_stage_decoder": kwargs.get("n_conv_per_stage_decoder"),
        "in_channels": in_channels,
        "out_channels": out_channels,
        "seed": seed,
        "torch": torch.__version__,
    }
    return network, summary


def write_model_folder(
    out: Path, plans_file: Path, dataset_json: Path, configuration: str, seed: int
) -> dict[str, Any]:
    """Write the model folder ``out`` (see the module docstring); returns the network summary."""
    import torch

    network, summary = build(plans_file, dataset_json, configuration, seed)
    fold = out / "fold_0"
    fold.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plans_file, out / "plans.json")
    shutil.copyfile(dataset_json, out / "dataset.json")
    patch_size = json.loads(plans_file.read_text())["configurations"][configuration]["patch_size"]
    checkpoint = {
        "network_weights": network.state_dict(),
        "trainer_name": "nnUNetTrainer",
        "init_args": {"configuration": configuration},
        "inference_allowed_mirroring_axes": tuple(range(len(patch_size))),  # the trainer's default; --disable_tta
    }
    torch.save(checkpoint, fold / "checkpoint_final.pth")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plans", type=Path, required=True, help="nnUNetPlans.json written by nnUNetv2_plan_experiment")
    p.add_argument("--dataset-json", type=Path, required=True, help="the raw dataset's dataset.json")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    summary = write_model_folder(args.out, args.plans, args.dataset_json, args.configuration, args.seed)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
