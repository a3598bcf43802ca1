"""Write every file of every bundle under ``bundles/`` from one template.

The seven bundles differ only in protocol, network, data and learning rate; writing them from one template keeps
them consistent (``tests/bundles/test_configs.py`` fails when a file on disk differs from what this script writes).
Facts come from their one home: label names and channels from the protocols (``transforms/<protocol>.json`` via
:func:`ultralight3d.transforms.get_protocol`), colour tables from :mod:`ultralight3d.labels`, the package version from
``ultralight3d.__version__``, and the ``inference.json`` template from
:data:`ultralight3d.inference.bundle_config.INFERENCE_TEMPLATE` (rendered here).

Usage (from the repository root)::

    python tools/generate_bundles.py          # rewrite all bundles
    python tools/generate_bundles.py --check  # exit 1 when a file is out of date
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: use its package
    sys.path.insert(0, str(REPO))

import ultralight3d  # noqa: E402
from ultralight3d.inference.bundle_config import (  # noqa: E402
    CARD_FIELDS,
    INFERENCE_TEMPLATE,
    card_default,
    label_on_input_grid,
)
from ultralight3d.labels import LabelTable, ctbl_text, label_csv_text  # noqa: E402
from ultralight3d.transforms import get_protocol  # noqa: E402

HERE = REPO / "bundles"  # the folder this script writes
TOOLS = Path(__file__).resolve().parent
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
#: Version of the bundles (their configs); the package they need is ``ultralight3d.__version__``.
VERSION = "0.2.0"
CHANGELOG = {
    "0.2.0": "atomic, ordered resume checkpoints (kill-safe), exact resume (random state, data order, best metric, "
    "logs), clean stop on SIGINT/SIGTERM, label and non-finite-loss guards, one-line user errors, model.json beside "
    "every model.pt, classes and channels from the datalist (custom bundle), Synapse: fixed TransUNet split by "
    "default and --organs 13",
    "0.1.0": "first release: iteration-based training with resume, DDP, evaluation and inference",
}

# ------------------------------------------------------------------------------------------------------------ data
DATASETS: dict[str, dict[str, Any]] = {
    "prostate": {
        "title": "prostate zones (PZ, TZ) on T2 + ADC MRI",
        "modality": "MR",
        "format": "magnitude",
        "value_range": [],
        "data": "Medical Segmentation Decathlon Task05 Prostate (32 training cases, 4D NIfTI with T2 and ADC as "
        "channels, labels 1 PZ / 2 TZ). Note the MSD headers: the images are stored flipped relative to their "
        "headers in some tools (model-zoo issue #766) - check orientation on your own, correctly converted DICOM.",
        "data_license": "CC BY-SA 4.0 (Medical Segmentation Decathlon, http://medicaldecathlon.com)",
        "prepare": "ultralight3d prepare msd-prostate --root /data/Task05_Prostate",
        "dataset_dir": "/workspace/data/Task05_Prostate",
        "split": "folds",
        "split_doc": "validation on fold 0 of the 5 fixed folds (`--fold 1..4` for the others, `--split fixed` for "
        "the datalist's validation section)",
    },
    "feta": {
        "title": "fetal brain tissues (7 classes) on T2 MRI",
        "modality": "MR",
        "format": "magnitude",
        "value_range": [0, 1],
        "data": "FeTA 2021 (Fetal Tissue Annotation challenge, 80 super-resolved T2 fetal brain volumes, labels "
        "1 eCSF, 2 GM, 3 WM, 4 ventricles, 5 cerebellum, 6 deep GM, 7 brainstem).",
        "data_license": "FeTA data use agreement (Synapse, syn25649159): research use, no redistribution - request "
        "access yourself; the trained weights inherit those terms",
        "prepare": "ultralight3d prepare feta --root /data/feta_2.1",
        "dataset_dir": "/workspace/data/feta_2.1",
        "split": "folds",
        "split_doc": "validation on fold 0 of the 5 fixed folds (`--fold 1..4` for the others)",
    },
    "synapse": {
        "title": "8 abdominal organs on CT (Synapse / BTCV)",
        "modality": "CT",
        "format": "hounsfield",
        "value_range": [0, 1],
        "data": "Synapse multi-organ CT (MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault, BTCV: 30 training "
        "CTs with 13 organs). The papers' protocol (TransUNet and followers) is the default: train on the 18 TransUNet "
        "training cases, validate and report on the 12 fixed TransUNet test cases, 8 organs (aorta, gallbladder, L/R "
        "kidney, liver, pancreas, spleen, stomach; the pipeline maps the 13 stored BTCV labels onto them).",
        "data_license": "Synapse BTCV terms of use (syn3193805): registration required, research use only",
        "prepare": "ultralight3d prepare synapse --root /data/BTCV",
        "dataset_dir": "/workspace/data/BTCV",
        "split": "fixed",
        "split_doc": "the papers' protocol: train on the 18 TransUNet training cases, validate on the 12 fixed "
        "TransUNet test cases (the datalist's `validation` section); `--split folds --fold N` (N = 0-4) "
        "cross-validates on the 18 training cases instead. `--organs 13` trains all 13 BTCV organs as stored "
        "(14 classes) instead of the papers' 8",
    },
    "chaos_t2": {
        "title": "liver, kidneys and spleen on abdominal T2-SPIR MRI (CHAOS)",
        "modality": "MR",
        "format": "magnitude",
        "value_range": [],
        "data": "CHAOS (Combined Healthy Abdominal Organ Segmentation, ISBI 2019, Kavur et al., Medical Image Analysis "
        "69, 2021; zenodo.org/records/3431873), task 5: abdominal MRI T2-SPIR, labels 1 liver, 2 right kidney, 3 left "
        "kidney, 4 spleen (the challenge's PNG grey values 63 / 126 / 189 / 252 are mapped onto 1-4 by the protocol, "
        "so either form of the labels works). Spacing is read from each image header (CHAOS T2-SPIR: about 1.4-1.9 mm "
        "in-plane, 5.5-9 mm slices) and resampled to 5 x 5 x 7.7 mm; intensities are used as stored (CHAOS MRI is "
        "not calibrated) and z-scored on the nonzero voxels.",
        "data_license": "CC BY-SA 4.0 (CHAOS challenge data, https://chaos.grand-challenge.org, zenodo 3431873). "
        "The shipped weights (models/model.pt) were trained on CHAOS T2-SPIR cases and are a derivative of that data: "
        "they are licensed CC BY-SA 4.0 as well (attribute CHAOS - Kavur et al. 2021 - and share alike)",
        "prepare": "ultralight3d prepare folder --root /data/chaos_t2 --labels '1=liver,2=right kidney,3=left "
        "kidney,4=spleen' --channels T2 --protocol chaos_t2",
        "dataset_dir": "/workspace/data/chaos_t2",
        "split": "folds",
        "split_doc": "validation on fold 0 of the datalist's 5 folds (`--fold 1..4` for the others)",
        "shipped": "chaos_t2",
    },
    "fetal_sb_atlas": {
        "title": "fetal brain tissues (7 FeTA classes) on T2 MRI",
        "modality": "MR",
        "format": "magnitude",
        "value_range": [],
        "data": "Trained on the spatio-temporal T2 MRI atlases of the fetal brain with spina bifida aperta (Fidon et "
        "al., 15 atlases for gestational ages 21-34 weeks, not operated and operated, super-resolution volumes at 0.8 "
        "mm with a manually refined tissue parcellation; CC0 1.0). These are **atlases** (each an average of several "
        "fetuses, registered and super-resolved), **not individual scans**: they are smoother and have higher "
        "contrast than a single fetal MRI. The atlas labels are mapped onto the FeTA 2021 order (1 external CSF, 2 "
        "grey matter, 3 white matter, 4 ventricles, 5 cerebellum, 6 deep grey matter, 7 brainstem) by the "
        "`fetal_sb_atlas` protocol (atlas 1 WM -> 3, 2 ventricles -> 4, 3 cerebellum -> 5, 4 extra-axial CSF -> 1, "
        "5 cortical GM -> 2, 6 deep GM -> 6, 7 brainstem -> 7, 8 corpus callosum -> 3). Input: a skull-stripped "
        "(brain-masked) fetal brain T2 volume, as FeTA distributes them; spacing from the header, resampled to 1.6 mm "
        "isotropic; intensities as stored, z-scored on the nonzero voxels.",
        "data_license": "CC0 1.0 (fetal spina bifida atlases, Fidon et al.; see the atlas LICENSE.txt). The shipped "
        "weights (models/model.pt) are derived from CC0 data only and are released under CC0 1.0 as well",
        "prepare": "ultralight3d prepare folder --root /data/fetal_sb_atlas --channels T2 --protocol fetal_sb_atlas",
        "dataset_dir": "/workspace/data/fetal_sb_atlas",
        "split": "folds",
        "split_doc": "validation on fold 0 of the datalist's 5 folds (`--fold 1..4` for the others)",
        "shipped": "fetal_sb_atlas",
    },
    "generic": {
        "title": "your own classes on your own images",
        "modality": "MR or CT",
        "format": "magnitude",
        "value_range": [],
        "data": "Your own imagesTr/labelsTr folders (nnU-Net / MSD layout), described by a datalist written by "
        "`ultralight3d prepare folder` (with `--labels` for the class names). The number of classes, their names and "
        "the channel names are read from that datalist unless you pass `--num_classes` / `--in_channels` / "
        "`--class_names`.",
        "data_license": "the terms of your own data",
        "prepare": "ultralight3d prepare folder --root /data/MyDataset --labels '1=liver,2=tumour' --channels T2",
        "dataset_dir": "/workspace/data/MyDataset",
        "split": "folds",
        "split_doc": "validation on fold 0 of the datalist's folds (`--fold N` for another)",
        "from_datalist": True,
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
    # trained on real data on the CPU with the CPU recipe, weights shipped in models/ (see SHIPPED)
    "chaos_t2_ultralight_unet3d": ("chaos_t2", "chaos_t2", "ultralight_unet3d"),
    "fetal_brain_ultralight_unet3d": ("fetal_sb_atlas", "fetal_sb_atlas", "ultralight_unet3d"),
}

PINS = {
    "monai_version": "1.6.1",
    "pytorch_version": "2.13.0",
    "numpy_version": "2.4.6",
    "required_packages_version": {
        "ultralight3d": ultralight3d.__version__,
        "pytorch-ignite": "0.5.5",
        "nibabel": "5.4.2",
        "itk": "5.4.7",
        "SimpleITK": "2.5.7",
        "tensorboard": "2.21.0",
        "fire": "0.7.1",
    },  # fmt: skip
}
# (the pre-2024 name of that field, optional_packages_version, is not written: MONAI 1.6 renames it on reading and
# then overwrites required_packages_version with it)

# CPU throughput measured with benchmarks/train_step_cpu.py (quiet 2-core AMD EPYC, torch 2.13 CPU, 2026-11-22).
CPU_SPEED: dict[str, str] = {
    "ultralight_unet3d": "UltraLightUNet3D-M 2.47 it/s at 32^3 (0.40 s/it) and 0.070 it/s at 96^3 (14.3 s/it)",
    "uxnet3d": "3D UX-Net 0.52 it/s at 32^3 (1.9 s/it) and 0.016 it/s at 96^3 (63.5 s/it)",
}

#: The CPU training recipe, measured by ``benchmarks/cpu_recipe.py`` (table in ``benchmarks/results/cpu_recipe.md``):
#: the setting with the best held-out Dice for a fixed wall budget on 2 CPU cores. Written to the custom bundle's
#: ``configs/cpu.json`` (merged after train.json) and used as the train.json defaults of the shipped bundles.
CPU_RECIPE: dict[str, Any] = {
    "variant": "s",
    "patch_size": [64, 64, 32],
    "num_samples": 2,
    "learning_rate": 0.003,
    "max_iterations": 800,
    "val_interval": 800,
    "checkpoint_interval": 100,
    "num_workers": 2,
    "cache_rate": 1.0,
}
CPU_RECIPE_DOC = (
    "the setting of `benchmarks/results/cpu_recipe.md` with the most iterations and lowest loss for a fixed 150 s "
    "budget on 2 CPU cores (CHAOS T2-SPIR fold 0): UltraLightUNet3D-S, 64x64x32 patches x 2 per case on a coarse grid "
    "(5 x 5 x 7.7 mm for abdominal MRI), AdamW lr 3e-3 (constant), 2 data-loader workers, every case cached"
)

#: Bundles whose weights were trained here on real data on the CPU (2 cores) and ship in ``models/``: ``train`` are
#: their train.json defaults (the settings the shipped weights were trained with; patch and spacing per dataset),
#: ``eval`` the held-out metrics measured with ``ultralight3d predict --bundle`` + ``ultralight3d evaluate`` (metadata
#: ``eval_metrics`` and the README table are written from here, so regenerating never blanks them).
SHIPPED: dict[str, dict[str, Any]] = {
    "chaos_t2": {
        "train": dict(CPU_RECIPE),
        "trained_on": "UltraLightUNet3D-S (0.17 M parameters) trained from scratch on the CPU (2 cores, torch 2.13, "
        "2026-12-02) with this bundle's train.json as shipped (the CPU recipe: 64x64x32 x 2 patches at 5 x 5 x 7.7 mm, "
        "AdamW lr 3e-3, 800 iterations; 15 min 14 s on a quiet machine, 27 min for this run on a shared one) on all "
        "10 CHAOS T2-SPIR cases of the shared copy; the weights are the final iteration. The held-out metrics below "
        "are those of the same recipe trained on 8 cases (fold 0 of `ultralight3d prepare folder`'s 5 folds held out: "
        "cases 8 and 10; 800 iterations in 15 min 14 s; final weights, validated once at the end, no model selection "
        "on the held-out cases). Weights licence: CC BY-SA 4.0, inherited from CHAOS.",
        "evaluation": "fold 0: the 2 held-out cases, `ultralight3d predict --bundle` (protocol post-processing: "
        "largest connected component per organ) then `ultralight3d evaluate` on the original 1.25 x 1.25 x 7.7 mm "
        "label grid",
        "eval": {
            "tolerance_mm": 2.0,
            "n_cases": 2,
            "classes": {
                "liver": {"dice": 0.879, "hd95": 14.4, "nsd": 0.485},
                "right kidney": {"dice": 0.872, "hd95": 7.8, "nsd": 0.667},
                "left kidney": {"dice": 0.828, "hd95": 23.4, "nsd": 0.583},
                "spleen": {"dice": 0.698, "hd95": 22.4, "nsd": 0.535},
            },
            "mean": {"dice": 0.819, "hd95": 17.0, "nsd": 0.568},
        },
    },
    "fetal_sb_atlas": {
        "train": {
            **CPU_RECIPE,
            "patch_size": [64, 64, 64],
            "num_samples": 1,
            "max_iterations": 500,
            "val_interval": 500,
        },
        "trained_on": "UltraLightUNet3D-S (0.17 M parameters) trained from scratch on the CPU (2 cores, torch 2.13, "
        "2026-12-01) with this bundle's train.json as shipped (64^3 x 1 patch at 1.6 mm, AdamW lr 3e-3, 500 "
        "iterations in 9 min 50 s) on all 15 spina bifida atlases. The held-out metrics below are those of the same "
        "recipe trained on 12 atlases (fold 0 of `ultralight3d prepare folder`'s 5 folds held out: GA 22 not "
        "operated, GA 31 operated, GA 34 operated; 500 iterations in 8 min 23 s; final weights, no model selection on "
        "the held-out atlases). Atlases are averages of several fetuses, not individual scans: expect lower Dice on a "
        "single fetal MRI. Weights licence: CC0 1.0 (derived from CC0 data only).",
        "evaluation": "fold 0: the 3 held-out atlases, `ultralight3d predict --bundle` (protocol post-processing: "
        "largest connected component of cerebellum and brainstem) then `ultralight3d evaluate` on the original 0.8 mm "
        "label grid (atlas labels mapped to FeTA as in training)",
        "eval": {
            "tolerance_mm": 2.0,
            "n_cases": 3,
            "classes": {
                "external cerebrospinal fluid": {"dice": 0.537, "hd95": 11.0, "nsd": 0.697},
                "grey matter": {"dice": 0.375, "hd95": 6.2, "nsd": 0.769},
                "white matter": {"dice": 0.607, "hd95": 5.5, "nsd": 0.673},
                "ventricles": {"dice": 0.789, "hd95": 5.7, "nsd": 0.838},
                "cerebellum": {"dice": 0.653, "hd95": 4.5, "nsd": 0.767},
                "deep grey matter": {"dice": 0.478, "hd95": 9.8, "nsd": 0.482},
                "brainstem": {"dice": 0.596, "hd95": 13.0, "nsd": 0.676},
            },
            "mean": {"dice": 0.576, "hd95": 8.0, "nsd": 0.7},
        },
    },
}

IMPORTS = ["$import math", "$import os", "$import numpy", "$import torch", "$import monai", "$import ultralight3d",
           "$import ultralight3d.bundle", "$import ultralight3d.bundle.loss", "$import ultralight3d.bundle.user_errors",
           "$import ultralight3d.checkpoint", "$import ultralight3d.transforms"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ protocol facts
def protocol_labels(protocol: str) -> dict[int, str]:
    """``{value: name}`` of a protocol, background included (``transforms/<protocol>.json``)."""
    return {int(k): str(v) for k, v in get_protocol(protocol)["labels"].items()}


def label_table(protocol: str) -> LabelTable:
    """The protocol's class table with default colours and its SNOMED CT terminology (``labels.csv`` columns)."""
    return LabelTable.from_protocol(protocol)


def protocol_channels(protocol: str) -> list[str]:
    return [str(c) for c in get_protocol(protocol)["channels"]]


# --------------------------------------------------------------------------------------------------------- configs
def _model_name(net: str) -> str:
    return "$'ultralight_unet3d_' + @variant" if net == "ultralight_unet3d" else "uxnet3d"


def protocol_ids(dataset: str, protocol: str) -> dict[str, Any]:
    """``protocol`` / ``transform_params`` (and Synapse's ``organs``), identical in train.json and inference.json."""
    if dataset == "synapse":
        return {
            "organs": 8,
            "protocol": "$ultralight3d.bundle.synapse_protocol(@organs)",
            "transform_params": {},
        }
    return {"protocol": protocol, "transform_params": {}}


def network_ids(dataset: str, protocol: str, train: bool) -> dict[str, Any]:
    """``in_channels`` / ``num_classes`` (shipped values, overridable) and what the network is built with."""
    n_in, n_cls = len(protocol_channels(protocol)), len(protocol_labels(protocol))
    info = ", @dataset_info" if train and DATASETS[dataset].get("from_datalist") else ""
    ids: dict[str, Any] = {"in_channels": n_in, "num_classes": n_cls}
    if info:
        ids["dataset_info"] = "$ultralight3d.bundle.read_dataset_info(@datalist_file)"
    ids["network_in_channels"] = (
        f"$ultralight3d.bundle.in_channels_for(@in_channels, {n_in}, @protocol, @transform_params{info})"
    )
    ids["network_out_channels"] = (
        f"$ultralight3d.bundle.num_classes_for(@num_classes, {n_cls}, @protocol, @transform_params{info})"
    )
    return ids


def network_def() -> dict[str, Any]:
    return {
        "_target_": "ultralight3d.bundle.create_network", "model_name": "@model_name", "spatial_dims": 3,
        "in_channels": "@network_in_channels", "out_channels": "@network_out_channels",
    }  # fmt: skip


def _names_expr(dataset: str, kind: str) -> str:
    info = ", @dataset_info" if DATASETS[dataset].get("from_datalist") else ""
    count = "@network_out_channels" if kind == "class_names" else "@network_in_channels"
    return f"$ultralight3d.bundle.{kind}({count}, @protocol, @transform_params{info})"


def train_config(dataset: str, protocol: str, net: str) -> dict[str, Any]:
    ds, nw = DATASETS[dataset], NETWORKS[net]
    cfg: dict[str, Any] = {
        "imports": IMPORTS,
        "bundle_root": "$ultralight3d.bundle.find_bundle_root()",
        "dataset_dir": ds["dataset_dir"],
        "datalist_file": "$os.path.join(@dataset_dir, 'datalist.json')",
        "split": ds["split"],
        "fold": 0,
        **protocol_ids(dataset, protocol),
        **network_ids(dataset, protocol, train=True),
        "class_names": _names_expr(dataset, "class_names"),
        "channel_names": _names_expr(dataset, "channel_names"),
        "labels_file": "$os.path.join(@bundle_root, 'models', 'labels.csv')",
        "label_table": "$ultralight3d.bundle.label_table(@class_names, @labels_file)",
    }
    if nw["variant"] is not None:
        cfg["variant"] = nw["variant"]
    cfg.update(
        {
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
            "seed": 0,
            "check_labels": True,
            "device": "$ultralight3d.bundle.select_device()",
            "runs_dir": "$os.path.join(@bundle_root, 'runs')",
            "run_name": "auto",
            "resume": True,
            "run_dir": "$ultralight3d.bundle.resolve_run_dir(@runs_dir, @run_name, @resume)",
            "output_dir": "@run_dir",
            "ckpt_dir": "$os.path.join(@bundle_root, 'models')",
            "publish_overwrite": False,
            "is_main": True,
            "datalist": "$ultralight3d.bundle.load_split(@dataset_dir, @datalist_file, @fold, @split)",
            "deep_supervision": "$ultralight3d.bundle.loss.deep_supervision_default(@model_name)",
            "network_def": {**network_def(), "deep_supervision": "@deep_supervision"},
            "network": "$@network_def.to(@device)",
            "loss": {
                "_target_": "ultralight3d.bundle.loss.DeepSupervisedLoss",
                "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
                "weights": "$ultralight3d.bundle.loss.supervision_weights(@network)",
            },  # fmt: skip
            "optimizer": {
                "_target_": "torch.optim.AdamW",
                "params": "$@network.parameters()",
                "lr": "@learning_rate",
                "weight_decay": "@weight_decay",
            },  # fmt: skip
            "resume_point": "$ultralight3d.bundle.find_resume_point(@run_dir, @resume, @val_interval, @is_main)",
            "summary_writer": "$ultralight3d.bundle.summary_writer(@run_dir, @resume_point.purge_step if @resume_point "
            "is not None else None, @is_main)",
            "metrics_log": {
                "_target_": "ultralight3d.bundle.MetricsLog",
                "run_dir": "@run_dir",
                "class_names": "@class_names",
                "writer": "@summary_writer",
                "enabled": "@is_main",
            },  # fmt: skip
            "model_card": {
                "_target_": "ultralight3d.bundle.ModelCardInfo",
                "network": "@network",
                "model_name": "@model_name",
                "in_channels": "@network_in_channels",
                "out_channels": "@network_out_channels",
                "label_table": "@label_table",
                "channel_names": "@channel_names",
                "protocol": "@protocol",
                "transform_params": "@transform_params",
                "patch_size": "@patch_size",
                "datalist_file": "@datalist_file",
                "split": "@split",
                "fold": "@fold",
            },  # fmt: skip
            "label_check": {
                "_target_": "ultralight3d.bundle.LabelCheck",
                "_disabled_": "$not ultralight3d.bundle.as_bool(@check_labels, 'check_labels')",
                "datasets": ["@train#dataset", "@validate#dataset"],
                "num_classes": "@network_out_channels",
                "label_map": "$ultralight3d.bundle.protocol_value(@protocol, @transform_params, 'label_map')",
                "cache_file": "$os.path.join(@run_dir, 'label_check.json')",
            },  # fmt: skip
            "train": {
                "preprocessing": "$ultralight3d.transforms.get_pipeline(@protocol, 'train', patch_size=@patch_size, "
                "num_samples=@num_samples, in_channels=@network_in_channels, **@transform_params)",
                "dataset": {
                    "_target_": "CacheDataset",
                    "data": "$@datalist[0]",
                    "transform": "@train#preprocessing",
                    "cache_rate": "@cache_rate",
                    "num_workers": "@num_workers",
                },  # fmt: skip
                "sampler": {
                    "_target_": "ultralight3d.bundle.ResumableSampler",
                    "data_source": "@train#dataset",
                    "shuffle": True,
                    "seed": "@seed",
                },  # fmt: skip
                "dataloader": {
                    "_target_": "DataLoader",
                    "dataset": "@train#dataset",
                    "sampler": "@train#sampler",
                    "batch_size": "@batch_size",
                    "shuffle": False,
                    "num_workers": "@num_workers",
                },  # fmt: skip
                "inferer": {"_target_": "SimpleInferer"},
                "handlers": [
                    {
                        "_target_": "ultralight3d.bundle.TrainingState",
                        "run_dir": "@run_dir",
                        "network": "@network",
                        "optimizer": "@optimizer",
                        "max_iterations": "@max_iterations",
                        "checkpoint_interval": "@checkpoint_interval",
                        "val_interval": "@val_interval",
                        "evaluator": "@validate#evaluator",
                        "metrics_log": "@metrics_log",
                        "model_card": "@model_card",
                        "label_check": "@label_check",
                        "resume_point": "@resume_point",
                        "train_dataset": "@train#dataset",
                        "is_main": "@is_main",
                        "ckpt_dir": "@ckpt_dir",
                        "publish_overwrite": "@publish_overwrite",
                    },
                    {
                        "_target_": "ValidationHandler",
                        "validator": "@validate#evaluator",
                        "epoch_level": False,
                        "interval": "@val_interval",
                    },
                    {
                        "_target_": "StatsHandler",
                        "tag_name": "train_loss",
                        "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                        "iteration_log": "$ultralight3d.bundle.every(@log_interval)",
                    },
                ],  # fmt: skip
                "state": "@train#handlers#0",
                "trainer": {
                    "_target_": "SupervisedTrainer",
                    "max_epochs": "$math.ceil(@max_iterations / @epoch_length)",
                    "epoch_length": "@epoch_length",
                    "device": "@device",
                    "train_data_loader": "@train#dataloader",
                    "network": "@network",
                    "loss_function": "@loss",
                    "optimizer": "@optimizer",
                    "inferer": "@train#inferer",
                    "train_handlers": "@train#handlers",
                    "amp": "$ultralight3d.bundle.as_bool(@amp, 'amp')",
                },  # fmt: skip
            },
            "validate": {
                "preprocessing": "$ultralight3d.transforms.get_pipeline(@protocol, 'validate', "
                "in_channels=@network_in_channels, **@transform_params)",
                "dataset": {
                    "_target_": "CacheDataset",
                    "data": "$@datalist[1]",
                    "transform": "@validate#preprocessing",
                    "cache_rate": "@cache_rate",
                    "num_workers": "@num_workers",
                },  # fmt: skip
                "dataloader": {
                    "_target_": "DataLoader",
                    "dataset": "@validate#dataset",
                    "batch_size": 1,
                    "shuffle": False,
                    "num_workers": "@num_workers",
                },  # fmt: skip
                "inferer": {
                    "_target_": "SlidingWindowInferer",
                    "roi_size": "@patch_size",
                    "sw_batch_size": "@sw_batch_size",
                    "overlap": "@val_overlap",
                },  # fmt: skip
                "postprocessing": {
                    "_target_": "Compose",
                    "transforms": [
                        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                        {
                            "_target_": "ultralight3d.transforms.ChannelArgmaxd",
                            "keys": "pred",
                            "to_onehot": "@network_out_channels",
                        },
                        {"_target_": "AsDiscreted", "keys": "label", "to_onehot": "@network_out_channels"},
                    ],  # fmt: skip
                },
                "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
                "key_metric": {
                    "val_mean_dice": {
                        "_target_": "MeanDice",
                        "include_background": False,
                        "save_details": True,
                        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                    }
                },  # fmt: skip
                "evaluator": {
                    "_target_": "SupervisedEvaluator",
                    "device": "@device",
                    "val_data_loader": "@validate#dataloader",
                    "network": "@network",
                    "inferer": "@validate#inferer",
                    "postprocessing": "@validate#postprocessing",
                    "key_val_metric": "@validate#key_metric",
                    "val_handlers": "@validate#handlers",
                    "amp": "$ultralight3d.bundle.as_bool(@amp, 'amp')",
                },  # fmt: skip
            },
            "initialize": [
                "$monai.utils.set_determinism(seed=@seed)",
                "$ultralight3d.bundle.check_settings(@model_name, @patch_size, @datalist)",
            ],
            "run": ["$@train#trainer.run()"],
            "finalize": ["$@train#state.finish()", "$@train#state.exit_if_interrupted()"],
            "training": "%run",
        }
    )
    for key, value in _shipped(dataset).get("train", {}).items():
        assert key in cfg, key
        cfg[key] = value
    return cfg


def _shipped(dataset: str) -> dict[str, Any]:
    key = DATASETS[dataset].get("shipped")
    return SHIPPED[key] if key else {}


def _train_value(dataset: str, key: str, default: Any) -> Any:
    return _shipped(dataset).get("train", {}).get(key, default)


def multi_gpu_config() -> dict[str, Any]:
    return {
        "is_main": "$torch.distributed.get_rank() == 0",
        "ddp_find_unused_parameters": True,
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": "$@network_def.to(@device)",
            "device_ids": "$[@device] if @device.type == 'cuda' else None",
            "find_unused_parameters": "@ddp_find_unused_parameters",
        },  # fmt: skip
        "train#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@train#dataset",
            "even_divisible": True,
            "shuffle": True,
        },  # fmt: skip
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "train#trainer#train_handlers": "$@train#handlers[: 2 if torch.distributed.get_rank() > 0 else None]",
        "validate#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@validate#dataset",
            "even_divisible": False,
            "shuffle": False,
        },  # fmt: skip
        "validate#dataloader#sampler": "@validate#sampler",
        "validate#evaluator#val_handlers": "$None if torch.distributed.get_rank() > 0 else @validate#handlers",
        "initialize": [
            "$ultralight3d.bundle.init_distributed()",
            "$monai.utils.set_determinism(seed=@seed)",
            "$ultralight3d.bundle.check_settings(@model_name, @patch_size, @datalist)",
        ],
        "run": ["$@train#sampler.set_epoch(0)", "$@train#trainer.run()"],
        "finalize": [
            "$torch.distributed.barrier()",
            "$@train#state.finish()",
            "$torch.distributed.destroy_process_group()",
            "$@train#state.exit_if_interrupted()",
        ],
    }


def evaluate_config(dataset: str) -> dict[str, Any]:
    return {
        "ckpt_path": "$os.path.join(@ckpt_dir, 'model.pt')",
        "trained_card": "$ultralight3d.checkpoint.read_model_card(@ckpt_path)",
        "network_def": "$ultralight3d.bundle.network_for_checkpoint(@trained_card, @model_name, @network_in_channels, "
        "@network_out_channels)",
        "class_names": "$@trained_card.class_names if @trained_card is not None else "
        + _names_expr(dataset, "class_names")[1:],
        "eval_dir": "$os.path.join(@bundle_root, 'eval')",
        "pred_dir": "$os.path.join(@eval_dir, 'predictions')",
        "eval_overwrite": False,
        "tolerance_mm": None,
        "validate#dataset": {"_target_": "Dataset", "data": "$@datalist[1]", "transform": "@validate#preprocessing"},
        "validate#postprocessing": {
            "_target_": "Compose",
            "transforms": [
                *label_on_input_grid("@validate#preprocessing"),
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@pred_dir",
                    "output_postfix": "seg",
                    "output_ext": ".nii.gz",
                    "output_dtype": "$numpy.uint8",
                    "resample": False,
                    "separate_folder": False,
                    "print_log": False,
                },
            ],  # fmt: skip
        },
        "validate#handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "@ckpt_path",
                "load_dict": {"model": "@network"},
                "map_location": "@device",
            },
            {"_target_": "StatsHandler", "iteration_log": False},
        ],  # fmt: skip
        "validate#evaluator#key_val_metric": None,
        "initialize": ["$monai.utils.set_determinism(seed=@seed)"],
        "run": [
            "$@validate#evaluator.run()",
            "$ultralight3d.bundle.evaluate_predictions(@datalist[1], @pred_dir, @class_names, @eval_dir, "
            "tolerance_mm=@tolerance_mm, overwrite=@eval_overwrite, protocol=@protocol, "
            "transform_params=@transform_params)",
        ],
        "finalize": [],
        "training": "%run",
        "evaluating": "%run",
    }


def distill_config() -> dict[str, Any]:
    return {
        "_comment": "Knowledge distillation: merge over train.json, e.g. python -m monai.bundle run training "
        "--config_file \"['configs/train.json','configs/distill.json']\" --variant t [--teacher_checkpoint PATH]. The "
        "student is this bundle's network (so models/model.pt, its model.json and inference.json are unchanged); "
        "the teacher is frozen and runs without gradients. See ultralight3d.distill.",
        "teacher_model_name": "uxnet3d",
        "teacher_kwargs": {},
        "teacher_checkpoint": "$os.path.join(@bundle_root, 'models', 'teacher.pt')",
        "teacher_def": "$ultralight3d.create_model(@teacher_model_name, spatial_dims=3, "
        "in_channels=@network_in_channels, out_channels=@network_out_channels, **@teacher_kwargs)",
        "kd_weight": 1.0,
        "kd_temperature": 2.0,
        "seg_weight": 1.0,
        "feature_weight": 0.0,
        "feature_layers": {},
        "distill_loss": {
            "_target_": "ultralight3d.distill.DistillationLoss",
            "seg_loss": "@loss",
            "seg_weight": "@seg_weight",
            "kd_weight": "@kd_weight",
            "temperature": "@kd_temperature",
            "feature_weight": "@feature_weight",
        },  # fmt: skip
        "distiller": {
            "_target_": "ultralight3d.distill.Distiller",
            "student": "@network",
            "teacher": "@teacher_def",
            "teacher_checkpoint": "@teacher_checkpoint",
            "criterion": "@distill_loss",
            "feature_layers": "@feature_layers",
        },  # fmt: skip
        "train#trainer#loss_function": "@distiller",
        "optimizer#params": "$list(@network.parameters()) + list(@distiller.trainable_parameters())",
    }


def render_inference_config(protocol: str, model_name: str, **values: Any) -> dict[str, Any]:
    """``INFERENCE_TEMPLATE`` with ``protocol``, ``model_name`` and other top-level ids (``in_channels``,
    ``num_classes``, ``roi_size``, ``transform_params``, or new ones such as ``variant``) set.

    The ids a model card describes (``CARD_FIELDS``: protocol, channels, classes, network, patch size) are written as
    :func:`~ultralight3d.inference.bundle_config.card_default` expressions: the card beside ``ckpt_path`` wins over
    the value given here, a command-line override over both. New ids go right before ``model_name`` so the file
    reads top-down.

    Args:
        protocol: transform protocol name (``ultralight3d.transforms``) or an expression, as in the bundle's train.json.
        model_name: registry name, or an expression such as ``"$'ultralight_unet3d_' + @variant"``.
    """
    cfg = copy.deepcopy(INFERENCE_TEMPLATE)
    values = {"protocol": protocol, "model_name": model_name, **values}
    values = {k: card_default(k, v) if k in CARD_FIELDS else v for k, v in values.items()}
    new = {k: v for k, v in values.items() if k not in cfg}
    cfg.update({k: v for k, v in values.items() if k in cfg})
    if new:
        items = list(cfg.items())
        at = [k for k, _ in items].index("model_name")
        cfg = dict(items[:at] + list(new.items()) + items[at:])
    return cfg


def write_inference_config(bundle_dir: str | os.PathLike, protocol: str, model_name: str, **values: Any) -> Path:
    """Write ``<bundle_dir>/configs/inference.json`` from the template (replaces the file)."""
    path = Path(bundle_dir) / "configs" / "inference.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(render_inference_config(protocol, model_name, **values)), encoding="utf-8")
    return path


def inference_config(dataset: str, protocol: str, net: str) -> dict[str, Any]:
    """``configs/inference.json``: the template with the bundle's protocol, channels, classes, patch size and network
    (``network_def`` as in train.json, built from the model card when ``ckpt_path`` has one)."""
    ids = protocol_ids(dataset, protocol)
    infer_net = {k: v for k, v in network_def().items() if k != "_target_"}
    values: dict[str, Any] = {
        "imports": [*INFERENCE_TEMPLATE["imports"], "$import ultralight3d.bundle.user_errors"],
        "transform_params": ids.pop("transform_params"),
        **{k: v for k, v in ids.items() if k != "protocol"},
        **network_ids(dataset, protocol, train=False),
        "roi_size": _train_value(dataset, "patch_size", [96, 96, 96]),
        "network_def": {**INFERENCE_TEMPLATE["network_def"], **infer_net},
    }
    if NETWORKS[net]["variant"] is not None:
        values["variant"] = _train_value(dataset, "variant", NETWORKS[net]["variant"])
    return render_inference_config(ids["protocol"], _model_name(net), **values)


def metadata(name: str, dataset: str, protocol: str, net: str) -> dict[str, Any]:
    ds, nw = DATASETS[dataset], NETWORKS[net]
    shape = ["32*n"] * 3  # UX-Net works on multiples of 16, but its 1/32 bottleneck needs >1 voxel: use 32
    labels, channels = protocol_labels(protocol), protocol_channels(protocol)
    channel_def = {str(k): v for k, v in sorted(labels.items())}
    return {
        "schema": SCHEMA_URL,
        "version": VERSION,
        "changelog": dict(CHANGELOG),
        **PINS,
        "name": f"{nw['title']} - {ds['title']}",
        "task": f"Segmentation of {ds['title']}",
        "description": f"{nw['title']} trained with the ultralight3d '{protocol}' protocol (DiceCE, AdamW lr "
        f"{_train_value(dataset, 'learning_rate', nw['lr']):g}, {_iterations(dataset)} iterations, "
        f"{_patch(dataset)} patches, sliding-window validation). Network code lives in the "
        "ultralight3d package; this bundle is configuration only. Every models/model.pt comes with models/model.json "
        "(network, classes, channels, protocol, patch size, data, iteration and validation Dice)."
        + (f" Ships trained weights: {_shipped(dataset)['trained_on']}" if _shipped(dataset) else ""),
        "authors": "ultralight3d developers",
        "copyright": "Copyright (c) ultralight3d developers; configs Apache-2.0",
        "data_source": ds["data"],
        "data_type": "nibabel / itk readable 3D volumes (NIfTI, NRRD, MHA)",
        "image_classes": f"{len(channels)} channel(s): {', '.join(channels)}",
        "label_classes": ", ".join(f"{k}: {v}" for k, v in channel_def.items()),
        "pred_classes": ", ".join(f"{k}: {v}" for k, v in channel_def.items()),
        "eval_metrics": eval_metrics(dataset),
        "intended_use": "Research only; not for clinical diagnosis.",
        "references": [nw["reference"]],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": ds["format"],
                    "modality": ds["modality"],
                    "num_channels": len(channels),
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": ds["value_range"],
                    "is_patch_data": True,
                    "channel_def": {str(i): c for i, c in enumerate(channels)},
                }
            },  # fmt: skip
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(channel_def),
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": channel_def,
                }
            },  # fmt: skip
        },
    }


def _patch(dataset: str) -> str:
    patch = _train_value(dataset, "patch_size", [96, 96, 96])
    return f"{patch[0]}^3" if len(set(patch)) == 1 else "x".join(str(p) for p in patch)


def _iterations(dataset: str) -> str:
    return f"{_train_value(dataset, 'max_iterations', 40000):,}".replace(",", " ")


def eval_metrics(dataset: str) -> dict[str, Any]:
    """``eval_metrics`` of metadata.json: the measured held-out metrics of the shipped weights, else a blank."""
    shipped = _shipped(dataset)
    if not shipped.get("eval"):
        return {"mean_dice": None}
    ev = shipped["eval"]
    return {
        "mean_dice": ev["mean"]["dice"],
        "mean_hd95_mm": ev["mean"]["hd95"],
        "mean_nsd": ev["mean"]["nsd"],
        "dice": {c: m["dice"] for c, m in ev["classes"].items()},
        "hd95_mm": {c: m["hd95"] for c, m in ev["classes"].items()},
        "nsd": {c: m["nsd"] for c, m in ev["classes"].items()},
        "nsd_tolerance_mm": ev["tolerance_mm"],
        "evaluation": shipped["evaluation"],
    }


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def shipped_section(dataset: str, name: str) -> str:
    """README section on the shipped weights (empty for bundles without weights)."""
    shipped = _shipped(dataset)
    if not shipped:
        return ""
    lines = ["", "## Shipped model", "", f"`models/model.pt` (+ `models/model.json`, its model card; "
             f"`models/large_files.yml` holds its SHA-256): {shipped['trained_on']}", ""]  # fmt: skip
    ev = shipped.get("eval")
    if ev:
        tol = f"{ev['tolerance_mm']:g}"
        lines += [f"Held-out evaluation ({shipped['evaluation']}):", "",
                  f"| class | Dice | HD95 (mm) | NSD @ {tol} mm |", "|---|---|---|---|"]  # fmt: skip
        for c, m in ev["classes"].items():
            lines.append(f"| {c} | {_num(m['dice'])} | {_num(m['hd95'], 1)} | {_num(m['nsd'])} |")
        m = ev["mean"]
        lines += [f"| **mean** | **{_num(m['dice'])}** | **{_num(m['hd95'], 1)}** | **{_num(m['nsd'])}** |", ""]
    lines += [
        "Use it on your own scans (no `--ckpt_path` / `--variant` needed: the card says what the network is; see "
        "[Infer](#infer)):",
        "",
        "```bash",
        f"python -m monai.bundle run --config_file bundles/{name}/configs/inference.json --dataset_dir scans/ "
        "--output_dir out/",
        f"ultralight3d predict -i scans/ -o out/ --bundle bundles/{name}",
        "```",
        "",
    ]
    return "\n".join(lines)


def large_files_yml(name: str) -> str | None:
    """``models/large_files.yml`` in the model-zoo format, for a bundle with committed weights (else None)."""
    import hashlib

    path = HERE / name / "models" / "model.pt"
    if not _shipped(BUNDLES[name][0]) or not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return (
        "# weights committed in this repository (not downloaded); check with: sha256sum models/model.pt\n"
        "large_files:\n"
        '  - path: "models/model.pt"\n'
        f'    url: "bundles/{name}/models/model.pt"\n'
        f'    hash_val: "{digest}"\n'
        '    hash_type: "sha256"\n'
        f"    size_bytes: {path.stat().st_size}\n"
    )


def cpu_config() -> dict[str, Any]:
    return {
        "_comment": "CPU training recipe: merge after train.json, e.g. python -m monai.bundle run training "
        "--config_file \"['configs/train.json','configs/cpu.json']\" --dataset_dir /data/MyData. It is "
        f"{CPU_RECIPE_DOC}; pass a spacing that gives volumes of about 64x64x40 voxels with --transform_params "
        "\"{'spacing': [5.0, 5.0, 7.7]}\" (the generic protocol keeps the voxel grid). Measured by "
        "benchmarks/cpu_recipe.py (benchmarks/results/cpu_recipe.md).",
        **CPU_RECIPE,
        "device": "cpu",
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


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=4) + "\n"


def cpu_recipe_section() -> str:
    """The custom bundle README's paragraph on ``configs/cpu.json``."""
    r = CPU_RECIPE
    patch = "x".join(str(p) for p in r["patch_size"])
    files = "'bundles/custom_ultralight_unet3d/configs/train.json','bundles/custom_ultralight_unet3d/configs/cpu.json'"
    return (
        f"\n\nOn a CPU, merge the measured CPU recipe `configs/cpu.json` after train.json (UltraLightUNet3D-"
        f"{r['variant'].upper()}, {patch} x {r['num_samples']} patches, lr {r['learning_rate']:g}, "
        f"{r['max_iterations']} iterations; `benchmarks/results/cpu_recipe.md`) and give a coarse spacing (the "
        "generic protocol keeps the voxel grid):\n\n```bash\n"
        f'python -m monai.bundle run training --config_file "[{files}]" \\\n'
        "    --dataset_dir /data/MyData --transform_params \"{'spacing': [5.0, 5.0, 7.7]}\"\n```"
    )


def postprocessing_doc(protocol: str) -> str:
    """The protocol's declared post-processing in words (README), e.g. ``largest connected component of cerebellum,
    brainstem``."""
    from ultralight3d.inference.postprocessing import rules_from_protocol

    names = protocol_labels(protocol)
    groups: dict[str, list[int]] = {}
    for value, rule in sorted(rules_from_protocol(protocol).items()):
        what = (["largest connected component"] if rule.largest_component else []) + (
            [f"components under {rule.min_volume_ml:g} ml removed"] if rule.min_volume_ml else []
        )
        groups.setdefault(" and ".join(what), []).append(value)
    foreground = sorted(v for v in names if v > 0)
    parts = [
        f"{what} of {'every class' if values == foreground else ', '.join(names.get(v, str(v)) for v in values)}"
        for what, values in groups.items()
    ]
    return "; ".join(parts) if parts else "none declared"


def readme(name: str) -> str:
    dataset, protocol, net = BUNDLES[name]
    template = (TOOLS / "bundle_readme_template.md").read_text(encoding="utf-8")
    ds, nw = DATASETS[dataset], NETWORKS[net]
    labels, channels = protocol_labels(protocol), protocol_channels(protocol)
    return template.format(
        name=name, network=nw["title"], task=ds["title"], protocol=protocol, data=ds["data"],
        data_license=ds["data_license"], prepare=ds["prepare"],
        lr=f"{_train_value(dataset, 'learning_rate', nw['lr']):g}", in_channels=len(channels),
        channels=", ".join(channels), num_classes=len(labels), divisor=nw["divisor"],
        labels="\n".join(f"| {k} | {n} |" for k, n in sorted(labels.items()) if k > 0),
        variant_line=(f"`--variant t|s|base|m|l` picks the UltraLightUNet3D size (default "
                      f"`{_train_value(dataset, 'variant', nw['variant'])}`)."
                      if nw["variant"] else "3D UX-Net has one size (53.0 M parameters)."),
        speed=CPU_SPEED.get(net, "see the package README"), split=ds["split_doc"],
        version=ultralight3d.__version__, shipped=shipped_section(dataset, name),
        postprocessing=postprocessing_doc(protocol), first_class=labels[min(k for k in labels if k > 0)],
        patch=_patch(dataset), iterations=_iterations(dataset),
        num_samples=_train_value(dataset, "num_samples", 2), val_interval=_train_value(dataset, "val_interval", 500),
        cpu_recipe=(cpu_recipe_section() if dataset == "generic" else ""),
        classes_source=("the datalist (`labels`, `num_classes`, `channels` written by `ultralight3d prepare "
                        "folder`), unless `--num_classes` / `--in_channels` / `--class_names` say otherwise"
                        if ds.get("from_datalist") else f"the `{protocol}` protocol"),
    )  # fmt: skip


def bundle_files(name: str) -> dict[str, str]:
    dataset, protocol, net = BUNDLES[name]
    ds = DATASETS[dataset]
    table = label_table(protocol)
    files = {
        "configs/train.json": _dump(train_config(dataset, protocol, net)),
        "configs/multi_gpu_train.json": _dump(multi_gpu_config()),
        "configs/evaluate.json": _dump(evaluate_config(dataset)),
        "configs/inference.json": _dump(inference_config(dataset, protocol, net)),
        "configs/metadata.json": _dump(metadata(name, dataset, protocol, net)),
        "configs/logging.conf": LOGGING_CONF,
        "models/labels.csv": label_csv_text(table),
        f"docs/{name}_labels.ctbl": ctbl_text(table),
        "docs/README.md": readme(name),
        "docs/data_license.txt": ds["data_license"] + "\n",
        "LICENSE": "Apache License 2.0 applies to the configuration files of this bundle "
        "(see the ultralight3d repository LICENSE). Data and weights: see docs/data_license.txt.\n",
    }
    if net == "ultralight_unet3d":
        files["configs/distill.json"] = _dump(distill_config())
    if dataset == "generic":
        files["configs/cpu.json"] = _dump(cpu_config())
    large = large_files_yml(name)
    if large is not None:
        files["models/large_files.yml"] = large
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files (exit 1)")
    args = parser.parse_args(argv)
    stale = []
    for name in BUNDLES:
        root = HERE / name
        for rel, text in bundle_files(name).items():
            path = root / rel
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue
            stale.append(str(path))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for s in stale:
        print(("out of date: " if args.check else "wrote ") + s)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
