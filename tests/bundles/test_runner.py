"""The real runner as subprocesses: ``python -m monai.bundle run training`` killed (``kill -9``) at chosen points,
stopped with SIGINT / SIGTERM, and rerun with the same command; plain ``run`` of evaluate.json from inside the bundle;
``torchrun`` DDP with gloo on the CPU. One representative bundle (``custom_ultralight_unet3d``, variant s, 32^3,
5 classes named in the datalist).

Kill points are made deterministic with ``ULTRALIGHT3D_PAUSE_AT=<point>@<iteration>`` (the process writes
``<run>/.paused`` and waits there): ``step`` (after the backward pass, before the optimizer step), ``checkpoint``
(half-way through writing the checkpoint's temporary file), ``validation`` (after the first validation case).

Tolerance: the resumed runs must end with weights within 1e-6 (absolute, every tensor) of the uninterrupted run's. On
the CPU with one thread and ``num_workers=0`` they are bit-identical: the random state (Python, NumPy, torch, MONAI
transforms) and the data order are restored exactly.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers_ul3d import (
    Runner,
    bundle_cmd,
    copy_bundle,
    csv_iterations,
    load_all_checkpoints,
    make_dataset,
    max_weight_difference,
    runner_env,
    tensorboard_steps,
)

from ultralight3d.checkpoint import read_model_card

NAME = "custom_ultralight_unet3d"
TOTAL = 6
CLASS_NAMES = ["liver", "left kidney", "right kidney", "spleen"]
TOLERANCE = 1e-6
pytestmark = pytest.mark.slow

# kill scenarios: name -> (pause point, checkpoint the rerun must resume from, validation repeated on resume)
KILLS = {
    "kill_step": ("step@3", "checkpoint_iteration=2.pt", False),
    "kill_checkpoint": ("checkpoint@4", "checkpoint_iteration=2.pt", False),
    "kill_validation": ("validation@4", "checkpoint_iteration=4.pt", True),
}
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}


def _args(data: Path, run_name: str, total: int = TOTAL) -> list[str]:
    return [
        "--dataset_dir", str(data), "--variant", "s", "--num_classes", "5", "--patch_size", "[32,32,32]",
        "--max_iterations", str(total), "--val_interval", "2", "--checkpoint_interval", "2", "--num_workers", "0",
        "--cache_rate", "0", "--sw_batch_size", "1", "--run_name", run_name,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("runner")
    bundle = copy_bundle(NAME, root)
    data = make_dataset(root / "data", num_classes=5, channels=1, n_cases=4, n_folds=2, class_names=CLASS_NAMES)
    return root, bundle, data  # 2 training, 2 validation cases


@pytest.fixture(scope="module")
def scenarios(workspace: tuple[Path, Path, Path]) -> dict:
    """Phase 1 (in parallel): the uninterrupted reference run, three runs killed with SIGKILL at a pause point, two
    runs stopped with SIGINT / SIGTERM at iteration 3. Phase 2 (in parallel): the same command again for the five."""
    root, bundle, data = workspace

    def cmd(run: str) -> list[str]:
        return bundle_cmd(f"bundles/{NAME}/configs/train.json", *_args(data, run))

    def run_dir(run: str) -> Path:
        return bundle / "runs" / run

    first = {"reference": Runner(cmd("reference"), root, root / "reference.log", run_dir("reference"))}
    for name, (pause, _, _) in KILLS.items():
        first[name] = Runner(cmd(name), root, root / f"{name}.1.log", run_dir(name), pause_at=pause)
    for name in SIGNALS:
        first[name] = Runner(cmd(name), root, root / f"{name}.1.log", run_dir(name), pause_at="step@3")
    paused, after_stop = {}, {}
    for name in [*KILLS, *SIGNALS]:
        paused[name] = first[name].wait_paused()
        first[name].proc.send_signal(SIGNALS.get(name, signal.SIGKILL))
    codes = {name: r.wait() for name, r in first.items()}
    for name in [*KILLS, *SIGNALS]:
        run = run_dir(name)
        after_stop[name] = {"files": sorted(p.name for p in run.iterdir()),
                            "checkpoints": {p.name: torch.load(p, weights_only=True)
                                            for p in run.glob("checkpoint_*.pt")}}  # fmt: skip
    second = {name: Runner(cmd(name), root, root / f"{name}.2.log", run_dir(name)) for name in [*KILLS, *SIGNALS]}
    codes2 = {name: r.wait() for name, r in second.items()}
    return {"first": first, "second": second, "codes": codes, "codes2": codes2, "paused": paused,
            "after_stop": after_stop, "run_dir": run_dir, "bundle": bundle}  # fmt: skip


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / f"checkpoint_final_iteration={TOTAL}.pt", weights_only=True)["model"]


def _check_finished_run(run: Path, reference: Path) -> None:
    assert (run / "FINISHED").read_text().strip() == f"iteration={TOTAL}"
    assert csv_iterations(run / "training_log.csv") == list(range(1, TOTAL + 1))  # each iteration exactly once
    assert csv_iterations(run / "validation_log.csv") == [2, 4, 6]
    steps = tensorboard_steps(run)
    assert steps["train_loss"] == list(range(1, TOTAL + 1)) and steps["val_mean_dice"] == [2, 4, 6]
    assert steps[f"val_mean_dice/{'_'.join(CLASS_NAMES[1].split())}"] == [2, 4, 6]
    loaded = load_all_checkpoints(run)  # every .pt left (hidden temporary files included) loads with weights_only
    assert set(loaded) == {"model.pt", f"checkpoint_final_iteration={TOTAL}.pt"}, sorted(loaded)
    # a final checkpoint carries its model card; the card of a pruned checkpoint goes with it
    assert sorted(p.name for p in run.glob("checkpoint*.json")) == [f"checkpoint_final_iteration={TOTAL}.json"]
    assert max_weight_difference(_final_weights(run), _final_weights(reference)) <= TOLERANCE
    ref_rows = (reference / "training_log.csv").read_text()
    assert (run / "training_log.csv").read_text() == ref_rows  # the same losses, step for step


def test_uninterrupted_reference_run_and_its_model_card(scenarios: dict) -> None:
    ref, bundle = scenarios["run_dir"]("reference"), scenarios["bundle"]
    assert scenarios["codes"]["reference"] == 0, scenarios["first"]["reference"].output()[-4000:]
    assert (ref / "FINISHED").is_file() and csv_iterations(ref / "training_log.csv") == list(range(1, TOTAL + 1))
    card = read_model_card(bundle / "models" / "model.pt")  # published with the best model
    assert card is not None and card.model_name == "ultralight_unet3d_s" and card.out_channels == 5
    assert [e["name"] for e in card.labels] == ["background", *CLASS_NAMES]
    assert card.channel_names == ["ch0"] and card.protocol == "generic" and card.patch_size == [32, 32, 32]
    assert card.fold == 0 and card.iteration in (2, 4, 6) and card.val_mean_dice is not None
    assert json.loads((bundle / "models" / "model.json").read_text()) == json.loads((ref / "model.json").read_text())
    labels = (bundle / "models" / "labels.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in labels[1:]] == CLASS_NAMES
    header = (ref / "validation_log.csv").read_text().splitlines()[0]
    assert header == "iteration,mean_dice,dice_liver,dice_left_kidney,dice_right_kidney,dice_spleen"


@pytest.mark.parametrize("name", list(KILLS))
def test_kill_minus_9_then_the_same_command_finishes_like_an_uninterrupted_run(scenarios: dict, name: str) -> None:
    pause, resume_from, revalidate = KILLS[name]
    point, iteration = pause.split("@")
    assert scenarios["paused"][name].split()[:2] == [point, iteration]
    assert scenarios["codes"][name] == -signal.SIGKILL
    stopped = scenarios["after_stop"][name]
    # what the kill left: complete, loadable checkpoints under their real names; never a partial one
    assert list(stopped["checkpoints"]) == [resume_from], stopped["files"]
    if point == "checkpoint":  # the half-written file is hidden under a temporary name
        assert any(f.startswith(".checkpoint_iteration=4.") for f in stopped["files"]), stopped["files"]
    second = scenarios["second"][name]
    out = second.output()
    assert scenarios["codes2"][name] == 0, out[-4000:]
    assert f"resumed from {resume_from}" in out
    assert ("the validation of iteration 4 was not complete" in out) == revalidate
    assert "not restored" not in out
    _check_finished_run(scenarios["run_dir"](name), scenarios["run_dir"]("reference"))


@pytest.mark.parametrize("name", list(SIGNALS))
def test_sigint_and_sigterm_stop_cleanly_with_a_final_checkpoint_that_resumes(scenarios: dict, name: str) -> None:
    sig = SIGNALS[name]
    out = scenarios["first"][name].output()
    assert scenarios["codes"][name] == 128 + sig, out[-4000:]
    assert "Traceback" not in out and f"{sig.name} received" in out
    stopped = scenarios["after_stop"][name]
    assert list(stopped["checkpoints"]) == ["checkpoint_final_iteration=3.pt"]  # iteration 3 finished, then stop
    assert stopped["checkpoints"]["checkpoint_final_iteration=3.pt"]["trainer"]["iteration"] == 3
    assert "FINISHED" not in stopped["files"]
    assert "checkpoint_final_iteration=3.json" in stopped["files"]  # the stopped run's weights describe themselves
    out2 = scenarios["second"][name].output()
    assert scenarios["codes2"][name] == 0, out2[-4000:]
    assert "resumed from checkpoint_final_iteration=3.pt" in out2
    _check_finished_run(scenarios["run_dir"](name), scenarios["run_dir"]("reference"))


def test_evaluate_from_inside_the_bundle_with_plain_run(scenarios: dict, workspace: tuple[Path, Path, Path]) -> None:
    root, bundle, data = workspace
    # no --variant / --num_classes: the network comes from models/model.json
    cmd = bundle_cmd("['configs/train.json','configs/evaluate.json']", "--dataset_dir", str(data), "--patch_size",
                     "[32,32,32]", "--num_workers", "0", "--sw_batch_size", "1", run_id="run")  # fmt: skip
    res = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, env=runner_env(), timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "network from the model card: ultralight_unet3d_s (5 classes)" in res.stdout + res.stderr
    pred = bundle / "eval" / "predictions" / "case0_0000_seg.nii.gz"
    ref: Any = nib.load(str(data / "labelsTr" / "case0.nii.gz"))
    img: Any = nib.load(str(pred))
    assert img.get_data_dtype() == np.uint8 and img.shape == ref.shape
    assert np.allclose(img.affine, ref.affine)
    assert set(np.unique(np.asarray(img.dataobj)).tolist()) <= set(range(5))
    metrics = json.loads((bundle / "eval" / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert ("case0" in text or "case0_0000" in text) and "liver" in text


def test_torchrun_ddp_gloo_on_cpu(workspace: tuple[Path, Path, Path]) -> None:
    root, bundle, data = workspace
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    args = _args(data, "ddp", total=2)
    cmd = [torchrun, "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle", "run", "--config_file",
           f"['bundles/{NAME}/configs/train.json','bundles/{NAME}/configs/multi_gpu_train.json']", *args]  # fmt: skip
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=runner_env(), timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "backend gloo, world size 2" in out
    run = bundle / "runs" / "ddp"
    assert (run / "FINISHED").read_text().strip() == "iteration=2"
    assert csv_iterations(run / "training_log.csv") == [1, 2]  # rank 0 writes once per iteration
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # rank 0 only
    state = torch.load(run / "checkpoint_final_iteration=2.pt", weights_only=True)
    assert len(state["rng"]["ranks"]) == 2  # the random state of both ranks
    assert all(math.isfinite(float(v.float().sum())) for v in state["model"].values())
    assert not any(k.startswith("module.") for k in state["model"])  # saved without the DDP wrapper
