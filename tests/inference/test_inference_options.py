"""Issue 11: ``--roi-subset``, ``--per-class``, ``--statistics``, ``--continue``, ``--threads``, ensembles of several
``--checkpoint``s, and the predictor entry for a loaded MONAI data dict."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import slicerio
import torch
from monai.transforms import EnsureChannelFirstd, LoadImaged

from ultralight3d import create_model
from ultralight3d.checkpoint import ModelCard, write_model_card
from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.inference import Predictor, build_preprocessing, default_threads, label_statistics
from ultralight3d.io import ImageData
from ultralight3d.labels import LabelTable

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # 0.002 ml voxels


def organs() -> np.ndarray:
    """An "aorta" box of 100..109 (x index 0..9, 50 voxels each), a "liver" box of 200 (640 voxels)."""
    rng = np.random.default_rng(1)
    vol = rng.random((32, 32, 24)).astype(np.float32)
    vol[4:14, 4:14, 4:9] = 100 + np.arange(10, dtype=np.float32)[:, None, None]
    vol[20:28, 18:28, 12:20] = 200
    return vol


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def threshold_bundle(tmp_path_factory, make_threshold_bundle_fn):
    return make_threshold_bundle_fn(tmp_path_factory.mktemp("opt") / "synapse_threshold")


def _save(path, vol=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(organs() if vol is None else vol, AFFINE), path)
    return path


def test_roi_subset_per_class_and_statistics(threshold_bundle, tmp_path):
    src = _save(tmp_path / "in" / "abdo.nii.gz")
    out = tmp_path / "out"
    args = ["predict", "-i", str(src), "-o", str(out), "--bundle", str(threshold_bundle), "--device", "cpu"]
    assert main(args + ["--quiet", "--roi-subset", "Liver", "--per-class", "--statistics", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    vol = organs()
    seg = np.asarray(nib.load(out / "abdo_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(seg, np.where(vol > 150, 5, 0))  # the aorta is not in the subset
    segments = slicerio.read_segmentation(str(out / "abdo.seg.nrrd"), skip_voxels=True)["segments"]
    assert [(s["labelValue"], s["name"]) for s in segments] == [(5, "liver")]
    assert sorted(p.name for p in (out / "abdo_classes").iterdir()) == ["liver_seg.nii.gz"]
    mask = nib.load(out / "abdo_classes" / "liver_seg.nii.gz")
    assert mask.get_data_dtype() == np.uint8 and np.allclose(mask.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), (vol > 150).astype(np.uint8))
    stats = json.loads((out / "abdo_statistics.json").read_text())["classes"]
    assert [(s["value"], s["voxels"], s["volume_ml"]) for s in stats] == [(5, 640, pytest.approx(1.28))]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threads"] == 1 and summary["cases"][0]["roi_subset"] == [5]

    # every class: the statistics of the aorta box against hand-computed numbers
    out2 = tmp_path / "all"
    assert main(["predict", "-i", str(src), "-o", str(out2), "--bundle", str(threshold_bundle), "--statistics"]) == 0
    with open(out2 / "abdo_statistics.csv", newline="") as fh:
        rows = {int(r["value"]): r for r in csv.DictReader(fh)}
    aorta = rows[1]
    assert (aorta["name"], int(aorta["voxels"]), float(aorta["volume_ml"])) == ("aorta", 500, 1.0)
    # values 100..109, 50 voxels each: mean 104.5, std sqrt(mean((i - 4.5)^2)) = sqrt(8.25), median 104.5,
    # p5 = sorted[24.95] = 100, p95 = sorted[474.05] = 109
    got = [float(aorta[f"CT_{k}"]) for k in ("mean", "std", "median", "p5", "p95")]
    assert got == pytest.approx([104.5, np.sqrt(8.25), 104.5, 100.0, 109.0])
    assert rows[2]["voxels"] == "0" and rows[2]["CT_mean"] == ""  # gallbladder: empty class, no intensities
    assert sorted(p.name for p in out2.iterdir() if p.name.endswith("_statistics.json")) == ["abdo_statistics.json"]


def test_label_statistics_per_channel():
    arr = np.zeros((2, 4, 4, 4), np.float32)
    arr[0, :2] = np.arange(32, dtype=np.float32).reshape(2, 4, 4)  # T2: 0..31 inside the class
    arr[1] = 7.0  # ADC: constant
    label = np.zeros((4, 4, 4), np.uint8)
    label[:2] = 1
    image = ImageData(arr, np.diag([2.0, 2.0, 2.0, 1.0]), "x")
    (row,) = label_statistics(label, image, LabelTable.from_names({1: "lesion"}), ["T2", "ADC"])
    assert row["voxels"] == 32 and row["volume_ml"] == pytest.approx(32 * 8 / 1000)
    t2 = row["intensity"]["T2"]
    assert t2["mean"] == 15.5 and t2["median"] == 15.5 and t2["std"] == pytest.approx(np.sqrt((32**2 - 1) / 12))
    assert (t2["p5"], t2["p95"]) == pytest.approx((0.05 * 31, 0.95 * 31))
    assert row["intensity"]["ADC"] == {"mean": 7.0, "std": 0.0, "median": 7.0, "p5": 7.0, "p95": 7.0}


def test_roi_subset_unknown_class_is_refused_before_computing(threshold_bundle, tmp_path, capsys):
    src = _save(tmp_path / "in" / "abdo.nii.gz")
    argv = ["predict", "-i", str(src), "-o", str(tmp_path / "o"), "--bundle", str(threshold_bundle), "--quiet"]
    assert main(argv + ["--roi-subset", "liver", "brain"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --roi-subset: unknown class 'brain'; this model's classes are 1='aorta', ")
    assert not (tmp_path / "o").exists()


def test_continue_skips_exactly_the_finished_case(threshold_bundle, tmp_path, capsys):
    for case in ("a", "b", "c"):
        _save(tmp_path / "in" / f"{case}.nii.gz")
    out = tmp_path / "out"
    base = ["predict", "-o", str(out), "--bundle", str(threshold_bundle), "--device", "cpu", "--quiet"]
    assert main(base + ["-i", str(tmp_path / "in" / "a.nii.gz")]) == 0
    before = (out / "a_seg.nii.gz").stat().st_mtime_ns
    # "c" was interrupted: an output file but no record
    (out / "c_seg.nii.gz").write_bytes((out / "a_seg.nii.gz").read_bytes())
    capsys.readouterr()
    assert main(base + ["-i", str(tmp_path / "in")]) == 2  # without --continue: refused, nothing computed
    assert "pass --overwrite to replace them, --continue to skip finished cases" in capsys.readouterr().err
    assert main(base + ["-i", str(tmp_path / "in"), "--continue"]) == 0
    assert "2/3 case(s) segmented, 1 skipped (already complete)" in capsys.readouterr().out
    assert (out / "a_seg.nii.gz").stat().st_mtime_ns == before  # the finished case was not touched
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["case"], r["status"]) for r in summary["cases"]] == [("a", "ok"), ("b", "ok"), ("c", "ok")]
    # a new output option makes a finished case incomplete: it is computed again
    assert main(base + ["-i", str(tmp_path / "in" / "a.nii.gz"), "--continue", "--statistics"]) == 0
    assert (out / "a_statistics.json").is_file() and (out / "a_seg.nii.gz").stat().st_mtime_ns != before


def test_overwrite_and_continue_exclude_each_other(capsys):
    assert main(["predict", "-i", "x", "-o", "y", "--overwrite", "--continue"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --continue: not allowed with argument --overwrite" in err


def _checkpoint(path, seed, labels):
    torch.manual_seed(seed)
    n = len(labels)
    net = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=n)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": n}
    write_model_card(
        path,
        ModelCard(
            model_name="ultralight_unet3d_t",
            network_kwargs=kwargs,
            in_channels=1,
            out_channels=n,
            channel_names=["image"],
            labels=labels,
            protocol="generic",
            patch_size=[32, 32, 32],
        ),
    )
    return path


LABELS = [{"value": 0, "name": "background"}, {"value": 1, "name": "foreground"}]


def test_ensemble_is_the_mean_of_the_softmax(tmp_path):
    a = _checkpoint(tmp_path / "f0" / "model.pt", 0, LABELS)
    b = _checkpoint(tmp_path / "f1" / "model.pt", 1, LABELS)
    cpu = {"device": "cpu", "progress": False}
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 32, 32, 32)).astype(np.float32))
    pa = Predictor.from_checkpoint(a, **cpu).predict_probabilities(x)
    pb = Predictor.from_checkpoint(b, **cpu).predict_probabilities(x)
    ens = Predictor.from_checkpoint([a, b], **cpu)
    assert len(ens.models) == 2 and ens.checkpoints == [str(a), str(b)]
    assert (pa - pb).abs().max() > 1e-3  # the two folds differ ...
    torch.testing.assert_close(ens.predict_probabilities(x), (pa + pb) / 2, rtol=0, atol=1e-5)  # ... mean of both
    # one network, two checkpoints: the same ensemble
    net = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=2)
    direct = Predictor(net, build_preprocessing("generic", {}), checkpoint=[a, b], roi_size=(32, 32, 32), **cpu)
    torch.testing.assert_close(direct.predict_probabilities(x), (pa + pb) / 2, rtol=0, atol=1e-5)
    # members describing other classes are refused
    c = _checkpoint(tmp_path / "f2" / "model.pt", 2, [*LABELS[:1], {"value": 1, "name": "tumour"}])
    with pytest.raises(UserInputError, match="each checkpoint must describe the same classes"):
        Predictor.from_checkpoint([a, c], **cpu)


def test_cli_ensemble_of_two_checkpoints(tmp_path, capsys):
    a = _checkpoint(tmp_path / "f0" / "model.pt", 0, LABELS)
    b = _checkpoint(tmp_path / "f1" / "model.pt", 1, LABELS)
    src = _save(tmp_path / "in" / "s.nii.gz", np.random.default_rng(0).normal(size=(32, 32, 24)).astype(np.float32))
    out = tmp_path / "out"
    argv = ["predict", "-i", str(src), "-o", str(out), "--device", "cpu", "--quiet", "--probabilities"]
    assert main(argv + ["--checkpoint", str(a), "--checkpoint", str(b)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ensemble_size"] == 2 and summary["checkpoints"] == [str(a), str(b)]
    assert main(argv[:4] + [str(tmp_path / "one"), *argv[5:], "--checkpoint", str(a)]) == 0
    p_ens = np.asarray(nib.load(out / "s_probs.nii.gz").dataobj)
    p_one = np.asarray(nib.load(tmp_path / "one" / "s_probs.nii.gz").dataobj)
    assert np.abs(p_ens - p_one).max() > 1e-3
    assert main(argv + ["--checkpoint", str(a), str(a)]) == 2
    assert "the same file is given twice" in capsys.readouterr().err


def test_default_threads_is_physical_and_available():
    import os

    n = default_threads()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_predict_data_takes_a_loaded_monai_dict(threshold_net, tmp_path):
    vol = organs()
    path = _save(tmp_path / "ct.nii.gz", vol)
    data = EnsureChannelFirstd("image")(LoadImaged("image", image_only=True)({"image": str(path)}))
    pred = Predictor(
        threshold_net,
        build_preprocessing("generic", {"normalization": {"kind": "none"}}),
        labels=LabelTable.from_names({1: "aorta"}),
        roi_size=(32, 32, 32),
        progress=False,
    )
    out = pred(data)
    assert out["image"] is data["image"] and out["pred"].shape == (1, 32, 32, 24)
    np.testing.assert_allclose(out["pred"].affine.numpy(), data["image"].affine.numpy())
    np.testing.assert_array_equal(out["pred"].numpy()[0], (vol > 50).astype(np.uint8))
