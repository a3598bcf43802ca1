"""Label tables (labels.csv / .ctbl) and the repository bundles' inference.json building the one Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from ultralight3d.errors import UserInputError
from ultralight3d.inference import Predictor, list_inputs
from ultralight3d.labels import LABEL_CSV_HEADER, Label, LabelTable, read_label_table, write_ctbl, write_label_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent for p in (REPO_ROOT / "bundles").glob("*/configs/inference.json"))


def test_label_csv_round_trip_and_ctbl(tmp_path):
    table = LabelTable(
        [Label(2, "transition zone", (111, 184, 210, 255)), Label(1, "peripheral zone", (230, 158, 140, 255))]
    )
    write_label_csv(table, tmp_path / "labels.csv")
    back = read_label_table(tmp_path / "labels.csv")
    assert [(lab.value, lab.name, lab.color) for lab in back] == [
        (1, "peripheral zone", (230, 158, 140, 255)),
        (2, "transition zone", (111, 184, 210, 255)),
    ]
    write_ctbl(back, tmp_path / "labels.ctbl")
    assert (tmp_path / "labels.ctbl").read_text().splitlines() == [
        "# Color table file",
        "# 3 values",
        "0 background 0 0 0 0",
        "1 peripheral_zone 230 158 140 255",
        "2 transition_zone 111 184 210 255",
    ]
    with pytest.raises(UserInputError, match="already exists; pass --overwrite"):
        write_label_csv(table, tmp_path / "labels.csv")


def test_label_csv_errors(tmp_path):
    with pytest.raises(UserInputError, match=r"label table .*nope\.csv not found; add models/labels\.csv"):
        read_label_table(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("value,label\n1,a\n")
    with pytest.raises(
        UserInputError,
        match=r"bad\.csv has columns \['value', 'label'\]; it needs the header " + ",".join(LABEL_CSV_HEADER),
    ):
        read_label_table(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("LabelValue,Name,Color_R,Color_G,Color_B,Color_A\n1,a,red,0,0,255\n")
    with pytest.raises(UserInputError, match=r"bad2\.csv line 2: .*must be integers"):
        read_label_table(tmp_path / "bad2.csv")
    # colour columns are optional (Auto3DSeg labels.csv has only LabelValue,Name + terminology)
    (tmp_path / "a3d.csv").write_text("LabelValue,Name,SegmentedPropertyTypeCodeSequence.CodeValue\n1,liver,10200004\n")
    (lab,) = read_label_table(tmp_path / "a3d.csv")
    assert lab.name == "liver" and lab.extra == {"SegmentedPropertyTypeCodeSequence.CodeValue": "10200004"}


@pytest.mark.skipif(not BUNDLES, reason="no bundles in the repository")
@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_repository_bundle_builds_predictor(bundle):
    cfg = json.loads((bundle / "configs" / "inference.json").read_text())
    for key in (
        "bundle_root",
        "device",
        "dataset_dir",
        "dataset",
        "evaluator",
        "network_def",
        "inferer",
        "datalist",
        "output_dir",
        "predictor",
        "run",
    ):
        assert key in cfg, key
    # without a model card (ckpt_path None) the ids a card describes take the bundle's training defaults
    infer, train = ConfigParser(), ConfigParser()
    infer.read_config(str(bundle / "configs" / "inference.json"))
    train.read_config(str(bundle / "configs" / "train.json"))
    for parser in (infer, train):
        parser["bundle_root"] = str(bundle)
    infer["ckpt_path"] = None
    for key in ("protocol", "in_channels", "num_classes", "transform_params", "variant", "model_name"):
        assert (key in infer) == (key in train), key
        if key not in train:  # 3D UX-Net has one size: no variant
            continue
        have, want = infer.get_parsed_content(key), train.get_parsed_content(key)
        assert have == want, f"inference.json and train.json disagree on {key}"
    assert infer.get_parsed_content("roi_size") == train.get_parsed_content("patch_size")
    shared = {k: v for k, v in train["network_def"].items() if k not in ("_target_", "deep_supervision")}
    assert {k: cfg["network_def"][k] for k in shared} == shared
    # no weights are shipped in git: build with random weights (ckpt_path None), on the CPU
    pred = Predictor.from_bundle(bundle, overrides={"ckpt_path": "$None", "device": "$torch.device('cpu')"})
    labels = read_label_table(bundle / "models" / "labels.csv")
    assert len(pred.channels) == train["in_channels"] and pred.labels.values == labels.values
    assert max(labels.values) == train["num_classes"] - 1
    assert pred.roi_size == tuple(train["patch_size"]) and pred.overlap == 0.5 and pred.mode == "gaussian"
    with pytest.raises(UserInputError, match=r"inference\.json has no id 'nonsense'"):
        Predictor.from_bundle(bundle, overrides={"nonsense": 1})


def test_list_inputs(tmp_path):
    (tmp_path / "imagesTs").mkdir()
    (tmp_path / "imagesTs" / "b.nii.gz").write_bytes(b"")
    (tmp_path / "imagesTs" / "a.nrrd").write_bytes(b"")
    (tmp_path / "imagesTs" / "notes.txt").write_text("")
    assert [p.rsplit("/", 1)[1] for p in list_inputs(tmp_path)] == ["a.nrrd", "b.nii.gz"]
    (tmp_path / "dicom").mkdir()
    assert list_inputs(tmp_path / "dicom") == [str(tmp_path / "dicom")]
