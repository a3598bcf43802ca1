"""Helpers and fixtures for the bundle tests: small synthetic NIfTI datasets with a datalist, bundle copies in tmp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "train.json").is_file())
SCHEMA = REPO_ROOT.parent / "shared" / "spec" / "meta_schema_20240725.json"

# overrides that keep every bundle tiny on the CPU (32^3 patches, a few iterations, small networks)
TINY_UXNET = {
    "network_def#feature_size": [8, 16, 32, 64], "network_def#hidden_size": 64, "network_def#depths": [1, 1, 1, 1],
}  # fmt: skip


def make_dataset(
    root: Path, num_classes: int, channels: int, n_cases: int = 2, size: int = 32, n_folds: int = 5
) -> Path:
    """Write ``n_cases`` synthetic cases (``imagesTr``/``labelsTr``) and a decathlon-style ``datalist.json``.

    Channel 2+ are written on a coarser grid (2 mm in-plane) so multi-channel loading must resample them.
    Returns the dataset folder.
    """
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n_cases):
        lab = np.zeros((size,) * 3, np.uint8)
        for c in range(1, num_classes):
            lo = 2 + (c - 1) * max(1, (size - 6) // max(1, num_classes - 1))
            lab[lo : lo + 4, 6 : size - 6, 6 : size - 6] = c
        img = (200 + 80 * lab + rng.normal(0, 10, lab.shape)).astype(np.float32)
        files = []
        for ch in range(channels):
            name = f"imagesTr/case{i}_{ch:04d}.nii.gz"
            if ch == 0:
                nib.save(nib.Nifti1Image(img, np.eye(4)), str(root / name))
            else:
                nib.save(nib.Nifti1Image(img[::2, ::2, :] * 0.5, np.diag([2.0, 2.0, 1.0, 1.0])), str(root / name))
            files.append(name)
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / f"labelsTr/case{i}.nii.gz"))
        items.append({"image": files if channels > 1 else files[0], "label": f"labelsTr/case{i}.nii.gz",
                      "fold": i % n_folds, "case": f"case{i}"})  # fmt: skip
    datalist = {
        "name": "synthetic", "description": "synthetic test data",
        "labels": {str(c): ("background" if c == 0 else f"class{c}") for c in range(num_classes)},
        "channels": [f"ch{c}" for c in range(channels)], "training": items, "test": [],
    }  # fmt: skip
    (root / "datalist.json").write_text(json.dumps(datalist, indent=2), encoding="utf-8")
    return root


def copy_bundle(name: str, dest_root: Path) -> Path:
    """Copy a bundle (configs, models, docs) into ``dest_root/bundles/<name>`` (so runs never touch the repo)."""
    dst = dest_root / "bundles" / name
    shutil.copytree(BUNDLES_DIR / name, dst, ignore=shutil.ignore_patterns("runs", "eval", "*.pt"))
    return dst


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory):
    """``get(num_classes, channels) -> dataset folder``; datasets are made once per session and shared."""
    made: dict[tuple[int, int], Path] = {}

    def get(num_classes: int, channels: int) -> Path:
        key = (num_classes, channels)
        if key not in made:
            made[key] = make_dataset(tmp_path_factory.mktemp(f"data_{num_classes}c_{channels}ch"), *key)
        return made[key]

    return get
