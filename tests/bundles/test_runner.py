"""The real runner as a subprocess: ``python -m monai.bundle run training`` (kill + resume), plain ``run`` of
evaluate.json from inside the bundle, and ``torchrun`` DDP with gloo on the CPU. One representative bundle
(``custom_ultralight_unet3d``, variant t, 32^3); every bundle trains in-process in ``test_configs.py``."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bundle_helpers_ul3d import copy_bundle, make_dataset

NAME = "custom_ultralight_unet3d"
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def _args(data: Path, run_name: str, max_iterations: int, val_interval: int, ckpt_interval: int) -> list[str]:
    return [
        "--dataset_dir", str(data), "--num_classes", "3", "--variant", "t", "--patch_size", "[32,32,32]",
        "--max_iterations", str(max_iterations), "--val_interval", str(val_interval),
        "--checkpoint_interval", str(ckpt_interval), "--num_workers", "0", "--cache_rate", "0",
        "--sw_batch_size", "1", "--run_name", run_name,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runner")
    bundle = copy_bundle(NAME, root)
    make_dataset(root / "data", num_classes=3, channels=1, n_cases=4, n_folds=2)  # 2 train, 2 val cases
    return root, bundle


@pytest.fixture(scope="module")
def resumed_run(workspace: tuple[Path, Path]) -> dict:
    """Train from the workspace root, SIGKILL after the first checkpoint, run the same command again."""
    root, bundle = workspace
    total = 6
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
           f"bundles/{NAME}/configs/train.json", *_args(root / "data", "resume", total, 3, 2)]  # fmt: skip
    run = bundle / "runs" / "resume"
    with open(root / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=_env())
        deadline = time.time() + 300
        while not list(run.glob("checkpoint_iteration=*.pt")):
            assert proc.poll() is None, (root / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_ckpts = sorted(p.name for p in run.glob("checkpoint_*.pt"))
    second = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=_env(), timeout=600)
    return {"run": run, "killed_ckpts": killed_ckpts, "second": second, "total": total}


def test_killed_run_resumes_and_ends_at_the_requested_total(resumed_run: dict) -> None:
    second, run, total = resumed_run["second"], resumed_run["run"], resumed_run["total"]
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert resumed_run["killed_ckpts"] and not any("final" in n for n in resumed_run["killed_ckpts"])
    saved = int(resumed_run["killed_ckpts"][0].split("=")[1].split(".")[0])
    out = second.stdout + second.stderr
    assert f"resuming from checkpoint_iteration={saved}.pt" in out
    assert "Restored all variables from" in out
    assert (run / "FINISHED").read_text().strip() == f"iteration={total}"
    assert (run / f"checkpoint_final_iteration={total}.pt").is_file()
    rows = list(csv.DictReader(open(run / "training_log.csv")))
    assert [int(r["iteration"]) for r in rows] == list(range(1, total + 1))  # each iteration once, no restart at 1
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    val = list(csv.DictReader(open(run / "validation_log.csv")))
    assert [int(r["iteration"]) for r in val] == [3, 6]
    assert list(val[0]) == ["iteration", "mean_dice", "dice_foreground", "dice_class2"]
    assert (run / "model.pt").is_file() and any(run.glob("events.out.tfevents.*"))


def test_evaluate_from_inside_the_bundle_with_plain_run(workspace: tuple[Path, Path], resumed_run: dict) -> None:
    root, bundle = workspace
    assert (bundle / "models" / "model.pt").is_file()  # published by the finished training run
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
           "['configs/train.json','configs/evaluate.json']", "--dataset_dir", str(root / "data"), "--num_classes", "3",
           "--variant", "t", "--patch_size", "[32,32,32]", "--num_workers", "0", "--sw_batch_size", "1"]  # fmt: skip
    res = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    pred = bundle / "eval" / "predictions" / "case0_0000_seg.nii.gz"
    ref = nib.load(str(root / "data" / "labelsTr" / "case0.nii.gz"))
    img = nib.load(str(pred))
    assert img.get_data_dtype() == np.uint8 and img.shape == ref.shape
    assert np.allclose(img.affine, ref.affine)
    assert set(np.unique(np.asarray(img.dataobj)).tolist()) <= {0, 1, 2}
    metrics = json.loads((bundle / "eval" / "metrics.json").read_text())
    assert "case0" in json.dumps(metrics) or "case0_0000" in json.dumps(metrics)


def test_torchrun_ddp_gloo_on_cpu(workspace: tuple[Path, Path]) -> None:
    root, bundle = workspace
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle", "run", "--config_file",
           f"['bundles/{NAME}/configs/train.json','bundles/{NAME}/configs/multi_gpu_train.json']",
           *_args(root / "data", "ddp", 2, 2, 2)]  # fmt: skip
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=_env(), timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "backend gloo, world size 2" in out
    run = bundle / "runs" / "ddp"
    assert (run / "FINISHED").read_text().strip() == "iteration=2"
    rows = list(csv.DictReader(open(run / "training_log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2]  # rank 0 writes once per iteration
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # rank 0 only: train + validation writers
