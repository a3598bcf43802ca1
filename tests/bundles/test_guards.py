"""Guards of training and the errors users see: label values outside the classes and a non-finite loss stop
training with one line (real runner, in parallel); user errors (missing datalist, bad fold, bad variant, bad patch
size, deleted image) are ``UserInputError``s naming the file or setting; after a resume ``model.pt`` stays the best
model of the whole run (forced metric sequence, MONAI's ConfigWorkflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from bundle_helpers_ul3d import Runner, bundle_cmd, copy_bundle, csv_iterations, make_dataset
from monai.bundle import ConfigWorkflow

from ultralight3d.bundle.user_errors import find_user_error, format_user_error
from ultralight3d.checkpoint import read_model_card

NAME = "custom_ultralight_unet3d"


def _overrides(bundle: Path, data: Path, **more) -> dict:
    base = {
        "bundle_root": str(bundle), "dataset_dir": str(data), "variant": "t", "patch_size": [32, 32, 32],
        "max_iterations": 2, "val_interval": 1, "checkpoint_interval": 1, "num_workers": 0, "cache_rate": 0.0,
        "sw_batch_size": 1, "run_name": "r",
    }  # fmt: skip
    base.update(more)
    return base


def _args(data: Path, run: str, *more: str) -> list[str]:
    return ["--dataset_dir", str(data), "--variant", "t", "--patch_size", "[32,32,32]", "--max_iterations", "4",
            "--val_interval", "1", "--checkpoint_interval", "1", "--num_workers", "0", "--cache_rate", "0",
            "--sw_batch_size", "1", "--run_name", run, *more]  # fmt: skip


@pytest.mark.slow
def test_label_value_and_nan_loss_each_stop_training_with_one_line(tmp_path: Path) -> None:
    bundle = copy_bundle(NAME, tmp_path)
    # 5 classes, case 1 (training) has voxels labelled 9
    bad = make_dataset(tmp_path / "bad_label", num_classes=5, channels=1, n_cases=3, n_folds=3, bad_label=(1, 9))
    # training cases case1 (fine) then case2 (a NaN voxel: the loss is NaN at iteration 2), validation case0
    nan = make_dataset(tmp_path / "nan", num_classes=3, channels=1, n_cases=3, n_folds=3, nan_case=2)
    cfg = f"bundles/{NAME}/configs/train.json"
    runs = {
        "label": Runner(bundle_cmd(cfg, *_args(bad, "label")), tmp_path, tmp_path / "label.log",
                        bundle / "runs" / "label"),
        "nan": Runner(bundle_cmd(cfg, *_args(nan, "nan", "--train#sampler#shuffle", "false")), tmp_path,
                      tmp_path / "nan.log", bundle / "runs" / "nan"),
    }  # fmt: skip
    codes = {k: r.wait() for k, r in runs.items()}

    out = runs["label"].output()
    assert codes["label"] == 1 and "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, out[-3000:]
    assert "labelsTr/case1.nii.gz contains the value 9" in errors[0] and "num_classes=5" in errors[0]
    run = bundle / "runs" / "label"
    assert not list(run.glob("*.pt")) and not (run / "training_log.csv").exists()  # before the first step

    out = runs["nan"].output()
    assert codes["nan"] == 1 and "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, out[-3000:]
    assert "the loss is nan at iteration 2 (case " in errors[0] and "case2_0000.nii.gz" in errors[0]
    assert "checkpoint_iteration=1.pt" in errors[0]
    run = bundle / "runs" / "nan"
    assert not (run / "FINISHED").exists()
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint_iteration=1.pt", "model.pt"]
    last_good = torch.load(run / "checkpoint_iteration=1.pt", weights_only=True)
    assert last_good["trainer"]["iteration"] == 1
    weights = torch.load(run / "model.pt", weights_only=True)
    assert all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())
    assert read_model_card(run / "model.pt").iteration == 1  # type: ignore[union-attr]
    assert not (bundle / "models" / "model.pt").exists()  # nothing published


def test_user_errors_name_the_file_or_setting(tmp_path: Path) -> None:
    bundle = copy_bundle(NAME, tmp_path)
    data = make_dataset(tmp_path / "data", num_classes=3, channels=1, n_cases=4, n_folds=2)
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "missing datalist": ({"dataset_dir": str(tmp_path / "nothing")},
                             r"datalist .*nothing/datalist.json not found; run `ultralight3d prepare"),
        "fold": ({"fold": 7}, r"fold 7 does not exist in datalist .*datalist.json \(folds present: \[0, 1\]\)"),
        "variant": ({"variant": "x"}, r"unknown network 'ultralight_unet3d_x' .*--variant base\|l\|m\|s\|t"),
        "patch": ({"patch_size": [40, 40, 40]},
                  r"--patch_size \[40, 40, 40\] does not fit ultralight_unet3d_t: every size must be a multiple of 32"),
        "split": ({"split": "fixed"}, r"has no 'validation' section"),
    }  # fmt: skip
    import re

    for what, (override, pattern) in cases.items():
        wf = ConfigWorkflow(config_file=str(bundle / "configs/train.json"), workflow_type="train", logging_file=False,
                            **_overrides(bundle, data, **override))  # fmt: skip
        with pytest.raises(Exception) as info:
            wf.initialize()
        err = find_user_error(info.value)
        assert err is not None, f"{what}: {info.value!r}"
        assert re.search(pattern, str(err)), f"{what}: {err}"
        lines = format_user_error(err).splitlines()
        assert len(lines) == 2 and lines[0].startswith("ERROR: ") and "ULTRALIGHT3D_TRACEBACK" in lines[1]
    (data / "imagesTr" / "case1_0000.nii.gz").unlink()  # a listed image deleted after `prepare`
    wf = ConfigWorkflow(config_file=str(bundle / "configs/train.json"), workflow_type="train", logging_file=False,
                        **_overrides(bundle, data))  # fmt: skip
    with pytest.raises(Exception) as info:
        wf.initialize()
    err = find_user_error(info.value)
    assert err is not None and re.search(
        r"image .*imagesTr/case1_0000.nii.gz of case 'case1' \(training cases of "
        r"datalist .*datalist.json\) does not exist",
        str(err),
    ), info.value


def test_model_pt_after_a_resume_is_the_best_of_the_whole_run(tmp_path: Path) -> None:
    bundle = copy_bundle(NAME, tmp_path)
    data = make_dataset(tmp_path / "data", num_classes=3, channels=1, n_cases=4, n_folds=2)
    forced = {"validate#key_metric": {"val_mean_dice": {
        "_target_": "bundle_helpers_ul3d.ForcedMetric", "values": {1: 0.5, 2: 0.9, 3: 0.3, 4: 0.4}}}}  # fmt: skip
    run = bundle / "runs" / "r"

    def train(total: int) -> None:
        wf = ConfigWorkflow(config_file=str(bundle / "configs/train.json"), workflow_type="train", logging_file=False,
                            **_overrides(bundle, data, max_iterations=total, **forced))  # fmt: skip
        wf.initialize()
        wf.run()
        wf.finalize()

    train(2)  # validations 1 (0.5) and 2 (0.9): model.pt = iteration 2
    best = torch.load(run / "checkpoint_final_iteration=2.pt", weights_only=True)["model"]
    train(4)  # resumed: validations 3 (0.3) and 4 (0.4) are worse
    card = read_model_card(run / "model.pt")
    assert card is not None and card.iteration == 2 and card.val_mean_dice == pytest.approx(0.9)
    model = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.equal(model[k], best[k]) for k in best)
    final = torch.load(run / "checkpoint_final_iteration=4.pt", weights_only=True)
    assert final["training"]["best_metric"] == pytest.approx(0.9) and final["training"]["best_iteration"] == 2
    assert not all(torch.equal(model[k], final["model"][k]) for k in best)  # training did go on
    assert csv_iterations(run / "validation_log.csv") == [1, 2, 3, 4]
    assert json.loads((bundle / "models" / "model.json").read_text())["iteration"] == 2


def test_label_check_applies_the_protocol_label_map_and_remembers_files(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from ultralight3d.bundle import LabelCheck
    from ultralight3d.errors import UserInputError
    from ultralight3d.transforms import get_protocol

    lab = np.zeros((4, 4, 4), np.uint8)
    lab[0, 0, :] = [1, 6, 13, 11]  # stored BTCV values; the synapse protocol maps them into 0..8
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(tmp_path / "btcv.nii.gz"))

    class Data:
        data = [{"case": "c", "label": str(tmp_path / "btcv.nii.gz")}]

    label_map = get_protocol("synapse")["label_map"]
    check = LabelCheck([Data()], num_classes=9, label_map=label_map, cache_file=tmp_path / "label_check.json")
    assert [v[1:] for v in check.scan()] == [(0, 7)]  # 1 -> 7 spleen, 6 -> 5 liver, 11 -> 6 pancreas, 13 -> 0
    check.run()
    assert json.loads((tmp_path / "label_check.json").read_text())[str(tmp_path / "btcv.nii.gz")]["values"] == [
        0, 1, 6, 11, 13]  # fmt: skip
    with pytest.raises(UserInputError, match=r"btcv.nii.gz contains the value 13, but this training has num_classes=9"):
        LabelCheck([Data()], num_classes=9).run()  # the same file without the 13 -> 8 organ mapping


def test_a_non_finite_loss_stops_at_once_without_amp_and_after_three_with_it(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ultralight3d.bundle import NonFiniteError, TrainingState

    net = torch.nn.Linear(2, 2)
    state = TrainingState(tmp_path, net, torch.optim.SGD(net.parameters(), lr=0.1), max_iterations=10,
                          checkpoint_interval=0, handle_signals=False)  # fmt: skip
    engine = SimpleNamespace(state=SimpleNamespace(iteration=1, output=[{"loss": torch.tensor(float("nan"))}],
                                                   batch=[{"case": "c7"}]), scaler=None)  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"the loss is nan at iteration 1 \(case c7\); nothing was saved"):
        state._iteration_completed(engine)
    state = TrainingState(tmp_path, net, torch.optim.SGD(net.parameters(), lr=0.1), max_iterations=10,
                          checkpoint_interval=0, handle_signals=False)  # fmt: skip
    engine.scaler = object()  # AMP: GradScaler skipped the overflowing updates
    for it in (2, 3, 4):
        engine.state.iteration = it
        state._iteration_completed(engine)
    engine.state.iteration = 5
    with pytest.raises(NonFiniteError, match="at iteration 5"):
        state._iteration_completed(engine)
