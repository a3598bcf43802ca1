"""Deep supervision in the bundles: ``--model_name egeunet3d`` trains with its five mask heads in the loss (the
paper's weights), every other network keeps the plain DiceCE loss, and the trained model predicts through
``ultralight3d predict --bundle`` from its card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers_ul3d import BUNDLES_DIR, bundle_cmd, copy_bundle, make_dataset, runner_env
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss

from ultralight3d.bundle.loss import DeepSupervisedLoss
from ultralight3d.checkpoint import read_model_card
from ultralight3d.errors import UserInputError

NAME = "custom_ultralight_unet3d"


def _parser(tmp_path: Path, data: Path, **overrides: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / NAME / "configs" / "train.json"))
    parser["bundle_root"] = str(tmp_path)
    parser["dataset_dir"] = str(data)
    parser["device"] = "$torch.device('cpu')"
    for key, value in overrides.items():
        parser[key] = value
    return parser


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds_data"), num_classes=3, channels=1, n_cases=2, n_folds=2)


def test_egeunet3d_trains_every_head_with_the_papers_weights(tmp_path: Path, data: Path) -> None:
    parser = _parser(tmp_path, data, model_name="egeunet3d")
    assert parser.get_parsed_content("deep_supervision") is True
    net, loss = parser.get_parsed_content("network"), parser.get_parsed_content("loss")
    torch.manual_seed(0)
    x, y = torch.randn(1, 1, 32, 32, 32), torch.randint(0, 3, (1, 1, 32, 32, 32))
    pred = net.train()(x)
    assert pred.shape == (1, 6, 3, 32, 32, 32)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    weights = (1.0, 0.5, 0.4, 0.3, 0.2, 0.1)  # final logits, then the heads from the shallowest to the deepest
    expected = sum(w * dice_ce(pred[:, k], y) for k, w in enumerate(weights))
    torch.testing.assert_close(loss(pred, y), expected)
    # the main head alone would give a different (smaller) loss: the heads do count
    assert float(loss(pred, y)) > float(dice_ce(pred[:, 0], y)) + 1e-3


def test_other_networks_keep_the_plain_loss(tmp_path: Path, data: Path) -> None:
    parser = _parser(tmp_path, data, variant="t")
    assert parser.get_parsed_content("deep_supervision") is None
    net, loss = parser.get_parsed_content("network"), parser.get_parsed_content("loss")
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 32, 32, 32), torch.randint(0, 3, (2, 1, 32, 32, 32))
    pred = net.train()(x)
    assert pred.shape == (2, 3, 32, 32, 32)
    torch.testing.assert_close(loss(pred, y), DiceCELoss(to_onehot_y=True, softmax=True)(pred, y))


def test_wrong_number_of_weights_is_one_clear_error() -> None:
    loss = DeepSupervisedLoss(DiceCELoss(to_onehot_y=True, softmax=True), weights=[1.0, 0.5])
    with pytest.raises(UserInputError, match="loss#weights"):
        loss(torch.randn(1, 3, 2, 8, 8, 8), torch.zeros(1, 1, 8, 8, 8))


def test_egeunet3d_trains_through_the_runner_and_predicts_from_its_card(tmp_path: Path, data: Path) -> None:
    bundle = copy_bundle(NAME, tmp_path)
    cmd = bundle_cmd(str(bundle / "configs/train.json"), "--dataset_dir", str(data), "--model_name", "egeunet3d",
                     "--patch_size", "[32,32,32]", "--max_iterations", "2", "--val_interval", "2",
                     "--checkpoint_interval", "2", "--num_workers", "0", "--cache_rate", "0", "--sw_batch_size", "1",
                     "--learning_rate", "0.003", "--run_name", "ege", "--device", "cpu")  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=runner_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (bundle / "runs" / "ege" / "FINISHED").read_text().strip() == "iteration=2"
    card = read_model_card(bundle / "models" / "model.pt")
    assert card is not None and card.model_name == "egeunet3d"
    assert card.network_kwargs.get("deep_supervision") is True and card.out_channels == 3
    losses = [float(r.split(",")[1]) for r in (bundle / "runs" / "ege" / "training_log.csv").read_text().split()[1:]]
    assert len(losses) == 2 and all(np.isfinite(losses))

    images = tmp_path / "images"
    images.mkdir()
    src = json.loads((data / "datalist.json").read_text())["training"][0]["image"]
    img = nib.load(str(data / src))
    nib.save(img, str(images / "case0.nii.gz"))
    out = tmp_path / "pred"
    res = subprocess.run([sys.executable, "-m", "ultralight3d.cli", "predict", "-i", str(images), "-o", str(out),
                          "--bundle", str(bundle), "--device", "cpu", "--quiet", "--no-seg-nrrd"],
                         env=runner_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (seg,) = [p for p in out.rglob("case0*.nii.gz")]
    pred = nib.load(str(seg))
    assert pred.shape == img.shape and np.allclose(pred.affine, img.affine)
    assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2}
