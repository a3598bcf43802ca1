"""Geometry: predictions land on the input's exact grid for oblique, flipped (LPS/RAS) and anisotropic inputs.

A thresholding stand-in network makes the expected mask known voxel for voxel.
"""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from ultralight3d.inference import Predictor, build_preprocessing
from ultralight3d.labels import Label, LabelTable

PROTO_NO_NORM = {"normalization": {"kind": "none"}}


def _rot(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


AFFINES = {
    "ras_identity": np.eye(4),
    "lps_flipped": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "anisotropic_flipped_z": np.diag([0.6, 0.9, -3.5, 1.0]),
    "oblique_anisotropic": np.block(
        [
            [_rot(0.3, -0.2, 0.5) @ np.diag([0.8, 1.5, 3.0]), np.array([[12.0], [-40], [7]])],
            [np.zeros((1, 3)), np.ones((1, 1))],
        ]
    ),
    "permuted_axes": np.array([[0, 0, -2.0, 30], [1.2, 0, 0, -5], [0, -0.7, 0, 9], [0, 0, 0, 1]]),
}


def _write(vol: np.ndarray, affine: np.ndarray, path) -> None:
    name = str(path)
    if name.endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(vol, affine), name)
    elif name.endswith(".nrrd"):
        lps = np.diag([-1.0, -1, 1, 1]) @ affine
        nrrd.write(
            name,
            vol,
            {
                "space": "left-posterior-superior",
                "space directions": lps[:3, :3].T,
                "space origin": lps[:3, 3],
                "kinds": ["domain"] * 3,
            },
        )
    else:  # .mha through ITK
        img = sitk.GetImageFromArray(vol.transpose(2, 1, 0))
        lps = np.diag([-1.0, -1, 1, 1]) @ affine
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        img.SetSpacing(spacing.tolist())
        img.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
        img.SetOrigin(lps[:3, 3].tolist())
        sitk.WriteImage(img, name)


@pytest.mark.parametrize("name", list(AFFINES))
def test_threshold_mask_lands_on_input_voxels(name, tmp_path, threshold_net, phantom):
    affine = AFFINES[name]
    (tmp_path / "in").mkdir()
    _write(phantom, affine, tmp_path / "in" / "case.nii.gz")
    pred = Predictor(
        threshold_net,
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        overlap=0.25,
        progress=False,
    )
    run = pred.predict(tmp_path / "in", tmp_path / "out")
    assert run.ok, run.cases[0].error
    out = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, nib.load(tmp_path / "in" / "case.nii.gz").affine, atol=0)
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 1
    np.testing.assert_allclose(out.get_qform(), out.get_sform(), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.dataobj), (phantom > 50).astype(np.uint8))
    # ITK (3D Slicer's reader) sees the input's direction, origin and spacing
    a = sitk.ReadImage(str(tmp_path / "in" / "case.nii.gz"))
    b = sitk.ReadImage(str(tmp_path / "out" / "case_seg.nii.gz"))
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(b.GetSpacing(), a.GetSpacing(), atol=1e-5)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_mha_inputs(suffix, tmp_path, threshold_net, phantom):
    affine = AFFINES["oblique_anisotropic"]
    src = tmp_path / f"scan{suffix}"
    _write(phantom, affine, src)
    pred = Predictor(
        threshold_net,
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        overlap=0.25,
        progress=False,
    )
    run = pred.predict(src, tmp_path / "out")
    assert run.ok, run.cases[0].error
    out = nib.load(tmp_path / "out" / "scan_seg.nii.gz")
    np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.dataobj), (phantom > 50).astype(np.uint8))
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(str(tmp_path / "out" / "scan_seg.nii.gz"))
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-4)
    # the .seg.nrrd is in LPS on the same grid
    seg = slicerio.read_segmentation(str(tmp_path / "out" / "scan.seg.nrrd"))
    np.testing.assert_allclose(seg["ijkToLPS"], np.diag([-1.0, -1, 1, 1]) @ affine, atol=1e-5)
    np.testing.assert_array_equal(seg["voxels"], (phantom > 50).astype(np.uint8))


def test_resampling_pipeline_inverts_to_input_grid(tmp_path, threshold_net, phantom):
    affine = AFFINES["oblique_anisotropic"]
    _write(phantom, affine, tmp_path / "case.nii.gz")
    pre = build_preprocessing("generic", {**PROTO_NO_NORM, "spacing": [1.0, 1.0, 1.0]})
    pred = Predictor(
        threshold_net, preprocessing=pre, roi_size=(32, 32, 32), sw_batch_size=8, overlap=0.25, progress=False
    )
    res = pred.predict(tmp_path / "case.nii.gz", tmp_path / "out", save_probabilities=True)
    assert res.ok
    out = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    np.testing.assert_allclose(out.affine, nib.load(tmp_path / "case.nii.gz").affine, atol=0)
    got, want = np.asarray(out.dataobj) > 0, phantom > 50
    dice = 2 * (got & want).sum() / (got.sum() + want.sum())
    assert got.shape == want.shape and dice > 0.9, dice
    probs = nib.load(tmp_path / "out" / "case_probs.nii.gz")
    assert probs.shape == (*phantom.shape, 2)
    np.testing.assert_allclose(np.asarray(probs.dataobj).sum(-1), 1.0, atol=1e-4)


def test_flip_tta_keeps_a_symmetric_decision(tmp_path, threshold_net, phantom):
    _write(phantom, AFFINES["lps_flipped"], tmp_path / "case.nii.gz")
    pred = Predictor(
        threshold_net,
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        overlap=0.25,
        tta=True,
        tta_axes=(0, 2),
        progress=False,
    )
    res = pred.predict(tmp_path / "case.nii.gz", tmp_path / "out")
    assert res.ok
    np.testing.assert_array_equal(res.cases[0].label, (phantom > 50).astype(np.uint8))


def test_seg_nrrd_segments_from_label_table(tmp_path, threshold_net, phantom):
    _write(phantom, AFFINES["ras_identity"], tmp_path / "case.nii.gz")
    table = LabelTable([Label(1, "prostate gland", (200, 10, 30, 255))])
    pred = Predictor(
        threshold_net,
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        labels=table,
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        progress=False,
    )
    run = pred.predict(tmp_path / "case.nii.gz", tmp_path / "out")
    assert run.ok
    seg = slicerio.read_segmentation(str(tmp_path / "out" / "case.seg.nrrd"))
    (segment,) = seg["segments"]
    assert segment["name"] == "prostate gland" and segment["labelValue"] == 1
    np.testing.assert_allclose(segment["color"], [200 / 255, 10 / 255, 30 / 255], atol=1e-5)
    header = nrrd.read_header(str(tmp_path / "out" / "case.seg.nrrd"))
    assert header["Segment0_Name"] == "prostate gland" and header["space"] == "left-posterior-superior"
    assert (tmp_path / "out" / "labels.ctbl").read_text().splitlines()[2:] == [
        "0 background 0 0 0 0",
        "1 prostate_gland 200 10 30 255",
    ]
    assert (tmp_path / "out" / "labels.csv").read_text().splitlines() == [
        "LabelValue,Name,Color_R,Color_G,Color_B,Color_A",
        "1,prostate gland,200,10,30,255",
    ]


def test_onnxruntime_engine_gives_the_same_mask(tmp_path, threshold_net, phantom):
    import torch

    onnx_path = tmp_path / "thr.onnx"
    torch.onnx.export(
        threshold_net,
        torch.zeros(1, 1, 32, 32, 32),
        str(onnx_path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    _write(phantom, AFFINES["oblique_anisotropic"], tmp_path / "case.nii.gz")
    pred = Predictor(
        onnx_path,
        engine="onnxruntime",
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        overlap=0.25,
        progress=False,
    )
    run = pred.predict(tmp_path / "case.nii.gz", tmp_path / "out")
    assert run.ok, run.cases[0].error
    np.testing.assert_array_equal(run.cases[0].label, (phantom > 50).astype(np.uint8))


def test_preview_png(tmp_path, threshold_net, phantom):
    _write(phantom, AFFINES["anisotropic_flipped_z"], tmp_path / "case.nii.gz")
    pred = Predictor(
        threshold_net,
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        progress=False,
    )
    run = pred.predict(tmp_path / "case.nii.gz", tmp_path / "out", preview=True, seg_nrrd=False)
    assert run.ok, run.cases[0].error
    png = tmp_path / "out" / "case_preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and run.cases[0].files["preview"] == str(png)
    assert not (tmp_path / "out" / "case.seg.nrrd").exists()


@pytest.mark.gpu
def test_cuda_amp_with_cpu_stitching(tmp_path, threshold_net, phantom):
    _write(phantom, AFFINES["oblique_anisotropic"], tmp_path / "case.nii.gz")
    pred = Predictor(
        threshold_net,
        preprocessing=build_preprocessing("generic", PROTO_NO_NORM),
        roi_size=(32, 32, 32),
        sw_batch_size=8,
        device="cuda",
        stitch_device="cpu",
        amp=True,
        progress=False,
    )
    run = pred.predict(tmp_path / "case.nii.gz", tmp_path / "out")
    assert run.ok, run.cases[0].error
    np.testing.assert_array_equal(run.cases[0].label, (phantom > 50).astype(np.uint8))


def test_cuda_request_without_gpu_is_a_clear_error(threshold_net):
    import torch

    from ultralight3d.errors import UserInputError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(
        UserInputError, match=r"device cuda was requested but PyTorch sees no CUDA GPU; use --device cpu"
    ):
        Predictor(threshold_net, device="cuda")
