"""Preparers on tiny datasets in the real folder layouts: folds, splits, label protocols, every validation error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from data_fixtures_ul3d import write_nifti
from monai.data import load_decathlon_datalist
from monai.transforms import MapLabelValued

from ultralight3d.data import (
    assign_folds,
    label_mapping,
    load_datalist,
    prepare_feta,
    prepare_folder,
    prepare_msd_prostate,
    prepare_synapse,
)
from ultralight3d.data.synapse import SYNAPSE_TEST_CASES, synapse_label_map
from ultralight3d.errors import UserInputError
from ultralight3d.io import read_geometry
from ultralight3d.transforms import get_protocol

PROSTATE_LABELS = {"0": "background", "1": "peripheral zone", "2": "transition zone"}  # transforms/prostate.json

BTCV_TRAINING = [f"{i:04d}" for i in [*range(1, 11), *range(21, 41)]]


# --------------------------------------------------------------------------------------------------- builders
def make_msd(root: Path, n: int = 7, channels: int = 2) -> Path:
    task = root / "Task05_Prostate"
    training, test = [], []
    for i in range(n):
        write_nifti(task / "imagesTr" / f"prostate_{i:02d}.nii.gz", channels=channels, spacing=(0.6, 0.6, 3.6))
        write_nifti(task / "labelsTr" / f"prostate_{i:02d}.nii.gz", label=True, spacing=(0.6, 0.6, 3.6))
        (task / "imagesTr" / f"._prostate_{i:02d}.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
        name = f"prostate_{i:02d}.nii.gz"
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    write_nifti(task / "imagesTs" / "prostate_90.nii.gz", channels=channels, spacing=(0.6, 0.6, 3.6))
    test.append("./imagesTs/prostate_90.nii.gz")
    meta = {
        "name": "PROSTATE",
        "description": "Prostate transitional zone and peripheral zone segmentation",
        "tensorImageSize": "4D",
        "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "numTraining": n,
        "numTest": 1,
        "training": training,
        "test": test,
    }
    (task / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return task


def make_feta(root: Path, subjects: int = 6) -> Path:
    feta = root / "feta_2.1"
    for s in range(1, subjects + 1):
        rec = "mial" if s % 2 else "irtk"
        anat = feta / f"sub-{s:03d}" / "anat"
        write_nifti(anat / f"sub-{s:03d}_rec-{rec}_T2w.nii.gz", spacing=(0.5, 0.5, 0.5))
        write_nifti(anat / f"sub-{s:03d}_rec-{rec}_dseg.nii.gz", label=True, spacing=(0.5, 0.5, 0.5))
    (feta / "participants.tsv").write_text(
        "participant_id\tPathology\tGestational age\n"
        + "".join(
            f"sub-{s:03d}\t{'Pathological' if s % 3 else 'Neurotypical'}\t{20 + s}\n" for s in range(1, subjects + 1)
        ),
        encoding="utf-8",
    )
    return feta


def make_synapse(root: Path, cases: list[str] = BTCV_TRAINING, test: int = 2) -> Path:
    train = root / "RawData" / "Training"
    for n in cases:
        write_nifti(train / "img" / f"img{n}.nii.gz", spacing=(0.8, 0.8, 3.0))
        write_nifti(train / "label" / f"label{n}.nii.gz", label=True, spacing=(0.8, 0.8, 3.0))
    for i in range(test):
        write_nifti(root / "RawData" / "Testing" / "img" / f"img{61 + i:04d}.nii.gz", spacing=(0.8, 0.8, 3.0))
    return root


# --------------------------------------------------------------------------------------------------- folds
def test_assign_folds_is_fixed_balanced_and_grouped() -> None:
    ids = [f"case{i:02d}" for i in range(10)]
    # the exact split every user gets with the default seed (guards against any change of the method)
    assert assign_folds(ids) == {
        "case09": 0,
        "case00": 1,
        "case08": 2,
        "case07": 3,
        "case06": 4,
        "case01": 0,
        "case02": 1,
        "case03": 2,
        "case04": 3,
        "case05": 4,
    }
    assert assign_folds(reversed(ids)) == assign_folds(ids)  # input order does not matter
    assert assign_folds(ids, seed=1) != assign_folds(ids)
    folds = assign_folds([f"s{i}" for i in range(23)])
    assert sorted(np.bincount(list(folds.values())).tolist()) == [4, 4, 5, 5, 5]


# --------------------------------------------------------------------------------------------------- generic folder
def test_folder_msd_naming_writes_a_monai_datalist(make_folder, tmp_path: Path) -> None:
    root = make_folder(n=7, test=2)
    (root / "imagesTr" / "._case_000.nii.gz").write_bytes(b"junk")  # macOS resource fork: ignored
    (root / "dataset.json").write_text(
        json.dumps({"name": "Livers", "labels": {"background": 0, "liver": 1, "tumour": 2}}), encoding="utf-8"
    )
    res = prepare_folder(root, progress=False)
    assert res.path == root / "datalist.json"
    dl = json.loads(res.path.read_text())
    assert dl["name"] == "Livers" and dl["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    assert dl["channels"] == ["image"] and dl["num_classes"] == 3 and dl["num_folds"] == 5
    assert [t["case"] for t in dl["training"]] == [f"case_{i:03d}" for i in range(7)]
    fold = assign_folds([f"case_{i:03d}" for i in range(7)])["case_000"]
    assert dl["training"][0] == {
        "image": "imagesTr/case_000.nii.gz",
        "label": "labelsTr/case_000.nii.gz",
        "case": "case_000",
        "fold": fold,
    }
    assert sorted(t["fold"] for t in dl["training"]) == [0, 0, 1, 1, 2, 3, 4]
    assert [t["case"] for t in dl["test"]] == ["new_000", "new_001"] and "label" not in dl["test"][0]
    assert dl["orientations"] == {"RAS": 7} and dl["spacing_range_mm"] == {"min": [1.0] * 3, "max": [1.0] * 3}
    items = load_decathlon_datalist(res.path, True, "training")
    assert items[3]["image"] == os.path.normpath(root / "imagesTr" / "case_003.nii.gz")
    assert Path(items[3]["label"]).is_file()
    assert len(load_decathlon_datalist(res.path, True, "test")) == 2
    # every case exactly once over the 5 validation folds
    seen = [c["case"] for f in range(5) for c in load_datalist(res.path, fold=f)[1]]
    assert sorted(seen) == [f"case_{i:03d}" for i in range(7)]


def test_folder_nnunet_channels_and_output_elsewhere(make_folder, tmp_path: Path) -> None:
    root = make_folder(n=5, nnunet_channels=2, test=1)
    out = tmp_path / "lists" / "my.json"
    res = prepare_folder(root, out, channels=["T2", "ADC"], labels={1: "lesion", 2: "gland"}, progress=False)
    dl = json.loads(out.read_text())
    assert res.path == out and dl["channels"] == ["T2", "ADC"] and dl["tensorImageSize"] == "4D"
    assert dl["training"][0]["image"] == [f"../MyData/imagesTr/case_000_000{c}.nii.gz" for c in (0, 1)]
    assert dl["test"][0]["image"] == [f"../MyData/imagesTs/new_000_000{c}.nii.gz" for c in (0, 1)]
    train, val = load_datalist(out, fold=0)
    assert all(Path(p).is_file() for item in train + val for p in item["image"])


def test_folder_nrrd_mha_and_label_scan(tmp_path: Path) -> None:
    root = tmp_path / "Mixed"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, ext in enumerate([".nrrd", ".mha", ".nrrd"]):
        img = sitk.GetImageFromArray(np.zeros((6, 7, 8), np.float32))
        img.SetSpacing((0.5, 0.6, 2.0))
        sitk.WriteImage(img, str(root / "imagesTr" / f"p{i}{ext}"))
        lab = sitk.GetImageFromArray(np.full((6, 7, 8), 3 + i, np.uint8))
        lab.CopyInformation(img)
        sitk.WriteImage(lab, str(root / "labelsTr" / f"p{i}{ext}"))
    res = prepare_folder(root, num_folds=5, progress=False)
    dl = res.datalist
    assert dl["labels"] == {"0": "background", "3": "class 3", "4": "class 4", "5": "class 5"}
    assert dl["num_folds"] == 3 and dl["num_classes"] == 6  # fewer cases than folds: one case per fold
    assert dl["spacing_range_mm"]["min"] == [0.5, 0.6, 2.0] and dl["orientations"] == {"LPS": 3}
    assert any("found values [3, 4, 5]" in n for n in res.summary.notes)


def test_folder_collects_every_problem_in_one_message(make_folder) -> None:
    root = make_folder(n=4)
    write_nifti(root / "imagesTr" / "nolabel.nii.gz")
    write_nifti(root / "labelsTr" / "orphan.nii.gz", label=True)
    write_nifti(root / "imagesTr" / "flat.nii.gz", shape=(8, 8))
    write_nifti(root / "labelsTr" / "flat.nii.gz", label=True)
    write_nifti(root / "imagesTr" / "big.nii.gz")
    write_nifti(root / "labelsTr" / "big.nii.gz", label=True, shape=(8, 8, 9))
    write_nifti(root / "imagesTr" / "thick.nii.gz")
    write_nifti(root / "labelsTr" / "thick.nii.gz", label=True, spacing=(1, 1, 2))
    write_nifti(root / "imagesTr" / "moved.nii.gz")
    write_nifti(root / "labelsTr" / "moved.nii.gz", label=True, origin=(5, 0, 0))
    write_nifti(root / "imagesTr" / "flipped.nii.gz")
    write_nifti(root / "labelsTr" / "flipped.nii.gz", label=True, affine=np.diag([-1.0, -1.0, 1.0, 1.0]))
    write_nifti(root / "imagesTr" / "twoch.nii.gz", channels=2)
    write_nifti(root / "labelsTr" / "twoch.nii.gz", label=True)
    dup = sitk.ReadImage(str(root / "imagesTr" / "case_000.nii.gz"))
    sitk.WriteImage(dup, str(root / "imagesTr" / "case_000.nrrd"))  # the same case twice, in two formats
    (root / "imagesTr" / "broken.nii.gz").write_bytes(b"not an image")
    write_nifti(root / "labelsTr" / "broken.nii.gz", label=True)
    with pytest.raises(UserInputError) as info:
        prepare_folder(root, progress=False)
    msg = str(info.value)
    assert msg.startswith(f"folder MyData at {root}: 10 problem(s) found, nothing written:")
    expected = [
        f"duplicate case 'case_000': {root / 'imagesTr' / 'case_000.nii.gz'} and {root / 'imagesTr' / 'case_000.nrrd'}",
        f"image {root / 'imagesTr' / 'nolabel.nii.gz'} has no label {root / 'labelsTr' / 'nolabel.nii.gz'}",
        f"label {root / 'labelsTr' / 'orphan.nii.gz'} has no image for case 'orphan'",
        f"{root / 'imagesTr' / 'flat.nii.gz'} is a 2D image (size (8, 8)); 3D volumes are needed",
        f"label {root / 'labelsTr' / 'big.nii.gz'} does not match its image {root / 'imagesTr' / 'big.nii.gz'}: "
        "size (8, 8, 9) vs image (8, 8, 8)",
        "spacing (1, 1, 2) vs image (1, 1, 1) mm; resample the label onto the image grid",
        "origin (-5, 0, 0) vs image (0, 0, 0) mm (LPS)",
        "orientation LPS vs image RAS (direction cosines differ)",
        f"case 'twoch' ({root / 'imagesTr' / 'twoch.nii.gz'}) has 2 channel(s) but 1 are expected",
        f"cannot read the header of {root / 'imagesTr' / 'broken.nii.gz'}",
    ]
    for part in expected:
        assert part in msg, part
    assert not (root / "datalist.json").exists()


def test_folder_refuses_overwrite_and_bad_layout(make_folder, tmp_path: Path) -> None:
    root = make_folder(n=3)
    first = prepare_folder(root, progress=False).path.read_text()
    with pytest.raises(UserInputError, match=r"datalist\.json already exists; pass --overwrite"):
        prepare_folder(root, progress=False)
    prepare_folder(root, overwrite=True, progress=False)
    assert json.loads(first)["training"] == json.loads((root / "datalist.json").read_text())["training"]
    with pytest.raises(UserInputError, match=r"needs an imagesTr/ folder .* and a labelsTr/ folder"):
        prepare_folder(tmp_path / "empty", progress=False)
    one = tmp_path / "One"
    write_nifti(one / "imagesTr" / "a.nii.gz")
    write_nifti(one / "labelsTr" / "a.nii.gz", label=True)
    with pytest.raises(UserInputError, match=r"only 1 labelled case\(s\) found for cross-validation"):
        prepare_folder(one, progress=False)


def test_check_labels_finds_values_outside_the_table(make_folder) -> None:
    root = make_folder(n=3)
    with pytest.raises(
        UserInputError,
        match=r"case_000\.nii\.gz contains values \[2\] that are not in the label "
        r"table \[0, 1\]; fix the label file or give the full label table",
    ):
        prepare_folder(root, labels={1: "organ"}, check_labels=True, progress=False)


def test_read_geometry_4d_channel_last(tmp_path: Path) -> None:
    g = read_geometry(write_nifti(tmp_path / "a.nii.gz", shape=(8, 9, 10), channels=2, spacing=(0.6, 0.7, 3.0)))
    assert (g.ndim, g.size, g.channels, g.orientation) == (3, (8, 9, 10), 2, "RAS")
    assert np.allclose(g.spacing, (0.6, 0.7, 3.0))


# --------------------------------------------------------------------------------------------------- MSD
def test_msd_prostate_synthetic(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_msd(tmp_path, n=7)
    with caplog.at_level("INFO"):
        res = prepare_msd_prostate(tmp_path, progress=False)  # the parent folder is accepted too
    task = tmp_path / "Task05_Prostate"
    assert res.path == task / "datalist.json"
    dl = res.datalist
    # label names and channels come from the prostate protocol (dataset.json says "PZ"/"TZ": same values)
    assert dl["channels"] == ["T2", "ADC"] and dl["labels"] == PROSTATE_LABELS and dl["protocol"] == "prostate"
    assert dl["fold_seed"] == 20240725 and "model-zoo#766" in dl["description"] and "orientation_note" in dl
    assert dl["training"][0]["image"] == "imagesTr/prostate_00.nii.gz"  # "./" prefix normalised
    assert [v["case"] for v in dl["validation"]] == [t["case"] for t in dl["training"] if t["fold"] == 0]
    assert [t["case"] for t in dl["test"]] == ["prostate_90"]
    assert "MSD orientation pitfall" in caplog.text and "channels: T2, ADC" in caplog.text
    assert f"datalist written to {task / 'datalist.json'}" in caplog.text
    train, val = load_datalist(res.path, fold=None)
    assert len(train) + len(val) == 7 and not {t["case"] for t in train} & {v["case"] for v in val}


def test_msd_prostate_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"no dataset\.json in .*; point --root at the extracted Task05_Prostate"):
        prepare_msd_prostate(tmp_path, progress=False)
    task = make_msd(tmp_path, n=4)
    (task / "labelsTr" / "prostate_02.nii.gz").unlink()
    write_nifti(task / "imagesTr" / "prostate_03.nii.gz", spacing=(0.6, 0.6, 3.6))  # lost its ADC channel
    meta = json.loads((task / "dataset.json").read_text())
    meta["training"].append(dict(meta["training"][0]))
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(UserInputError) as info:
        prepare_msd_prostate(task, progress=False)
    msg = str(info.value)
    assert "3 problem(s)" in msg
    assert f"label {task / 'labelsTr' / 'prostate_02.nii.gz'} listed in dataset.json is missing; re-extract" in msg
    assert "duplicate case id 'prostate_00'" in msg
    assert "case 'prostate_03' (" in msg and "has 1 channel(s) but 2 are expected" in msg


@pytest.mark.data
def test_msd_prostate_real_labels(shared_data: Path, tmp_path: Path) -> None:
    """The real MSD dataset.json and label headers; images are synthetic 4D volumes on each label's grid."""
    src = shared_data / "msd_prostate_labels"
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = meta["training"][:8]
    meta["test"] = []
    task = tmp_path / "Task05_Prostate"
    (task / "labelsTr").mkdir(parents=True)
    (task / "imagesTr").mkdir()
    (task / "dataset.json").write_text(json.dumps(meta))
    for item in meta["training"]:
        name = Path(item["label"]).name
        os.symlink(src / name, task / "labelsTr" / name)
        lab: Any = nib.load(src / name)  # a Nifti1Image
        img = nib.Nifti1Image(np.zeros((*lab.shape, 2), np.uint8), lab.affine)
        img.header.set_zooms((*lab.header.get_zooms()[:3], 1.0))
        nib.save(img, task / "imagesTr" / name)
    res = prepare_msd_prostate(task, check_labels=True, progress=False)
    assert res.summary.num_training == 8 and res.summary.fold_sizes == [2, 2, 2, 1, 1]
    assert res.datalist["labels"] == PROSTATE_LABELS
    assert 0.5 < res.summary.spacing_min[0] < 0.7 and 2.9 < res.summary.spacing_max[2] < 4.1
    first = min(Path(i["label"]).name for i in meta["training"])
    assert res.datalist["training"][0]["label"] == f"labelsTr/{first}"  # symlinks kept as laid out
    assert len(load_decathlon_datalist(res.path, True, "validation")) == res.summary.fold_sizes[0]


# --------------------------------------------------------------------------------------------------- FeTA
def test_feta(tmp_path: Path) -> None:
    make_feta(tmp_path, subjects=6)
    res = prepare_feta(tmp_path, progress=False)  # parent of feta_2.1 accepted
    dl = res.datalist
    assert res.path == tmp_path / "feta_2.1" / "datalist.json"
    assert dl["num_classes"] == 8 and dl["labels"]["1"] == "external cerebrospinal fluid"
    assert dl["labels"]["7"] == "brainstem" and dl["channels"] == ["T2"] and dl["protocol"] == "feta"
    assert dl["labels"] == get_protocol("feta")["labels"]
    assert [t["case"] for t in dl["training"]][:2] == ["sub-001_rec-mial", "sub-002_rec-irtk"]
    assert dl["training"][1]["label"] == "sub-002/anat/sub-002_rec-irtk_dseg.nii.gz"
    assert dl["participants"]["sub-003"]["Pathology"] == "Neurotypical"
    folds = assign_folds([f"sub-{s:03d}" for s in range(1, 7)])
    assert {t["case"]: t["fold"] for t in dl["training"]}["sub-004_rec-irtk"] == folds["sub-004"]
    assert dl["validation"] == []


def test_feta_missing_and_orphan_labels(tmp_path: Path) -> None:
    feta = make_feta(tmp_path, subjects=3)
    (feta / "sub-001" / "anat" / "sub-001_rec-mial_dseg.nii.gz").unlink()
    (feta / "sub-002" / "anat" / "sub-002_rec-irtk_T2w.nii.gz").unlink()
    with pytest.raises(UserInputError) as info:
        prepare_feta(feta, progress=False)
    msg = str(info.value)
    assert "2 problem(s)" in msg
    assert f"image {feta / 'sub-001/anat/sub-001_rec-mial_T2w.nii.gz'} has no label sub-001_rec-mial_dseg.nii.gz" in msg
    assert f"label {feta / 'sub-002/anat/sub-002_rec-irtk_dseg.nii.gz'} has no T2w image beside it" in msg
    with pytest.raises(UserInputError, match=r"no sub-\*/anat folders under .*; point --root at the FeTA 2021"):
        prepare_feta(tmp_path / "nothing", progress=False)


# --------------------------------------------------------------------------------------------------- Synapse
def test_synapse_transunet_split_and_protocols(tmp_path: Path) -> None:
    make_synapse(tmp_path)
    res = prepare_synapse(tmp_path, label_protocol="13", progress=False)
    dl = res.datalist
    assert res.path == tmp_path / "datalist.json"
    assert [v["case"] for v in dl["validation"]] == [
        "case0001",
        "case0002",
        "case0003",
        "case0004",
        "case0008",
        "case0022",
        "case0025",
        "case0029",
        "case0032",
        "case0035",
        "case0036",
        "case0038",
    ]
    assert [t["case"] for t in dl["training"]] == [
        "case0005",
        "case0006",
        "case0007",
        "case0009",
        "case0010",
        "case0021",
        "case0023",
        "case0024",
        "case0026",
        "case0027",
        "case0028",
        "case0030",
        "case0031",
        "case0033",
        "case0034",
        "case0037",
        "case0039",
        "case0040",
    ]
    assert res.summary.fold_sizes == [4, 4, 4, 3, 3] and "fold" not in dl["validation"][0]
    assert dl["label_protocol"] == "13" and dl["num_classes"] == 14 and "label_map" not in dl
    assert dl["protocol"] == "synapse13" and dl["labels"] == get_protocol("synapse13")["labels"]
    assert dl["labels"]["10"] == "portal and splenic veins" and dl["labels"]["13"] == "left adrenal gland"
    assert dl["validation"][0] == {
        "image": "RawData/Training/img/img0001.nii.gz",
        "label": "RawData/Training/label/label0001.nii.gz",
        "case": "case0001",
    }
    assert [t["case"] for t in dl["test"]] == ["test0061", "test0062"]
    train, val = load_datalist(res.path, fold=None)
    assert len(train) == 18 and len(val) == 12

    res8 = prepare_synapse(tmp_path / "RawData", tmp_path / "dl8.json", progress=False)  # default: 8 organs
    dl8 = res8.datalist
    assert dl8["label_protocol"] == "8" and dl8["num_classes"] == 9 and dl8["protocol"] == "synapse"
    assert dl8["labels"] == {
        "0": "background",
        "1": "aorta",
        "2": "gallbladder",
        "3": "left kidney",
        "4": "right kidney",
        "5": "liver",
        "6": "pancreas",
        "7": "spleen",
        "8": "stomach",
    }
    # every kept organ keeps its name through the map; dropped organs go to background
    for orig, new in dl8["label_map"].items():
        if new:
            assert dl8["original_labels"][orig] == dl8["labels"][str(new)]
    assert sorted(k for k, v in dl8["label_map"].items() if v == 0) == ["0", "10", "12", "13", "5", "9"]
    assert dl8["training"][0]["image"] == "RawData/Training/img/img0005.nii.gz"
    # the map drives MONAI's MapLabelValued: BTCV values 0..13 -> 8-organ values
    mapping = label_mapping(res8.path)
    assert mapping is not None
    orig, target = mapping
    out = MapLabelValued("label", orig, target)({"label": np.arange(14)[None]})["label"]
    assert np.asarray(out).ravel().tolist() == [0, 7, 4, 3, 2, 0, 5, 8, 1, 0, 0, 6, 0, 0]


def test_synapse_missing_cases(tmp_path: Path) -> None:
    make_synapse(tmp_path, cases=[c for c in BTCV_TRAINING if c not in ("0008", "0040")], test=0)
    write_nifti(tmp_path / "RawData" / "Training" / "label" / "label0008.nii.gz", label=True)
    (tmp_path / "RawData" / "Training" / "label" / "label0005.nii.gz").unlink()
    with pytest.raises(UserInputError) as info:
        prepare_synapse(tmp_path, progress=False)
    msg = str(info.value)
    train = tmp_path / "RawData" / "Training"
    assert f"image {train / 'img' / 'img0005.nii.gz'} has no label {train / 'label' / 'label0005.nii.gz'}" in msg
    assert f"label {train / 'label' / 'label0008.nii.gz'} has no image img0008" in msg
    assert "2 of the 30 BTCV training cases of the TransUNet split are missing" in msg and "img0008, img0040" in msg
    assert set(SYNAPSE_TEST_CASES) == {
        "0001",
        "0002",
        "0003",
        "0004",
        "0008",
        "0022",
        "0025",
        "0029",
        "0032",
        "0035",
        "0036",
        "0038",
    }
    with pytest.raises(UserInputError, match=r"label protocol must be '13' or '8'"):
        prepare_synapse(tmp_path, label_protocol="9", progress=False)
    shutil.rmtree(tmp_path / "RawData")
    with pytest.raises(UserInputError, match=r"no RawData/Training/img and RawData/Training/label under"):
        prepare_synapse(tmp_path, progress=False)


def test_synapse_tables_come_from_the_transform_protocols() -> None:
    """The datalist's 8-organ table/map are synapse.json's; the 13 original organs are synapse13.json's, which differs
    from synapse.json only in its name, description, labels and (absent) label map."""
    proto8, proto13 = get_protocol("synapse"), get_protocol("synapse13")
    proto_map = {str(k): int(v) for k, v in (proto8.get("label_map") or {}).items() if not str(k).startswith("_")}
    full = synapse_label_map("synapse")
    assert full == {"0": 0, **proto_map} and list(full) == [str(v) for v in range(14)]  # every original value listed
    assert set(full) == set(proto13["labels"]) and set(full.values()) <= {int(k) for k in proto8["labels"]}
    for orig, new in full.items():  # every kept organ keeps its name through the map
        if new:
            assert proto13["labels"][orig] == proto8["labels"][str(new)]
    assert synapse_label_map("synapse13") is None and proto13["num_classes"] == 14
    differ = {k for k in proto8 if proto8[k] != proto13[k]}
    assert set(proto8) == set(proto13) and differ == {
        "name",
        "description",
        "labels",
        "label_map",
        "num_classes",
        "terminology",
        "postprocessing",
    }  # the per-class tables differ because the classes do
