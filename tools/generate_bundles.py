"""Write the configs, label tables and READMEs of every bundle under ``bundles/`` from one template.

The seven bundles differ only in protocol, network, classes and learning rate; writing them from one template keeps
them consistent (``tests/bundles/test_configs.py`` fails when a file on disk differs from what this script writes).
``configs/inference.json`` is owned by the inference code and only created here when missing (a placeholder).

Usage (from the repository root)::

    python tools/generate_bundles.py          # rewrite all bundles
    python tools/generate_bundles.py --check  # exit 1 when a file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1] / "bundles"  # the folder this script writes
TOOLS = Path(__file__).resolve().parent
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
VERSION = "0.1.0"

# ------------------------------------------------------------------------------------------------------------ data
PALETTE = [
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79), (221, 130, 101),
    (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70),
]  # fmt: skip

DATASETS: dict[str, dict[str, Any]] = {
    "prostate": {
        "title": "prostate zones (PZ, TZ) on T2 + ADC MRI",
        "modality": "MR",
        "labels": {1: ("peripheral zone", (230, 158, 140)), 2: ("transition zone", (111, 184, 210))},
        "channels": ["T2", "ADC"],
        "format": "magnitude",
        "value_range": [],
        "data": "Medical Segmentation Decathlon Task05 Prostate (32 training cases, 4D NIfTI with T2 and ADC as "
        "channels, labels 1 PZ / 2 TZ). Note the MSD headers: the images are stored flipped relative to their "
        "headers in some tools (model-zoo issue #766) - check orientation on your own, correctly converted DICOM.",
        "data_license": "CC BY-SA 4.0 (Medical Segmentation Decathlon, http://medicaldecathlon.com)",
        "prepare": "ultralight3d prepare msd-prostate --root /data/Task05_Prostate",
        "dataset_dir": "/workspace/data/Task05_Prostate",
    },
    "feta": {
        "title": "fetal brain tissues (7 classes) on T2 MRI",
        "modality": "MR",
        "labels": {
            1: ("external cerebrospinal fluid", (111, 184, 210)), 2: ("grey matter", (216, 101, 79)),
            3: ("white matter", (241, 214, 145)), 4: ("ventricles", (88, 106, 215)), 5: ("cerebellum", (177, 122, 101)),
            6: ("deep grey matter", (128, 174, 128)), 7: ("brainstem", (244, 214, 49)),
        },  # fmt: skip
        "channels": ["T2"],
        "format": "magnitude",
        "value_range": [0, 1],
        "data": "FeTA 2021 (Fetal Tissue Annotation challenge, 80 super-resolved T2 fetal brain volumes, labels "
        "1 eCSF, 2 GM, 3 WM, 4 ventricles, 5 cerebellum, 6 deep GM, 7 brainstem).",
        "data_license": "FeTA data use agreement (Synapse, syn25649159): research use, no redistribution - request "
        "access yourself; the trained weights inherit those terms",
        "prepare": "ultralight3d prepare feta --root /data/feta_2.1",
        "dataset_dir": "/workspace/data/feta_2.1",
    },
    "synapse": {
        "title": "8 abdominal organs on CT (Synapse / BTCV)",
        "modality": "CT",
        "labels": {
            1: ("aorta", (216, 101, 79)), 2: ("gallbladder", (139, 150, 98)), 3: ("left kidney", (185, 102, 83)),
            4: ("right kidney", (212, 126, 151)), 5: ("liver", (221, 130, 101)), 6: ("pancreas", (249, 180, 111)),
            7: ("spleen", (157, 108, 162)), 8: ("stomach", (216, 132, 105)),
        },  # fmt: skip
        "channels": ["CT"],
        "format": "hounsfield",
        "value_range": [0, 1],
        "data": "Synapse multi-organ CT (MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault, BTCV: 30 training "
        "CTs with 13 organs). The 8-organ protocol of TransUNet is used (18 train / 12 test cases); the pipeline maps "
        "the 13 BTCV labels onto the 8 organs (aorta, gallbladder, L/R kidney, liver, pancreas, spleen, stomach).",
        "data_license": "Synapse BTCV terms of use (syn3193805): registration required, research use only",
        "prepare": "ultralight3d prepare synapse --root /data/BTCV",
        "dataset_dir": "/workspace/data/BTCV",
    },
    "generic": {
        "title": "your own classes on your own images",
        "modality": "MR or CT",
        "labels": {1: ("foreground", (128, 174, 128))},
        "channels": ["image"],
        "format": "magnitude",
        "value_range": [],
        "data": "Your own imagesTr/labelsTr folders (nnU-Net / MSD layout), described by a datalist written by "
        "`ultralight3d prepare folder`.",
        "data_license": "the terms of your own data",
        "prepare": "ultralight3d prepare folder --root /data/MyDataset",
        "dataset_dir": "/workspace/data/MyDataset",
    },
}

NETWORKS: dict[str, dict[str, Any]] = {
    "ultralight_unet3d": {
        "title": "UltraLightUNet3D",
        "lr": 1e-3,
        "divisor": 32,
        "variant": "m",
        "reference": "Rahman & Marculescu, UltraLightUNet: rethinking U-shaped network with multi-kernel lightweight "
        "convolutions for medical image segmentation (OpenReview 2024/2025)",
    },
    "uxnet3d": {
        "title": "3D UX-Net",
        "lr": 1e-4,
        "divisor": 16,
        "variant": None,
        "reference": "Lee et al., 3D UX-Net: a large kernel volumetric ConvNet modernizing hierarchical transformer "
        "for medical image segmentation, ICLR 2023",
    },
}

BUNDLES: dict[str, tuple[str, str, str]] = {
    # name: (dataset key, protocol, network key)
    "prostate_ultralight_unet3d": ("prostate", "prostate", "ultralight_unet3d"),
    "prostate_uxnet3d": ("prostate", "prostate", "uxnet3d"),
    "feta_ultralight_unet3d": ("feta", "feta", "ultralight_unet3d"),
    "feta_uxnet3d": ("feta", "feta", "uxnet3d"),
    "synapse_ultralight_unet3d": ("synapse", "synapse", "ultralight_unet3d"),
    "synapse_uxnet3d": ("synapse", "synapse", "uxnet3d"),
    "custom_ultralight_unet3d": ("generic", "generic", "ultralight_unet3d"),
}

PINS = {
    "monai_version": "1.6.1",
    "pytorch_version": "2.13.0",
    "numpy_version": "2.4.6",
    "required_packages_version": {
        "ultralight3d": VERSION, "pytorch-ignite": "0.5.5", "nibabel": "5.4.2", "itk": "5.4.7", "SimpleITK": "2.5.7",
        "tensorboard": "2.21.0", "fire": "0.7.1",
    },  # fmt: skip
}

# CPU throughput measured with benchmarks/train_step_cpu.py (quiet 2-core AMD EPYC, torch 2.13 CPU, 2026-11-22).
CPU_SPEED: dict[str, str] = {
    "ultralight_unet3d": "UltraLightUNet3D-M 2.47 it/s at 32^3 (0.40 s/it) and 0.070 it/s at 96^3 (14.3 s/it)",
    "uxnet3d": "3D UX-Net 0.52 it/s at 32^3 (1.9 s/it) and 0.016 it/s at 96^3 (63.5 s/it)",
}


# --------------------------------------------------------------------------------------------------------- configs
def _model_name(net: str) -> str:
    return "$'ultralight_unet3d_' + @variant" if net == "ultralight_unet3d" else "uxnet3d"


def train_config(dataset: str, protocol: str, net: str) -> dict[str, Any]:
    ds, nw = DATASETS[dataset], NETWORKS[net]
    cfg: dict[str, Any] = {
        "imports": ["$import math", "$import os", "$import torch", "$import monai", "$import ultralight3d",
                    "$import ultralight3d.training", "$import ultralight3d.transforms"],  # fmt: skip
        "bundle_root": "$ultralight3d.training.find_bundle_root()",
        "dataset_dir": ds["dataset_dir"],
        "datalist_file": "$os.path.join(@dataset_dir, 'datalist.json')",
        "fold": 0,
        "protocol": protocol,
        "transform_params": {},
        "in_channels": len(ds["channels"]),
        "num_classes": len(ds["labels"]) + 1,
        "labels_file": "$os.path.join(@bundle_root, 'models', 'labels.csv')",
        "class_names": "$ultralight3d.training.read_class_names(@labels_file, @num_classes)",
    }
    if nw["variant"] is not None:
        cfg["variant"] = nw["variant"]
    cfg.update({
        "model_name": _model_name(net),
        "patch_size": [96, 96, 96],
        "num_samples": 2,
        "batch_size": 1,
        "max_iterations": 40000,
        "val_interval": 500,
        "epoch_length": "@val_interval",
        "checkpoint_interval": 500,
        "log_interval": 50,
        "learning_rate": nw["lr"],
        "weight_decay": 0.01,
        "num_workers": 2,
        "cache_rate": 1.0,
        "sw_batch_size": 2,
        "val_overlap": 0.25,
        "amp": "$torch.cuda.is_available()",
        "device": "$ultralight3d.training.select_device()",
        "runs_dir": "$os.path.join(@bundle_root, 'runs')",
        "run_name": "auto",
        "resume": True,
        "run_dir": "$ultralight3d.training.resolve_run_dir(@runs_dir, @run_name, @resume)",
        "output_dir": "@run_dir",
        "ckpt_dir": "$os.path.join(@bundle_root, 'models')",
        "publish_overwrite": False,
        "is_main": True,
        "datalist": "$ultralight3d.training.load_split(@dataset_dir, @datalist_file, @fold)",
        "network_def": {
            "_target_": "ultralight3d.create_model", "model_name": "@model_name", "spatial_dims": 3,
            "in_channels": "@in_channels", "out_channels": "@num_classes",
        },  # fmt: skip
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
        "optimizer": {
            "_target_": "torch.optim.AdamW", "params": "$@network.parameters()", "lr": "@learning_rate",
            "weight_decay": "@weight_decay",
        },  # fmt: skip
        "train": {
            "preprocessing": "$ultralight3d.transforms.get_pipeline(@protocol, 'train', patch_size=@patch_size, "
            "num_samples=@num_samples, in_channels=@in_channels, **@transform_params)",
            "dataset": {
                "_target_": "CacheDataset", "data": "$@datalist[0]", "transform": "@train#preprocessing",
                "cache_rate": "@cache_rate", "num_workers": "@num_workers",
            },  # fmt: skip
            "dataloader": {
                "_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": "@batch_size", "shuffle": True,
                "num_workers": "@num_workers",
            },  # fmt: skip
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": [
                {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": False,
                 "interval": "@val_interval"},
                {"_target_": "StatsHandler", "tag_name": "train_loss",
                 "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                 "iteration_log": "$ultralight3d.training.every(@log_interval)"},
                {"_target_": "TensorBoardStatsHandler", "log_dir": "@run_dir", "tag_name": "train_loss",
                 "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
            ],  # fmt: skip
            "trainer": {
                "_target_": "SupervisedTrainer", "max_epochs": "$math.ceil(@max_iterations / @epoch_length)",
                "epoch_length": "@epoch_length", "device": "@device", "train_data_loader": "@train#dataloader",
                "network": "@network", "loss_function": "@loss", "optimizer": "@optimizer",
                "inferer": "@train#inferer", "train_handlers": "@train#handlers", "amp": "@amp",
            },  # fmt: skip
        },
        "validate": {
            "preprocessing": "$ultralight3d.transforms.get_pipeline(@protocol, 'validate', in_channels=@in_channels, "
            "**@transform_params)",
            "dataset": {
                "_target_": "CacheDataset", "data": "$@datalist[1]", "transform": "@validate#preprocessing",
                "cache_rate": "@cache_rate", "num_workers": "@num_workers",
            },  # fmt: skip
            "dataloader": {
                "_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1, "shuffle": False,
                "num_workers": "@num_workers",
            },  # fmt: skip
            "inferer": {
                "_target_": "SlidingWindowInferer", "roi_size": "@patch_size", "sw_batch_size": "@sw_batch_size",
                "overlap": "@val_overlap",
            },  # fmt: skip
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False],
                     "to_onehot": "@num_classes"},
                ],  # fmt: skip
            },
            "handlers": [
                {"_target_": "StatsHandler", "iteration_log": False},
                {"_target_": "TensorBoardStatsHandler", "log_dir": "@run_dir", "iteration_log": False,
                 "global_epoch_transform": "$ultralight3d.training.times(@epoch_length)"},
                {"_target_": "CheckpointSaver", "save_dir": "@run_dir", "save_dict": {"model": "@network"},
                 "save_key_metric": True, "key_metric_filename": "model.pt"},
            ],  # fmt: skip
            "key_metric": {
                "val_mean_dice": {
                    "_target_": "MeanDice", "include_background": False, "save_details": True,
                    "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                }
            },  # fmt: skip
            "evaluator": {
                "_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@validate#dataloader",
                "network": "@network", "inferer": "@validate#inferer", "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric", "val_handlers": "@validate#handlers", "amp": "@amp",
            },  # fmt: skip
        },
        "checkpoint_saver": {
            "_target_": "CheckpointSaver", "save_dir": "@run_dir",
            "save_dict": {"model": "@network", "optimizer": "@optimizer", "trainer": "@train#trainer"},
            "epoch_level": False, "save_interval": "@checkpoint_interval", "n_saved": 1, "save_final": True,
        },  # fmt: skip
        "checkpoint_loader": {
            "_target_": "CheckpointLoader",
            "_disabled_": "$not @resume or ultralight3d.training.latest_checkpoint(@run_dir) is None",
            "load_path": "$ultralight3d.training.latest_checkpoint(@run_dir)",
            "load_dict": {"model": "@network", "optimizer": "@optimizer", "trainer": "@train#trainer"},
            "map_location": "@device",
        },  # fmt: skip
        "iteration_limit": {"_target_": "ultralight3d.training.IterationLimit", "max_iterations": "@max_iterations"},
        "csv_logger": {
            "_target_": "ultralight3d.training.CSVLogger", "run_dir": "@run_dir", "class_names": "@class_names",
            "enabled": "@is_main",
        },  # fmt: skip
        "initialize": [
            "$monai.utils.set_determinism(seed=0)",
            "$@checkpoint_loader.attach(@train#trainer) if @checkpoint_loader is not None else None",
            "$@iteration_limit.attach(@train#trainer)",
            "$@checkpoint_saver.attach(@train#trainer) if @is_main else None",
            "$@csv_logger.attach(@train#trainer, @validate#evaluator)",
        ],
        "run": ["$@train#trainer.run()"],
        "finalize": [
            "$ultralight3d.training.finish_run(@run_dir, @train#trainer, @max_iterations)",
            "$ultralight3d.training.publish_model(@run_dir, @ckpt_dir, @publish_overwrite)",
        ],
        "training": "%run",
    })
    return cfg


def multi_gpu_config() -> dict[str, Any]:
    return {
        "is_main": "$torch.distributed.get_rank() == 0",
        "ddp_find_unused_parameters": True,
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel", "module": "$@network_def.to(@device)",
            "device_ids": "$[@device] if @device.type == 'cuda' else None",
            "find_unused_parameters": "@ddp_find_unused_parameters",
        },  # fmt: skip
        "train#sampler": {"_target_": "DistributedSampler", "dataset": "@train#dataset", "even_divisible": True,
                          "shuffle": True},  # fmt: skip
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "train#trainer#train_handlers": "$@train#handlers[: 1 if torch.distributed.get_rank() > 0 else None]",
        "train#handlers#2#_disabled_": "$torch.distributed.get_rank() > 0",
        "validate#handlers#1#_disabled_": "$torch.distributed.get_rank() > 0",
        "validate#sampler": {"_target_": "DistributedSampler", "dataset": "@validate#dataset", "even_divisible": False,
                             "shuffle": False},  # fmt: skip
        "validate#dataloader#sampler": "@validate#sampler",
        "validate#evaluator#val_handlers": "$None if torch.distributed.get_rank() > 0 else @validate#handlers",
        "initialize": [
            "$ultralight3d.training.init_distributed()",
            "$monai.utils.set_determinism(seed=0)",
            "$@checkpoint_loader.attach(@train#trainer) if @checkpoint_loader is not None else None",
            "$@iteration_limit.attach(@train#trainer)",
            "$@checkpoint_saver.attach(@train#trainer) if @is_main else None",
            "$@csv_logger.attach(@train#trainer, @validate#evaluator)",
        ],
        "run": ["$@train#sampler.set_epoch(0)", "$@train#trainer.run()"],
        "finalize": [
            "$torch.distributed.barrier()",
            "$ultralight3d.training.finish_run(@run_dir, @train#trainer, @max_iterations)",
            "$ultralight3d.training.publish_model(@run_dir, @ckpt_dir, @publish_overwrite)",
            "$torch.distributed.destroy_process_group()",
        ],
    }


def evaluate_config() -> dict[str, Any]:
    return {
        "ckpt_path": "$os.path.join(@ckpt_dir, 'model.pt')",
        "eval_dir": "$os.path.join(@bundle_root, 'eval')",
        "pred_dir": "$os.path.join(@eval_dir, 'predictions')",
        "eval_overwrite": False,
        "tolerance_mm": None,
        "validate#dataset": {"_target_": "Dataset", "data": "$@datalist[1]", "transform": "@validate#preprocessing"},
        "validate#postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@validate#preprocessing", "orig_keys": "image",
                 "nearest_interp": True, "to_tensor": True},
                {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@pred_dir", "output_postfix": "seg",
                 "output_ext": ".nii.gz", "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False,
                 "print_log": False},
            ],  # fmt: skip
        },
        "validate#handlers": [
            {"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"},
             "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
        ],  # fmt: skip
        "validate#evaluator#key_val_metric": None,
        "imports": ["$import os", "$import numpy", "$import torch", "$import monai", "$import ultralight3d",
                    "$import ultralight3d.training", "$import ultralight3d.transforms"],  # fmt: skip
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": [
            "$@validate#evaluator.run()",
            "$ultralight3d.training.evaluate_predictions(@datalist[1], @pred_dir, @class_names, @eval_dir, "
            "tolerance_mm=@tolerance_mm, overwrite=@eval_overwrite)",
        ],
        "finalize": [],
        "training": "%run",
        "evaluating": "%run",
    }


def placeholder_inference(dataset: str, net: str) -> dict[str, Any]:
    ds = DATASETS[dataset]
    cfg: dict[str, Any] = {
        "imports": ["$import os", "$import torch", "$import ultralight3d", "$import ultralight3d.training"],
        "bundle_root": "$ultralight3d.training.find_bundle_root()",
        "device": "$ultralight3d.training.select_device()",
        "in_channels": len(ds["channels"]),
        "num_classes": len(ds["labels"]) + 1,
    }
    if NETWORKS[net]["variant"] is not None:
        cfg["variant"] = NETWORKS[net]["variant"]
    cfg["network_def"] = {
        "_target_": "ultralight3d.create_model", "model_name": _model_name(net), "spatial_dims": 3,
        "in_channels": "@in_channels", "out_channels": "@num_classes",
    }  # fmt: skip
    return cfg


def metadata(name: str, dataset: str, protocol: str, net: str) -> dict[str, Any]:
    ds, nw = DATASETS[dataset], NETWORKS[net]
    shape = ["32*n"] * 3  # UX-Net works on multiples of 16, but its 1/32 bottleneck needs >1 voxel: use 32
    channel_def = {"0": "background", **{str(k): v[0] for k, v in ds["labels"].items()}}
    return {
        "schema": SCHEMA_URL,
        "version": VERSION,
        "changelog": {VERSION: "first release: iteration-based training with resume, DDP, evaluation and inference"},
        **PINS,
        "name": f"{nw['title']} - {ds['title']}",
        "task": f"Segmentation of {ds['title']}",
        "description": f"{nw['title']} trained with the ultralight3d '{protocol}' protocol (DiceCE, AdamW lr "
        f"{nw['lr']:g}, 40 000 iterations, 96^3 patches, sliding-window validation). Network code lives in the "
        "ultralight3d package; this bundle is configuration only.",
        "authors": "ultralight3d developers",
        "copyright": "Copyright (c) ultralight3d developers; configs Apache-2.0",
        "data_source": ds["data"],
        "data_type": "nibabel / itk readable 3D volumes (NIfTI, NRRD, MHA)",
        "image_classes": f"{len(ds['channels'])} channel(s): {', '.join(ds['channels'])}",
        "label_classes": ", ".join(f"{k}: {v}" for k, v in channel_def.items()),
        "pred_classes": ", ".join(f"{k}: {v}" for k, v in channel_def.items()),
        "eval_metrics": {"mean_dice": None},
        "intended_use": "Research only; not for clinical diagnosis.",
        "references": [nw["reference"]],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image", "format": ds["format"], "modality": ds["modality"],
                    "num_channels": len(ds["channels"]), "spatial_shape": shape, "dtype": "float32",
                    "value_range": ds["value_range"], "is_patch_data": True,
                    "channel_def": {str(i): c for i, c in enumerate(ds["channels"])},
                }
            },  # fmt: skip
            "outputs": {
                "pred": {
                    "type": "image", "format": "segmentation", "num_channels": len(channel_def),
                    "spatial_shape": shape, "dtype": "float32", "value_range": [], "is_patch_data": True,
                    "channel_def": channel_def,
                }
            },  # fmt: skip
        },
    }


LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def labels_csv(dataset: str) -> str:
    rows = ["LabelValue,Name,Color_R,Color_G,Color_B,Color_A"]
    rows += [f"{k},{n},{c[0]},{c[1]},{c[2]},255" for k, (n, c) in DATASETS[dataset]["labels"].items()]
    return "\n".join(rows) + "\n"


def labels_ctbl(dataset: str) -> str:
    rows = ["# Color table file", f"# Number of colors: {len(DATASETS[dataset]['labels']) + 1}", "0 background 0 0 0 0"]
    rows += [f"{k} {n.replace(' ', '_')} {c[0]} {c[1]} {c[2]} 255" for k, (n, c) in DATASETS[dataset]["labels"].items()]
    return "\n".join(rows) + "\n"


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=4) + "\n"


def bundle_files(name: str) -> dict[str, str]:
    dataset, protocol, net = BUNDLES[name]
    from_readme = TOOLS / "bundle_readme_template.md"
    readme = from_readme.read_text(encoding="utf-8") if from_readme.is_file() else "# {name}\n"
    ds, nw = DATASETS[dataset], NETWORKS[net]
    readme = readme.format(
        name=name, network=nw["title"], task=ds["title"], protocol=protocol, data=ds["data"],
        data_license=ds["data_license"], prepare=ds["prepare"], lr=f"{nw['lr']:g}", in_channels=len(ds["channels"]),
        channels=", ".join(ds["channels"]), num_classes=len(ds["labels"]) + 1, divisor=nw["divisor"],
        labels="\n".join(f"| {k} | {n} |" for k, (n, _) in ds["labels"].items()),
        variant_line=("`--variant t|s|base|m|l` picks the UltraLightUNet3D size (default `m`)."
                      if nw["variant"] else "3D UX-Net has one size (53.0 M parameters)."),
        speed=CPU_SPEED.get(net, "see the package README"),
    )  # fmt: skip
    return {
        "configs/train.json": _dump(train_config(dataset, protocol, net)),
        "configs/multi_gpu_train.json": _dump(multi_gpu_config()),
        "configs/evaluate.json": _dump(evaluate_config()),
        "configs/metadata.json": _dump(metadata(name, dataset, protocol, net)),
        "configs/logging.conf": LOGGING_CONF,
        "models/labels.csv": labels_csv(dataset),
        f"docs/{name}_labels.ctbl": labels_ctbl(dataset),
        "docs/README.md": readme,
        "docs/data_license.txt": ds["data_license"] + "\n",
        "LICENSE": "Apache License 2.0 applies to the configuration files of this bundle "
        "(see the ultralight3d repository LICENSE). Data and weights: see docs/data_license.txt.\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files (exit 1)")
    args = parser.parse_args(argv)
    stale = []
    for name in BUNDLES:
        root = HERE / name
        files = bundle_files(name)
        for rel, text in files.items():
            path = root / rel
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue
            stale.append(str(path))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        inf = root / "configs" / "inference.json"
        if not inf.exists() and not args.check:
            inf.write_text(_dump(placeholder_inference(BUNDLES[name][0], BUNDLES[name][2])), encoding="utf-8")
    for s in stale:
        print(("out of date: " if args.check else "wrote ") + s)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
