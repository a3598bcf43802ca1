"""The datalist contract: ``load_datalist`` splits folds / the fixed validation set and resolves paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ultralight3d.data import label_mapping, load_datalist, load_section, read_datalist_json
from ultralight3d.errors import UserInputError


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _datalist(n: int = 10, validation: list[dict] | None = None) -> dict:
    training = [
        {"image": f"imagesTr/c{i}.nii.gz", "label": f"labelsTr/c{i}.nii.gz", "fold": i % 5, "case": f"c{i}"}
        for i in range(n)
    ]
    data = {
        "name": "t",
        "description": "d",
        "labels": {"0": "background", "1": "x"},
        "channels": ["CT"],
        "training": training,
        "test": [{"image": ["imagesTs/a_0000.nii.gz", "imagesTs/a_0001.nii.gz"], "case": "a"}],
    }
    if validation is not None:
        data["validation"] = validation
    return data


def test_fold_split_is_complementary_and_absolute(tmp_path: Path) -> None:
    path = _write(tmp_path / "ds" / "datalist.json", _datalist())
    for fold in range(5):
        train, val = load_datalist(path, fold=fold)
        assert sorted(i["case"] for i in val) == sorted([f"c{fold}", f"c{fold + 5}"])
        assert len(train) == 8 and not {i["case"] for i in train} & {i["case"] for i in val}
        assert all(i["fold"] != fold for i in train)
    train, _ = load_datalist(tmp_path / "ds", fold=0)  # a folder means <folder>/datalist.json
    assert train[0]["image"] == str((tmp_path / "ds" / "imagesTr" / "c1.nii.gz").resolve())
    assert train[0]["label"] == str((tmp_path / "ds" / "labelsTr" / "c1.nii.gz").resolve())


def test_base_dir_and_list_images(tmp_path: Path) -> None:
    data = _datalist()
    data["training"][0]["image"] = ["imagesTr/c0_0000.nii.gz", "imagesTr/c0_0001.nii.gz"]
    path = _write(tmp_path / "lists" / "dl.json", data)
    train, val = load_datalist(path, fold=0, base_dir=tmp_path / "data")
    assert val[0]["image"] == [str(tmp_path / "data" / "imagesTr" / f"c0_000{c}.nii.gz") for c in (0, 1)]
    assert train[0]["label"].startswith(str(tmp_path / "data"))


def test_fold_none_uses_validation_and_never_trains_on_it(tmp_path: Path) -> None:
    data = _datalist()
    # MSD-style: the validation section repeats the fold-0 cases -> they must not be trained on
    data["validation"] = [dict(i) for i in data["training"] if i["fold"] == 0]
    path = _write(tmp_path / "datalist.json", data)
    train, val = load_datalist(path, fold=None)
    assert [i["case"] for i in val] == ["c0", "c5"]
    assert sorted(i["case"] for i in train) == sorted(f"c{i}" for i in range(10) if i % 5)
    # Synapse-style: a disjoint held-out set -> all training cases are used
    data["validation"] = [{"image": "imagesTr/v.nii.gz", "label": "labelsTr/v.nii.gz", "case": "v"}]
    _write(path, data)
    train, val = load_datalist(path, fold=None)
    assert len(train) == 10 and [i["case"] for i in val] == ["v"]


def test_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(UserInputError, match=r"datalist .*nope\.json not found; create it with `ultralight3d prepare"):
        load_datalist(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.json is not valid JSON"):
        load_datalist(bad)
    with pytest.raises(UserInputError, match=r"has no 'training' list"):
        load_datalist(_write(tmp_path / "a.json", {"name": "x"}))
    no_label = _datalist()
    del no_label["training"][3]["label"]
    with pytest.raises(UserInputError, match=r"training entry 3 \(c3\) has no 'label'"):
        read_datalist_json(_write(tmp_path / "b.json", no_label))
    path = _write(tmp_path / "c.json", _datalist())
    with pytest.raises(UserInputError, match=r"fold 7 does not exist .* \(folds present: \[0, 1, 2, 3, 4\]\)"):
        load_datalist(path, fold=7)
    with pytest.raises(UserInputError, match=r"has no 'validation' section; pass a fold"):
        load_datalist(path, fold=None)
    no_fold = _datalist()
    del no_fold["training"][0]["fold"]
    with pytest.raises(UserInputError, match=r"1 training case\(s\) have no 'fold' \(e\.g\. c0\)"):
        load_datalist(_write(tmp_path / "d.json", no_fold), fold=1)


def test_load_section_and_label_mapping(tmp_path: Path) -> None:
    data = _datalist()
    data["label_map"] = {"0": 0, "8": 1, "1": 7, "5": 0}
    path = _write(tmp_path / "datalist.json", data)
    test = load_section(path, "test")
    assert test == [{"image": [str(tmp_path / "imagesTs" / f"a_000{c}.nii.gz") for c in (0, 1)], "case": "a"}]
    assert load_section(path, "validation") == []
    with pytest.raises(UserInputError, match=r"unknown datalist section 'val'; use 'training', 'validation' or 'test'"):
        load_section(path, "val")
    assert label_mapping(path) == ([0, 1, 5, 8], [0, 7, 0, 1])
    assert label_mapping(_datalist()) is None
