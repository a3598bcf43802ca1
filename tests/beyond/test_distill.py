"""Distillation: the loss terms, and a few iterations through the real bundle runner with a frozen teacher."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigWorkflow

from ultralight3d import create_model
from ultralight3d.distill import DistillationLoss, Distiller, kd_kl_loss
from ultralight3d.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_kd_term_matches_hand_computed_kl() -> None:
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 2, 1, 1)  # 2 classes, 2 voxels
    t = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).T.reshape(1, 2, 2, 1, 1)
    temp = 2.0
    expected = 0.0
    for v in range(2):
        p_t = F.softmax(t[0, :, v, 0, 0] / temp, 0)
        p_s = F.softmax(s[0, :, v, 0, 0] / temp, 0)
        expected += float((p_t * (p_t / p_s).log()).sum()) / 2
    assert kd_kl_loss(s, t, temp).item() == pytest.approx(expected * temp**2, rel=1e-6)
    assert kd_kl_loss(t, t, temp).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="same out_channels"):
        kd_kl_loss(s, torch.zeros(1, 3, 2, 1, 1))


def test_distillation_loss_weights_and_features() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4)
    y = torch.randint(0, 3, (2, 1, 4, 4, 4))
    seg_only = DistillationLoss(kd_weight=0.0)(s, y, t)
    both = DistillationLoss(kd_weight=0.5, temperature=3.0)(s, y, t)
    assert both.item() == pytest.approx(seg_only.item() + 0.5 * kd_kl_loss(s, t, 3.0).item(), rel=1e-5)
    fs, ft = torch.randn(2, 8, 2, 2, 2), torch.randn(2, 8, 2, 2, 2)
    crit = DistillationLoss(seg_weight=0.0, kd_weight=0.0, feature_weight=2.0)
    assert crit(s, y, t, [(fs, ft)]).item() == pytest.approx(2.0 * F.mse_loss(fs, ft).item(), rel=1e-5)
    assert set(crit.last) == {"seg", "feature"}


def test_distiller_hook_runs_frozen_teacher_and_projects_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = create_model("ultralight_unet3d_t", out_channels=3)
    teacher = create_model("ultralight_unet3d_s", out_channels=3)
    ckpt = tmp_path / "teacher.pt"
    torch.save({"model": teacher.state_dict()}, ckpt)  # resume-style checkpoint is accepted too
    fresh_teacher = create_model("ultralight_unet3d_s", out_channels=3)
    dist = Distiller(student, fresh_teacher, ckpt, DistillationLoss(feature_weight=1.0), {"encoders.4": "encoders.4"})
    for a, b in zip(fresh_teacher.state_dict().values(), teacher.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # weights loaded from the checkpoint
    assert not fresh_teacher.training and not any(p.requires_grad for p in fresh_teacher.parameters())
    proj = dist.projections["encoders_4"]
    assert (proj.in_channels, proj.out_channels) == (32, 80)  # t bottleneck width -> s bottleneck width
    assert [p.shape for p in dist.trainable_parameters()] == [p.shape for p in proj.parameters()]
    x, y = torch.randn(2, 1, 32, 32, 32), torch.randint(0, 3, (2, 1, 32, 32, 32))
    dist.train()
    assert not fresh_teacher.training
    student.train()
    loss = dist(student(x), y)
    assert set(dist.criterion.last) == {"seg", "kd", "feature"} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in fresh_teacher.parameters())
    assert proj.weight.grad is not None and student.head.weight.grad is not None  # type: ignore[union-attr]
    student.eval()
    with torch.no_grad():
        dist(student(x), y)  # eval: no teacher pass, segmentation loss only
    assert set(dist.criterion.last) == {"seg"}
    with pytest.raises(UserInputError, match="teacher checkpoint .*missing.pt not found"):
        Distiller(student, fresh_teacher, tmp_path / "missing.pt")
    with pytest.raises(UserInputError, match="no module 'nope'"):
        Distiller(student, fresh_teacher, None, feature_layers={"nope": "encoders.4"})
    diverged = {k: v.clone() for k, v in teacher.state_dict().items()}
    next(v for v in diverged.values() if v.is_floating_point()).fill_(float("nan"))
    torch.save(diverged, tmp_path / "diverged.pt")
    with pytest.raises(UserInputError, match="non-finite weights"):  # checkpoint rules of ultralight3d.checkpoint
        Distiller(student, fresh_teacher, tmp_path / "diverged.pt")


def _dataset(root: Path, n: int = 2, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    items = []
    for i in range(n):
        lab = np.zeros((size,) * 3, np.uint8)
        lab[8:20, 8:24, 6:26] = 1
        img = (100 + 80 * lab + rng.normal(0, 10, lab.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(root / f"imagesTr/c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / f"labelsTr/c{i}.nii.gz"))
        items.append({"image": f"imagesTr/c{i}.nii.gz", "label": f"labelsTr/c{i}.nii.gz", "fold": i, "case": f"c{i}"})
    dl = {"name": "syn", "description": "synthetic", "labels": {"0": "background", "1": "fg"}, "channels": ["T1"],
          "training": items, "test": []}  # fmt: skip
    (root / "datalist.json").write_text(json.dumps(dl))
    return root


def test_distillation_through_the_bundle_runner(tmp_path: Path) -> None:
    """train.json + distill.json run by MONAI's ConfigWorkflow: the student learns, the teacher does not change."""
    bundle = tmp_path / "bundles" / "custom_ultralight_unet3d"
    shutil.copytree(REPO_ROOT / "bundles" / "custom_ultralight_unet3d", bundle,
                    ignore=shutil.ignore_patterns("runs", "*.pt", "model.json"))  # fmt: skip
    data = _dataset(tmp_path / "data")
    torch.manual_seed(1)
    teacher = create_model("ultralight_unet3d_s", in_channels=1, out_channels=2)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    overrides: dict[str, Any] = {
        "bundle_root": str(bundle), "dataset_dir": str(data), "patch_size": [32, 32, 32], "max_iterations": 2,
        "val_interval": 2, "checkpoint_interval": 2, "num_workers": 0, "cache_rate": 0.0, "run_name": "distill",
        "sw_batch_size": 1,
        "variant": "t", "teacher_model_name": "ultralight_unet3d_s", "teacher_checkpoint": str(tmp_path / "teacher.pt"),
        "kd_temperature": 3.0,
    }  # fmt: skip
    configs = [str(bundle / "configs" / "train.json"), str(bundle / "configs" / "distill.json")]
    wf = ConfigWorkflow(config_file=configs, workflow_type="train", logging_file=False, **overrides)
    wf.initialize()
    student = wf.parser.get_parsed_content("network")
    distiller = wf.parser.get_parsed_content("distiller")
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.loss_function is distiller and distiller.student is student
    assert distiller.criterion.temperature == 3.0
    start = {k: v.clone() for k, v in student.state_dict().items()}
    wf.run()
    wf.finalize()
    out = trainer.state.output[0] if isinstance(trainer.state.output, list) else trainer.state.output
    assert trainer.state.iteration == 2 and math.isfinite(float(out["loss"]))
    assert set(distiller.criterion.last) == {"seg", "kd"}
    for k, v in distiller.teacher.state_dict().items():  # frozen: weights and BN statistics unchanged
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, start[k]) for k, v in student.state_dict().items() if v.is_floating_point())
    saved = torch.load(bundle / "runs" / "distill" / "model.pt", map_location="cpu", weights_only=True)
    assert set(saved) == set(start)  # the checkpoint holds the student only (inference.json is unchanged)
    card = json.loads((bundle / "models" / "model.json").read_text())
    assert card["model_name"] == "ultralight_unet3d_t" and card["out_channels"] == 2  # the student's card
