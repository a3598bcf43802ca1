"""Voxel guards of ``prepare`` (NaN/inf in images and labels, label values outside the class table) and the keys a
bundle configures itself from (``protocol``, ``labels``, ``num_classes``, ``channels``, ``in_channels``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_fixtures_ul3d import SHAPE, write_nifti
from monai.data import load_decathlon_datalist

from ultralight3d.cli import main
from ultralight3d.data import datalist_config, prepare_folder, prepare_msd_prostate, prepare_synapse
from ultralight3d.errors import UserInputError
from ultralight3d.transforms import get_protocol

FIVE_CLASSES = {1: "liver", 2: "right kidney", 3: "left kidney", 4: "spleen"}  # with background: values 0..4


def _save(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _defects(root: Path) -> dict[str, tuple[Path, str]]:
    """Three cases of a folder, one defect each: NaN image voxel, inf label voxel, label value 9."""
    image = np.arange(int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
    image[2, 3, 4] = np.nan
    label_inf = np.zeros(SHAPE, np.float32)
    label_inf[1, 1, 1], label_inf[5, 5, 5] = 1.0, np.inf
    label_9 = np.zeros(SHAPE, np.uint8)
    label_9[2:4, 2:4, 2:4], label_9[6, 6, 6] = 4, 9
    return {
        "nan image": (_save(root / "imagesTr" / "case_001.nii.gz", image), "has 1 NaN/inf voxel(s); replace them"),
        "inf label": (_save(root / "labelsTr" / "case_002.nii.gz", label_inf),
                      "has 1 NaN/inf voxel(s); a label holds integer class values only"),
        "value 9": (_save(root / "labelsTr" / "case_003.nii.gz", label_9),
                    "contains values [9] that are not in the label table [0, 1, 2, 3, 4]; fix the label file or give "
                    "the full label table (--labels)"),
    }  # fmt: skip


@pytest.mark.parametrize("defect", ["nan image", "inf label", "value 9"])
def test_each_voxel_defect_names_its_file(make_folder, defect: str) -> None:
    root = make_folder(n=5)
    defects = _defects(root)
    path, text = defects[defect]
    for other, (p, _) in defects.items():  # keep only the defect under test
        if other != defect:
            write_nifti(p, label=p.parent.name == "labelsTr")
    prepare_folder(root, labels=FIVE_CLASSES, progress=False)  # header checks only: voxels are not read
    kind = "image" if defect == "nan image" else "label"
    with pytest.raises(UserInputError) as info:
        prepare_folder(
            root,
            labels=FIVE_CLASSES,
            check_labels=kind == "label",
            check_images=kind == "image",
            overwrite=True,
            progress=False,
        )
    lines = str(info.value).splitlines()
    assert lines[0] == f"folder MyData at {root}: 1 problem(s) found, nothing written:" and len(lines) == 2
    assert lines[1].startswith(f"  - {kind} {path} {text}")


def test_all_voxel_problems_in_one_error_one_line_per_file(make_folder) -> None:
    root = make_folder(n=5, test=1)
    defects = _defects(root)
    test_nan = np.zeros(SHAPE, np.float32)
    test_nan[0, 0, 0] = -np.inf
    test_image = _save(root / "imagesTs" / "new_000.nii.gz", test_nan)  # test images are checked too
    with pytest.raises(UserInputError) as info:
        prepare_folder(root, labels=FIVE_CLASSES, check_labels=True, check_images=True, progress=False)
    lines = str(info.value).splitlines()
    assert lines[0].endswith("4 problem(s) found, nothing written:") and len(lines) == 5
    expected = [(test_image, "has 1 NaN/inf voxel(s)")] + list(defects.values())
    for path, text in expected:
        (line,) = [ln for ln in lines[1:] if str(path) in ln]  # each offending file on exactly one line
        assert text in line, line
    assert not (root / "datalist.json").exists()


def test_full_check_flag(make_folder, capsys) -> None:
    root = make_folder(n=5)
    defects = _defects(root)
    args = ["prepare", "folder", "--root", str(root), "--labels", "1=a,2=b,3=c,4=d", "--quiet"]
    assert main([*args, "--check-labels"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and str(defects["inf label"][0]) in err and str(defects["nan image"][0]) not in err
    assert main([*args, "--full-check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: folder MyData at") and "3 problem(s)" in err
    assert all(str(p) in err for p, _ in defects.values())


def test_synapse_labels_checked_against_the_13_original_values(tmp_path: Path) -> None:
    train = tmp_path / "RawData" / "Training"
    for n in [f"{i:04d}" for i in [*range(1, 11), *range(21, 41)]]:
        write_nifti(train / "img" / f"img{n}.nii.gz")
        write_nifti(train / "label" / f"label{n}.nii.gz", label=True)
    bad = np.zeros(SHAPE, np.uint8)
    bad[1, 1, 1], bad[2, 2, 2] = 13, 14
    _save(train / "label" / "label0007.nii.gz", bad)
    with pytest.raises(UserInputError) as info:
        prepare_synapse(tmp_path, check_labels=True, progress=False)  # 8-organ protocol, 13-valued files
    assert (
        f"label {train / 'label' / 'label0007.nii.gz'} contains values [14] that are not in the label table "
        f"[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]; fix or re-extract the label file (the table is the "
        f"synapse13 protocol's, transforms/synapse13.json)"
    ) in str(info.value)


# --------------------------------------------------------------------------------------------- datalist config keys
def test_folder_datalist_carries_what_a_bundle_needs(make_folder, caplog) -> None:
    root = make_folder(n=5, nnunet_channels=2)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2},
                                                   "channel_names": {"0": "CT", "1": "PET"}}))  # fmt: skip
    with caplog.at_level(logging.INFO):
        res = prepare_folder(root, progress=False)
    dl = json.loads(res.path.read_text())
    assert dl["protocol"] == "generic" and dl["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    assert dl["num_classes"] == 3 and dl["channels"] == ["CT", "PET"] and dl["in_channels"] == 2
    assert dl["modality"] == {"0": "CT", "1": "PET"} and dl["tensorImageSize"] == "4D"
    assert datalist_config(res.path) == {
        "protocol": "generic",
        "labels": dl["labels"],
        "num_classes": 3,
        "channels": ["CT", "PET"],
        "in_channels": 2,
        "label_map": None,
    }
    assert len(load_decathlon_datalist(res.path, True, "training")) == 5  # still a MONAI decathlon datalist
    assert "protocol: generic (transforms/generic.json)" in caplog.text


def test_folder_named_protocol_gives_labels_and_channels(make_folder) -> None:
    root = make_folder(n=5, nnunet_channels=2)
    res = prepare_folder(root, protocol="prostate", progress=False)
    proto = get_protocol("prostate")
    dl = res.datalist
    assert dl["protocol"] == "prostate" and dl["labels"] == proto["labels"] and dl["channels"] == proto["channels"]
    assert dl["num_classes"] == proto["num_classes"] and dl["in_channels"] == proto["in_channels"]
    with pytest.raises(UserInputError, match="unknown transform protocol 'nope'"):
        prepare_folder(root, protocol="nope", overwrite=True, progress=False)


def test_dataset_protocols_are_recorded(tmp_path: Path) -> None:
    task = tmp_path / "Task05_Prostate"
    training = []
    for i in range(4):
        name = f"prostate_{i:02d}.nii.gz"
        write_nifti(task / "imagesTr" / name, channels=2)
        write_nifti(task / "labelsTr" / name, label=True)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"labels": {"0": "background", "1": "PZ", "2": "TZ"}, "modality": {"0": "T2", "1": "ADC"},
            "training": training}  # fmt: skip
    (task / "dataset.json").write_text(json.dumps(meta))
    cfg = datalist_config(prepare_msd_prostate(task, progress=False).path)
    assert cfg["protocol"] == "prostate" and cfg["labels"]["1"] == "peripheral zone" and cfg["in_channels"] == 2
    # a dataset.json whose label values are not the protocol's is refused
    meta["labels"] = {"0": "background", "1": "gland"}
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(UserInputError, match=r"has label values \[0, 1\] but the prostate protocol has \[0, 1, 2\]"):
        prepare_msd_prostate(task, overwrite=True, progress=False)
