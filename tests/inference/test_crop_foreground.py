"""Issue 15, less work: ``--crop-foreground`` runs the sliding window over the foreground's bounding box only (the
body, not the air around it), background outside, on the input's exact grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch

from ultralight3d import create_model
from ultralight3d.cli import main
from ultralight3d.inference import Predictor
from ultralight3d.inference.predictor import foreground_box


def _ct(shape=(80, 72, 40)) -> np.ndarray:
    """Air (-1000 HU) around a box-shaped body (fat rim -100, tissue 40) with noise."""
    rng = np.random.default_rng(0)
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[20:61, 15:51, 6:30] = -100.0
    vol[23:58, 18:48, 8:28] = 40.0
    return vol + rng.normal(0, 10, size=shape).astype(np.float32)


def test_the_box_is_the_body_plus_the_margin_and_none_without_background():
    ct = torch.from_numpy(_ct())[None]
    assert foreground_box(ct, margin=4) == (slice(16, 65), slice(11, 55), slice(2, 34))
    assert foreground_box((ct - ct.mean()) / ct.std(), margin=4) == foreground_box(ct, margin=4)  # z-score invariant
    noise = torch.randn(1, 40, 40, 40, generator=torch.Generator().manual_seed(0))
    assert foreground_box(noise) is None  # foreground everywhere: nothing to gain
    assert foreground_box(torch.zeros(1, 8, 8, 8)) is None


def test_cropped_prediction_is_background_outside_and_written_on_the_input_grid(tmp_path):
    torch.manual_seed(0)
    net = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=2).eval()
    src = tmp_path / "ct.nii.gz"
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-30.0, 12.0, 4.0]
    nib.save(nib.Nifti1Image(_ct(), affine), src)
    common = {"roi_size": (32, 32, 32), "device": "cpu", "progress": False, "engine": "torch"}
    full = Predictor(net, **common).predict(src, tmp_path / "full").cases[0]
    cropped = Predictor(net, crop_foreground=True, **common).predict(src, tmp_path / "crop").cases[0]
    box = cropped.crop_box
    assert box is not None and full.crop_box is None
    assert full.timings["network"] > cropped.timings["network"] > 0  # fewer windows ran
    inside = np.zeros(cropped.label.shape, dtype=bool)
    inside[tuple(slice(a, b) for a, b in box)] = True  # RAS input: the network's grid is the input's
    assert not cropped.label[~inside].any()
    assert (cropped.label[inside] == full.label[inside]).mean() > 0.9  # only windows near the box edge differ
    written = nib.load(cropped.files["nifti"])
    assert np.allclose(written.affine, affine) and written.shape == _ct().shape
    record = json.loads((tmp_path / "crop" / "summary.json").read_text())
    assert record["crop_foreground"] is True and record["cases"][0]["crop_box"] == box


def test_cli_option_reaches_the_predictor(tmp_path):
    from ultralight3d.checkpoint import ModelCard, write_model_card

    torch.manual_seed(0)
    net = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=2)
    ckpt = tmp_path / "m.pt"
    torch.save(net.state_dict(), ckpt)
    card = ModelCard(
        model_name="ultralight_unet3d_t", network_kwargs={}, in_channels=1, out_channels=2, patch_size=[32, 32, 32]
    )
    write_model_card(ckpt, card)
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(_ct(), np.eye(4)), src)
    out = tmp_path / "out"
    argv = ["predict", "-i", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--crop-foreground", "--quiet"]
    assert main(argv) == 0
    case = json.loads((out / "summary.json").read_text())["cases"][0]
    assert case["crop_box"] is not None
