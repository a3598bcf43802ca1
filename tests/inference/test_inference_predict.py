"""End to end with the real network from a bundle folder: API, CLI, outputs, safety (overwrite, failures, exit code)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from ultralight3d import create_model
from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.inference import Predictor, load_checkpoint

AFFINE = np.array([[0.0, 0, -1.5, 40], [-0.9, 0, 0, 10], [0, 1.1, 0, -7], [0, 0, 0, 1]])  # permuted, flipped, aniso
IDS = {"roi_size": [64, 64, 64], "sw_batch_size": 1, "overlap": 0.25, "progress": False}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle_fn):
    return make_bundle_fn(tmp_path_factory.mktemp("b") / "custom", protocol="generic", **IDS)


def _case(path, phantom, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(phantom, affine), path)
    return path


def test_bundle_predict_matches_direct_network(bundle, tmp_path, phantom):
    src = _case(tmp_path / "in" / "sub01.nii.gz", phantom, np.diag([0.9, 1.1, 1.5, 1.0]))  # RAS: no reorientation
    predictor = Predictor.from_bundle(bundle, overrides={"device": "$torch.device('cpu')"})
    assert predictor.roi_size == (64, 64, 64) and predictor.channels == ["image"]
    run = predictor.predict(src, tmp_path / "out")
    assert run.ok, run.cases[0].error
    label = nib.load(tmp_path / "out" / "sub01_seg.nii.gz")
    assert label.get_data_dtype() == np.uint8 and label.shape == phantom.shape
    # the same network, loaded by hand, run on the z-scored image: same argmax
    net = load_checkpoint(
        create_model("ultralight_unet3d_t", in_channels=1, out_channels=2), bundle / "models" / "model.pt"
    ).eval()
    x = torch.from_numpy((phantom - phantom[phantom != 0].mean()) / phantom[phantom != 0].std())[None, None]
    with torch.no_grad():
        want = sliding_window_inference(x, (64, 64, 64), 1, net, overlap=0.25, mode="gaussian").argmax(1)[0].numpy()
    got = np.asarray(label.dataobj)
    assert (got == want).mean() > 0.999
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (rec,) = summary["cases"]
    assert rec["status"] == "ok" and summary["labels"] == {"1": "foreground"}
    assert set(rec["timings_s"]) >= {"read", "preprocess", "network", "stitch", "invert", "write", "total"}
    assert rec["volume_ml"]["1"] == pytest.approx((got == 1).sum() * 0.9 * 1.1 * 1.5 / 1000, abs=1e-3)


def test_cli_outputs_failures_and_overwrite(bundle, tmp_path, phantom, capsys):
    _case(tmp_path / "in" / "good.nii.gz", phantom)
    bad = phantom.copy()
    bad[0, 0, 0] = np.nan
    _case(tmp_path / "in" / "bad.nii.gz", bad)
    out = tmp_path / "out"
    args = [
        "predict",
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(out),
        "--bundle",
        str(bundle),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(args) == 1  # one case failed
    assert sorted(p.name for p in out.iterdir()) == [
        "good.seg.nrrd",
        "good_seg.nii.gz",
        "labels.csv",
        "labels.ctbl",
        "records",
        "summary.csv",
        "summary.json",
    ]
    assert sorted(p.name for p in (out / "records").iterdir() if not p.name.startswith(".")) == [
        "bad.json",
        "good.json",
    ]  # one record per case, no lock left behind
    seg = nib.load(out / "good_seg.nii.gz")
    np.testing.assert_allclose(seg.affine, AFFINE)
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
    recs = {r["case"]: r for r in json.loads((out / "summary.json").read_text())["cases"]}
    assert recs["good"]["status"] == "ok"
    assert recs["bad"]["status"] == "failed" and "bad.nii.gz has 1 NaN/inf voxel(s)" in recs["bad"]["error"]
    assert "1/2 case(s) segmented" in capsys.readouterr().out
    # nothing is overwritten without --overwrite: one clear error, exit code 2, files untouched
    before = (out / "good_seg.nii.gz").stat().st_mtime_ns
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 output file(s) already exist (") and "pass --overwrite to replace them" in err
    assert (out / "good_seg.nii.gz").stat().st_mtime_ns == before
    (tmp_path / "in" / "bad.nii.gz").unlink()
    assert main(args + ["--overwrite"]) == 0
    assert not list(out.glob(".*")) and not list((out / "records").glob(".*.json"))  # no temporary files left
    # the summary is rebuilt from the folder's records: the earlier failure of "bad" stays on record
    recs = {r["case"]: r["status"] for r in json.loads((out / "summary.json").read_text())["cases"]}
    assert recs == {"bad": "failed", "good": "ok"}


def test_unwritable_output_folder(bundle, tmp_path, phantom):
    src = _case(tmp_path / "a.nii.gz", phantom)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    predictor = Predictor.from_bundle(bundle, overrides={"device": "$torch.device('cpu')"})
    with pytest.raises(UserInputError, match=r"output folder .*afile is a file; choose a folder path for -o"):
        predictor.predict(src, blocker)
    with pytest.raises(UserInputError, match=r"cannot create output folder .*afile/sub.*choose a writable folder"):
        predictor.predict(src, blocker / "sub")


def test_bundle_errors(bundle, tmp_path):
    with pytest.raises(UserInputError, match=r"nobundle/configs/inference\.json not found; --bundle must be a bundle"):
        Predictor.from_bundle(tmp_path / "nobundle")
    with pytest.raises(UserInputError, match=r"checkpoint .*missing\.pt not found; train the bundle first"):
        Predictor.from_bundle(bundle, checkpoint=tmp_path / "missing.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": create_model("ultralight_unet3d_s", in_channels=1, out_channels=2).state_dict()}, wrong)
    with pytest.raises(UserInputError, match=r"checkpoint .*wrong\.pt does not fit the network"):
        Predictor.from_bundle(bundle, checkpoint=wrong)


def test_monai_bundle_run_uses_same_path(bundle, tmp_path, phantom):
    """``python -m monai.bundle run`` on inference.json (what model-zoo users and Slicer's backend do)."""
    from monai.bundle import ConfigWorkflow

    _case(tmp_path / "data" / "imagesTs" / "s1.nii.gz", phantom)
    wf = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"),
        workflow_type="infer",
        logging_file=False,
        meta_file=None,
        bundle_root=str(bundle),
        dataset_dir=str(tmp_path / "data"),
        output_dir=str(tmp_path / "eval"),
        device="$torch.device('cpu')",
    )
    wf.initialize()
    assert wf.check_properties() in ([], None)
    wf.run()
    wf.finalize()
    seg = nib.load(tmp_path / "eval" / "s1_seg.nii.gz")
    np.testing.assert_allclose(seg.affine, AFFINE)
    assert (tmp_path / "eval" / "s1.seg.nrrd").is_file()


def test_cpu_fast_path_is_default_and_equal_to_plain(bundle, phantom):
    from ultralight3d.networks.optimize import is_optimized

    cpu = {"device": "$torch.device('cpu')", "progress": False, "engine": "torch"}
    fast = Predictor.from_bundle(bundle, overrides=cpu)
    plain = Predictor.from_bundle(bundle, overrides={**cpu, "optimize": False})
    assert is_optimized(fast.model) and not is_optimized(plain.model)
    x = torch.from_numpy((phantom - phantom.mean()) / phantom.std()).float()[None]  # (1, X, Y, Z), odd sizes
    p_fast, p_plain = fast.predict_probabilities(x), plain.predict_probabilities(x)
    assert p_fast.shape == (2,) + phantom.shape
    torch.testing.assert_close(p_fast, p_plain, rtol=0, atol=1e-4)


def test_cli_inference_options(bundle, tmp_path, phantom):
    """Every inference option of ``predict`` changes what the summary and the output folder say."""
    src = _case(tmp_path / "in" / "p.nii.gz", phantom)
    out = tmp_path / "a"
    rc = main(
        [
            "predict",
            "--input",
            str(src),
            "--output",
            str(out),
            "--bundle",
            str(bundle),
            "--device",
            "cpu",
            "--stitch-device",
            "cpu",
            "--overlap",
            "0.25",
            "--sw-batch-size",
            "3",
            "--roi-size",
            "64",
            "64",
            "32",
            "--tta",
            "--no-amp",
            "--plain",
            "--engine",
            "torch",
            "--probabilities",
            "--no-seg-nrrd",
            "--preview",
            "--quiet",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.csv",
        "labels.ctbl",
        "p_preview.png",
        "p_probs.nii.gz",
        "p_seg.nii.gz",
        "records",
        "summary.csv",
        "summary.json",
    ]  # no .seg.nrrd
    summary = json.loads((out / "summary.json").read_text())
    assert {
        k: summary[k]
        for k in (
            "engine",
            "roi_size",
            "overlap",
            "sw_batch_size",
            "tta",
            "amp",
            "device",
            "stitch_device",
            "cpu_fast_path",
        )
    } == {
        "engine": "torch",
        "roi_size": [64, 64, 32],
        "overlap": 0.25,
        "sw_batch_size": 3,
        "tta": True,
        "amp": False,
        "device": "cpu",
        "stitch_device": "cpu",
        "cpu_fast_path": False,
    }
    probs = np.asarray(nib.load(out / "p_probs.nii.gz").dataobj)
    assert probs.shape == (*phantom.shape, 2) and np.allclose(probs.sum(-1), 1, atol=1e-4)
    seg = np.asarray(nib.load(out / "p_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(seg, probs.argmax(-1))
    # --set reaches any id of inference.json; defaults otherwise (fast path on, no TTA)
    rc = main(
        [
            "predict",
            "-i",
            str(src),
            "-o",
            str(tmp_path / "b"),
            "--bundle",
            str(bundle),
            "--device",
            "cpu",
            "--set",
            "overlap=0.75",
            "roi_size=[32, 32, 32]",
            "--engine",
            "torch",
            "--quiet",
        ]
    )
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert rc == 0 and (summary["overlap"], summary["roi_size"], summary["tta"]) == (0.75, [32, 32, 32], False)
    assert summary["cpu_fast_path"] is True and summary["engine"] == "torch"


def test_cli_onnxruntime_engine(bundle, tmp_path, phantom):
    from ultralight3d.export import export_onnx
    from ultralight3d.inference import load_bundle

    src = _case(tmp_path / "in" / "p.nii.gz", phantom)
    onnx = export_onnx(load_bundle(bundle).network, tmp_path / "m.onnx", example_size=(64, 64, 64))
    args = ["-i", str(src), "--bundle", str(bundle), "--device", "cpu", "--quiet"]
    assert (
        main(["predict", "-o", str(tmp_path / "ort"), "--engine", "onnxruntime", "--checkpoint", str(onnx)] + args) == 0
    )
    assert main(["predict", "-o", str(tmp_path / "pt")] + args) == 0
    assert json.loads((tmp_path / "ort" / "summary.json").read_text())["engine"] == "onnxruntime"
    a, b = (np.asarray(nib.load(tmp_path / d / "p_seg.nii.gz").dataobj) for d in ("ort", "pt"))
    assert (a == b).mean() > 0.999


def test_cli_dicom_seg_and_series(bundle, tmp_path, dicom_series_fn, capsys):
    rng = np.random.default_rng(0)
    vol = (rng.random((12, 40, 36)) * 10).astype(np.int16)
    vol[3:8, 10:30, 5:20] += 100
    uid = dicom_series_fn(vol, tmp_path / "dicom" / "s1")
    dicom_series_fn(vol[::-1], tmp_path / "dicom" / "s2")  # a second series: --series picks one
    base = [
        "predict",
        "-i",
        str(tmp_path / "dicom"),
        "--bundle",
        str(bundle),
        "--device",
        "cpu",
        "--quiet",
        "--series",
        uid,
    ]
    assert main(base + ["-o", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "a").glob("PAT1*")) == [
        "PAT1.seg.nrrd",
        "PAT1_seg.dcm",
        "PAT1_seg.nii.gz",
    ]
    assert main(base + ["-o", str(tmp_path / "b"), "--no-dicom-seg"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").glob("PAT1*")) == ["PAT1.seg.nrrd", "PAT1_seg.nii.gz"]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["n_cases"] == 1 and summary["cases"][0]["status"] == "ok"
