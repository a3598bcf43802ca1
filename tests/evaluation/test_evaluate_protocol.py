"""Issue 16: references in a dataset's original labels are mapped with the protocol's ``label_map`` before scoring,
exactly as training maps them (BTCV 13 organs -> Synapse 8); ``evaluate --labels`` reads a labels.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.evaluation import evaluate_cases, protocol_label_map, remap_labels, remap_reference
from ultralight3d.labels import LabelTable, write_label_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNAPSE_8 = ["aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen", "stomach"]
# BTCV value -> Synapse value (TransUNet order), written out by hand from the two label lists
BTCV_TO_SYNAPSE = {1: 7, 2: 4, 3: 3, 4: 2, 5: 0, 6: 5, 7: 8, 8: 1, 9: 0, 10: 0, 11: 6, 12: 0, 13: 0}
SLAB = 4 * 8 * 6  # voxels of one organ in the fixture
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


@pytest.fixture(scope="module")
def btcv(tmp_path_factory) -> tuple[Path, Path]:
    """``RawData/Training/{img,label}`` as Synapse ships it (one case, every BTCV value 0..13 as a 4-slice slab along
    x), and the 8-organ prediction ``predict`` would write for ``img0001.nii.gz``: organ ``t`` (Synapse value) loses
    its first ``t % 4`` slices, and aorta is also predicted on the first slice of the esophagus (BTCV 5 -> 0)."""
    root = tmp_path_factory.mktemp("btcv") / "RawData" / "Training"
    (root / "img").mkdir(parents=True)
    (root / "label").mkdir()
    label = np.repeat(np.arange(14, dtype=np.uint8), 4)[:, None, None] * np.ones((1, 8, 6), np.uint8)
    assert set(np.unique(label)) == set(range(14))
    nib.save(nib.Nifti1Image(np.zeros(label.shape, np.int16), AFFINE), root / "img" / "img0001.nii.gz")
    nib.save(nib.Nifti1Image(label, AFFINE), root / "label" / "label0001.nii.gz")
    pred = np.zeros_like(label)
    for btcv_value, organ in BTCV_TO_SYNAPSE.items():
        if organ:
            x0 = 4 * btcv_value + organ % 4
            pred[x0 : 4 * btcv_value + 4] = organ
    pred[4 * 5] = 1  # false positive on the esophagus
    preds = root.parents[1] / "predictions"
    preds.mkdir()
    nib.save(nib.Nifti1Image(pred, AFFINE), preds / "img0001_seg.nii.gz")
    return preds, root / "label"


def _expected_dice() -> dict[str, float]:
    out = {}
    for organ, name in enumerate(SYNAPSE_8, start=1):
        tp = (4 - organ % 4) * SLAB // 4
        fp = SLAB // 4 if organ == 1 else 0
        out[name] = 2 * tp / (SLAB + tp + fp)
    return out


def test_label_map_is_the_trainings(btcv):
    assert protocol_label_map("synapse") == BTCV_TO_SYNAPSE
    assert protocol_label_map("generic") is None and protocol_label_map(None) is None
    assert protocol_label_map("synapse", {"label_map": {"_desc_": "x", "1": 1}}) == {1: 1}  # transform_params win
    np.testing.assert_array_equal(
        remap_reference(np.arange(15), "synapse"), [0, 7, 4, 3, 2, 0, 5, 8, 1, 0, 0, 6, 0, 0, 14]
    )  # unmapped values are kept
    # the same as the MapLabelValued of the training pipeline
    from ultralight3d.transforms import get_pipeline

    train_map = next(t for t in get_pipeline("synapse", "validate").transforms if type(t).__name__ == "MapLabelValued")
    arr = np.arange(14)[None].astype(np.float32)
    np.testing.assert_array_equal(train_map({"label": arr})["label"][0], remap_labels(arr[0], BTCV_TO_SYNAPSE))


def test_btcv_reference_scored_in_8_organ_space(btcv, tmp_path, capsys):
    preds, labels = btcv
    csv_path = write_label_csv(LabelTable.from_names(SYNAPSE_8), tmp_path / "labels.csv")
    base = ["evaluate", "-i", str(preds), "-r", str(labels), "--labels", str(csv_path), "--no-plots"]
    # without the protocol: the 13-organ reference meets the 8-organ table, one clear line naming the fix
    assert main(base + ["-o", str(tmp_path / "raw")]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # one line (after tqdm)
    assert (
        err.startswith("error: ")
        and "label holds label values [9, 10, 11, 12, 13] that are not in the class table" in err
    )
    assert err.endswith("--protocol, e.g. synapse for BTCV's 13 organs)")
    out = tmp_path / "mapped"
    assert main(base + ["--protocol", "synapse", "-o", str(out), "--tolerance", "1.5"]) == 0
    rows = {r["class"]: r for r in csv.DictReader(open(out / "metrics_per_case.csv"))}
    assert list(rows) == SYNAPSE_8 and {r["case"] for r in rows.values()} == {"label0001"}
    for name, want in _expected_dice().items():
        assert float(rows[name]["dice"]) == pytest.approx(want, abs=1e-6), name
    report = json.loads((out / "metrics.json").read_text())
    assert report["protocol"] == "synapse" and report["tolerance_mm"] == 1.5
    assert report["label_map"] == {str(k): v for k, v in BTCV_TO_SYNAPSE.items()}


def test_bundle_gives_protocol_and_classes(btcv, tmp_path):
    """``--bundle``: protocol (synapse) and class names (labels.csv) come from the bundle; the API takes
    ``protocol=`` too."""
    preds, labels = btcv
    out = tmp_path / "b"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(preds),
                "--label",
                str(labels),
                "--bundle",
                str(REPO_ROOT / "bundles" / "synapse_ultralight_unet3d"),
                "-o",
                str(out),
                "--no-plots",
            ]
        )
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["classes"]) == SYNAPSE_8
    got = {name: c["dice"]["mean"] for name, c in report["classes"].items()}
    assert got == pytest.approx(_expected_dice())
    res = evaluate_cases(
        [preds / "img0001_seg.nii.gz"],
        [labels / "label0001.nii.gz"],
        dict(enumerate(SYNAPSE_8, 1)),
        tmp_path / "api",
        protocol="synapse",
        plots=False,
    )
    assert {n: c["dice"]["mean"] for n, c in res["classes"].items()} == pytest.approx(_expected_dice())
    with pytest.raises(UserInputError, match="label values"):
        evaluate_cases(
            [preds / "img0001_seg.nii.gz"],
            [labels / "label0001.nii.gz"],
            dict(enumerate(SYNAPSE_8, 1)),
            tmp_path / "api2",
            plots=False,
        )


def test_protocol_names_the_classes_and_card_must_agree(btcv, tmp_path, capsys):
    from ultralight3d.checkpoint import ModelCard, write_model_card

    preds, labels = btcv
    assert (
        main(
            [
                "evaluate",
                "-i",
                str(preds),
                "-r",
                str(labels),
                "--protocol",
                "synapse",
                "-o",
                str(tmp_path / "p"),
                "--no-plots",
            ]
        )
        == 0
    )
    assert list(json.loads((tmp_path / "p" / "metrics.json").read_text())["classes"]) == SYNAPSE_8
    ckpt = tmp_path / "m" / "model.pt"
    ckpt.parent.mkdir()
    write_model_card(
        ckpt,
        ModelCard(
            model_name="ultralight_unet3d_t",
            network_kwargs={},
            in_channels=1,
            out_channels=9,
            labels=LabelTable.from_names(SYNAPSE_8).to_records(),
            protocol="synapse",
        ),
    )
    assert (
        main(
            [
                "evaluate",
                "-i",
                str(preds),
                "-r",
                str(labels),
                "--checkpoint",
                str(ckpt),
                "-o",
                str(tmp_path / "c"),
                "--no-plots",
            ]
        )
        == 0
    )
    got = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert got["protocol"] == "synapse" and {n: c["dice"]["mean"] for n, c in got["classes"].items()} == pytest.approx(
        _expected_dice()
    )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "-i",
                str(preds),
                "-r",
                str(labels),
                "--checkpoint",
                str(ckpt),
                "--protocol",
                "generic",
                "-o",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err == (
        f"error: --protocol generic but {ckpt.parent / 'model.json'} says protocol "
        "synapse; drop --protocol or pass the matching checkpoint\n"
    )
    assert main(["evaluate", "-i", str(preds), "-r", str(labels), "--protocol", "nope", "-o", str(tmp_path / "e")]) == 2
    assert "unknown transform protocol 'nope'" in capsys.readouterr().err
