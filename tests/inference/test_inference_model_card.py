"""The model describes itself: ``model.json`` beside ``model.pt`` decides network, classes, protocol and patch size for
predict and export (issue 10); a contradicting option, or non-finite weights, is one clear error line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from ultralight3d import create_model
from ultralight3d.checkpoint import ModelCard, read_model_card, write_model_card
from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.inference import OnnxRuntimeModel, Predictor, load_bundle
from ultralight3d.labels import read_label_table

REPO_ROOT = Path(__file__).resolve().parents[2]
ORGANS = ["liver", "spleen", "left kidney", "right kidney"]
LABELS5 = [{"value": 0, "name": "background", "color": [0, 0, 0, 0]}] + [
    {"value": i, "name": n, "color": [40 * i, 200, 255 - 40 * i, 255]} for i, n in enumerate(ORGANS, start=1)
]


@pytest.fixture(scope="module")
def carded(tmp_path_factory) -> Path:
    """The repository's custom bundle (its configs say variant m, 2 classes) holding weights of variant s with 5
    classes and their model card."""
    bundle = tmp_path_factory.mktemp("card") / "custom_ultralight_unet3d"
    shutil.copytree(
        REPO_ROOT / "bundles" / "custom_ultralight_unet3d",
        bundle,
        ignore=shutil.ignore_patterns("runs", "*.pt", "*.onnx", "model.json"),
    )
    parser = ConfigParser()  # the bundle's own defaults (no model card)
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle), "ckpt_path": None})
    assert (parser.get_parsed_content("variant"), parser.get_parsed_content("num_classes")) == ("m", 2)
    torch.manual_seed(0)
    net = create_model("ultralight_unet3d_s", spatial_dims=3, in_channels=1, out_channels=5)
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    write_model_card(
        bundle / "models" / "model.pt",
        ModelCard(
            model_name="ultralight_unet3d_s",
            network_kwargs={"spatial_dims": 3, "in_channels": 1, "out_channels": 5},
            in_channels=1,
            out_channels=5,
            channel_names=["image"],
            labels=LABELS5,
            protocol="generic",
            patch_size=[32, 32, 32],
            fold=0,
            iteration=10,
        ),
    )
    return bundle


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    vol = rng.random((40, 36, 33)).astype(np.float32)
    vol[5:20, 10:30, 3:12] += 100
    path = tmp_path_factory.mktemp("scan") / "in" / "case1.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(vol, np.diag([0.9, 1.1, 1.5, 1.0])), path)
    return path


def _seg(folder: Path) -> np.ndarray:
    return np.asarray(nib.load(folder / "case1_seg.nii.gz").dataobj)


def test_predict_bundle_takes_network_and_classes_from_the_card(carded, scan, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["predict", "-i", str(scan), "-o", str(out), "--bundle", str(carded), "--device", "cpu", "--quiet"]) == 0
    )
    table = read_label_table(out / "labels.csv")
    assert [(lab.value, lab.name) for lab in table] == list(enumerate(ORGANS, start=1))
    assert table.get(2).color == (80, 200, 175, 255)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "ultralight_unet3d_s" and summary["roi_size"] == [32, 32, 32]  # the card's patch
    assert summary["labels"] == {str(i): n for i, n in enumerate(ORGANS, start=1)}
    assert set(np.unique(_seg(out))) <= set(range(5))
    loaded = load_bundle(carded)
    assert (loaded.model_name, loaded.num_classes, loaded.protocol) == ("ultralight_unet3d_s", 5, "generic")
    assert loaded.card_path == carded / "models" / "model.json" and loaded.card.iteration == 10
    assert loaded.network.out_channels == 5
    predictor = Predictor.from_bundle(
        carded, overrides={"device": "$torch.device('cpu')", "progress": False, "variant": "s"}
    )  # agreeing with the card is fine
    assert predictor.predict_probabilities(torch.zeros(1, 32, 32, 32)).shape == (5, 32, 32, 32)


def test_checkpoint_alone_predicts_the_same(carded, scan, tmp_path):
    """``predict --checkpoint model.pt`` without ``--bundle``: the card is enough, and gives the same labels."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["predict", "-i", str(scan), "-o", str(a), "--bundle", str(carded), "--device", "cpu", "--quiet"]) == 0
    assert (
        main(
            [
                "predict",
                "-i",
                str(scan),
                "-o",
                str(b),
                "--checkpoint",
                str(carded / "models" / "model.pt"),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(_seg(a), _seg(b))
    assert (b / "labels.csv").read_text() == (a / "labels.csv").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--variant", "m"],
            "--variant m but {card} says ultralight_unet3d_s; drop --variant or pass the matching checkpoint",
        ),
        (
            ["--set", "num_classes=2"],
            "--num_classes 2 but {card} says num_classes 5; drop --num_classes or pass the matching checkpoint",
        ),
        (
            ["--set", "protocol=synapse"],
            "--protocol synapse but {card} says protocol generic; drop --protocol or pass the matching checkpoint",
        ),
    ],
)
def test_an_option_contradicting_the_card_is_one_line(carded, scan, tmp_path, capsys, argv, message):
    rc = main(
        ["predict", "-i", str(scan), "-o", str(tmp_path / "o"), "--bundle", str(carded), "--device", "cpu"] + argv
    )
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: {message.format(card=carded / 'models' / 'model.json')}\n"
    assert not (tmp_path / "o").exists()


def test_non_finite_weights_are_refused_by_predict_and_export(carded, scan, tmp_path, capsys):
    state = torch.load(carded / "models" / "model.pt", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    bad = tmp_path / "diverged.pt"
    torch.save(state, bad)
    runs = [
        ["predict", "-i", str(scan), "-o", str(tmp_path / "p"), "--bundle", str(carded), "--checkpoint", str(bad)],
        ["export", "--bundle", str(carded), "--checkpoint", str(bad), "-o", str(tmp_path / "e")],
        [
            "export",
            "--checkpoint",
            str(bad),
            "--model",
            "ultralight_unet3d_s",
            "--out-channels",
            "5",
            "-o",
            str(tmp_path / "e"),
        ],
    ]
    for argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: checkpoint {bad} has non-finite weights in 1 of ")
        assert f"(first: {key}); training diverged" in err
    assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()
    with pytest.raises(UserInputError, match="diverged.pt has non-finite weights"):
        Predictor.from_bundle(carded, checkpoint=bad)


def test_export_copies_the_card_and_onnx_predicts_with_it(carded, scan, tmp_path, capsys):
    out = tmp_path / "exported"
    ckpt = carded / "models" / "model.pt"
    assert main(["export", "-i", str(ckpt), "-o", str(out), "--format", "onnx", "--size", "32"]) == 0
    assert "parity onnx" in capsys.readouterr().out
    assert OnnxRuntimeModel(out / "model.onnx").out_channels == 5
    assert read_model_card(out / "model.onnx") == read_model_card(ckpt)  # out/model.json travels with it
    # the exported model predicts on its own, through ONNX Runtime, like the torch weights
    assert (
        main(
            [
                "predict",
                "-i",
                str(scan),
                "-o",
                str(tmp_path / "ort"),
                "--checkpoint",
                str(out / "model.onnx"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                "-i",
                str(scan),
                "-o",
                str(tmp_path / "pt"),
                "--checkpoint",
                str(ckpt),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert (_seg(tmp_path / "ort") == _seg(tmp_path / "pt")).mean() > 0.999
    assert main(["export", "--checkpoint", str(ckpt), "--model", "ultralight_unet3d_t", "-o", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == (
        f"error: --model ultralight_unet3d_t but {carded / 'models' / 'model.json'} "
        "says ultralight_unet3d_s; drop --model or pass the matching checkpoint\n"
    )


def test_card_errors(tmp_path):
    ckpt = tmp_path / "model.pt"
    torch.save(create_model("ultralight_unet3d_t").state_dict(), ckpt)
    with pytest.raises(UserInputError, match=r"model\.pt has no model card .*model\.json\); pass --bundle"):
        Predictor.from_checkpoint(ckpt)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(UserInputError, match=r"model card .*model\.json cannot be read"):
        Predictor.from_checkpoint(ckpt)
    (tmp_path / "model.json").write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(UserInputError, match="is not an ultralight3d model card"):
        Predictor.from_checkpoint(ckpt)
