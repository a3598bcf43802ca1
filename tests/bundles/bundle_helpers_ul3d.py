"""Helpers and fixtures for the bundle tests: small synthetic NIfTI datasets with a datalist, bundle copies in tmp,
the real runner as a subprocess, and readers for what a run leaves behind."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "train.json").is_file())
SCHEMA = REPO_ROOT.parent / "shared" / "spec" / "meta_schema_20240725.json"
HERE = Path(__file__).resolve().parent

# overrides that keep every bundle tiny on the CPU (32^3 patches, a few iterations, small networks)
TINY_UXNET = {
    "network_def#feature_size": [8, 16, 32, 64], "network_def#hidden_size": 64, "network_def#depths": [1, 1, 1, 1],
}  # fmt: skip


def make_dataset(
    root: Path,
    num_classes: int,
    channels: int,
    n_cases: int = 2,
    size: int = 32,
    n_folds: int = 5,
    class_names: Sequence[str] | None = None,
    bad_label: tuple[int, int] | None = None,
    nan_case: int | None = None,
    with_num_classes: bool = True,
) -> Path:
    """Write ``n_cases`` synthetic cases (``imagesTr``/``labelsTr``) and a decathlon-style ``datalist.json``.

    Channel 2+ are written on a coarser grid (2 mm in-plane) so multi-channel loading must resample them.

    Args:
        class_names: foreground names (default ``class1``...), written to the datalist's ``labels``.
        bad_label: ``(case, value)``: a few voxels of that case's label get ``value``.
        nan_case: that case's image gets a NaN voxel.
        with_num_classes: write ``num_classes`` into the datalist (as ``prepare`` does).

    Returns the dataset folder.
    """
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    names = list(class_names or [f"class{c}" for c in range(1, num_classes)])
    items = []
    for i in range(n_cases):
        lab = np.zeros((size,) * 3, np.uint8)
        for c in range(1, num_classes):
            lo = 2 + (c - 1) * max(1, (size - 6) // max(1, num_classes - 1))
            lab[lo : lo + 4, 6 : size - 6, 6 : size - 6] = c
        if bad_label is not None and bad_label[0] == i:
            lab[size // 2 : size // 2 + 2, 1:3, 1:3] = bad_label[1]
        img = (200 + 80 * lab + rng.normal(0, 10, lab.shape)).astype(np.float32)
        if nan_case == i:
            img[size // 2, size // 2, size // 2] = np.nan
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
    datalist: dict[str, Any] = {
        "name": "synthetic", "description": "synthetic test data",
        "labels": {"0": "background", **{str(c): n for c, n in enumerate(names, start=1)}},
        "channels": [f"ch{c}" for c in range(channels)], "training": items, "test": [],
    }  # fmt: skip
    if with_num_classes:
        datalist["num_classes"] = num_classes
    (root / "datalist.json").write_text(json.dumps(datalist, indent=2), encoding="utf-8")
    return root


def copy_bundle(name: str, dest_root: Path) -> Path:
    """Copy a bundle (configs, models, docs) into ``dest_root/bundles/<name>`` (so runs never touch the repo)."""
    dst = dest_root / "bundles" / name
    shutil.copytree(BUNDLES_DIR / name, dst, ignore=shutil.ignore_patterns("runs", "eval", "*.pt", "model.json"))
    return dst


def runner_env(**extra: str) -> dict[str, str]:
    """Environment of a runner subprocess: one thread (deterministic, fair on 2 cores), this test folder importable."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).strip(os.pathsep)
    env.pop("ULTRALIGHT3D_PAUSE_AT", None)
    env.pop("ULTRALIGHT3D_TRACEBACK", None)
    env.update(extra)
    return env


def bundle_cmd(config_files: str | Sequence[str], *args: str, run_id: str = "training") -> list[str]:
    """``python -m monai.bundle run <run_id> --config_file ... <args>``."""
    files = config_files if isinstance(config_files, str) else "[" + ",".join(f"'{f}'" for f in config_files) + "]"
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files, *args]


class Runner:
    """A runner subprocess with its log file; ``pause_at`` (``point@iteration``) makes it stop there and wait."""

    def __init__(self, cmd: list[str], cwd: Path, log: Path, run_dir: Path, pause_at: str | None = None) -> None:
        self.cmd, self.cwd, self.log, self.run_dir = cmd, cwd, log, run_dir
        env = runner_env(**({"ULTRALIGHT3D_PAUSE_AT": pause_at} if pause_at else {}))
        self._fh = open(log, "w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT, env=env)

    def wait_paused(self, timeout: float = 300) -> str:
        """Wait until the process reports its pause point; returns ``"<point> <iteration> <pid>"``."""
        marker = self.run_dir / ".paused"
        deadline = time.time() + timeout
        while not marker.is_file() or not marker.read_text().strip():
            assert self.proc.poll() is None, (
                f"exited with {self.proc.returncode} before pausing:\n{self.output()[-3000:]}"
            )
            assert time.time() < deadline, f"no pause within {timeout} s:\n{self.output()[-3000:]}"
            time.sleep(0.1)
        return marker.read_text().strip()

    def wait(self, timeout: float = 600) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._fh.close()

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text(errors="replace")


def csv_iterations(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["iteration"]) for r in csv.DictReader(f)]


def tensorboard_steps(run_dir: Path) -> dict[str, list[int]]:
    """``{tag: [steps]}`` as TensorBoard shows them (purged steps of resumed runs removed)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def load_all_checkpoints(run_dir: Path) -> dict[str, Any]:
    """Every ``*.pt`` of a run folder (hidden temporary files included), loaded with ``weights_only=True``."""
    return {p.name: torch.load(p, map_location="cpu", weights_only=True) for p in sorted(run_dir.glob("*.pt"))}


def max_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


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


class ForcedMetric:
    """A stand-in key metric for the best-model test: the value of validation ``k`` (the evaluator's global epoch)
    is ``values[k]``; an ignite ``Metric`` in all that MONAI's evaluator uses."""

    def __new__(cls, values: dict[int, float]):  # build an ignite Metric subclass lazily (ignite import)
        from ignite.metrics import Metric

        class _Forced(Metric):
            def __init__(self) -> None:
                self._values = {int(k): float(v) for k, v in values.items()}
                self._engine: Any = None
                super().__init__(output_transform=lambda x: x)

            def attach(self, engine: Any, name: str, usage: Any = None) -> None:
                self._engine = engine
                super().attach(engine, name)

            def reset(self) -> None:
                pass

            def update(self, output: Any) -> None:
                pass

            def compute(self) -> float:
                return self._values[int(self._engine.state.epoch)]

        return _Forced()
