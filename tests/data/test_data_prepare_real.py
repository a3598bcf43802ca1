"""The generic preparer on real scans from ../shared/data (skipped when absent), laid out by symlinks in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ultralight3d.data import load_datalist, prepare_folder
from ultralight3d.errors import UserInputError

pytestmark = pytest.mark.data


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def test_chaos_t2_as_generic_folder(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "chaos_t2"
    root = tmp_path / "CHAOS"
    ids = sorted(p.name[len("image_") : -len(".nii.gz")] for p in src.glob("image_*.nii.gz"))
    for i in ids:
        _link(src / f"image_{i}.nii.gz", root / "imagesTr" / f"chaos_{int(i):02d}.nii.gz")
        _link(src / f"label_{i}.nii.gz", root / "labelsTr" / f"chaos_{int(i):02d}.nii.gz")
    labels = {1: "liver", 2: "right kidney", 3: "left kidney", 4: "spleen"}
    res = prepare_folder(root, labels=labels, channels=["T2-SPIR"], check_labels=True, progress=False)
    dl = res.datalist
    assert dl["numTraining"] == len(ids) == 10 and dl["num_classes"] == 5 and dl["channels"] == ["T2-SPIR"]
    assert dl["spacing_range_mm"] == {"min": [1.25, 1.25, 7.7], "max": [1.25, 1.25, 7.7]}
    assert dl["orientations"] == {"LAS": 10}  # ITK direction diag(1, -1, 1) in RAS-style codes
    assert res.summary.fold_sizes == [2, 2, 2, 2, 2]
    train, val = load_datalist(res.path, fold=2)
    assert len(train) == 8 and all(Path(c["label"]).is_file() for c in train + val)
    # check_labels catches values outside a too-small label table on real labels
    with pytest.raises(UserInputError, match=r"chaos_\d\d\.nii\.gz contains values \[4\] that are not in the label"):
        prepare_folder(
            root, tmp_path / "x.json", labels={1: "liver", 2: "rk", 3: "lk"}, check_labels=True, progress=False
        )


def test_prostatex_label_header_mismatch_is_caught(shared_data: Path, tmp_path: Path) -> None:
    """ProstateX lesion labels whose own headers disagree with the T2 (a real, documented quirk) are refused."""
    src = shared_data / "prostatex_mha"
    root = tmp_path / "PX"
    for case, pid in (("px0000", "ProstateX-0000"), ("px0001", "ProstateX-0001")):
        _link(src / pid / "t2w.mha", root / "imagesTr" / f"{case}_0000.mha")
        _link(src / pid / "adc.mha", root / "imagesTr" / f"{case}_0001.mha")
    _link(src / "ProstateX-0000" / "lesion_label_t2space.nii.gz", root / "labelsTr" / "px0000.nii.gz")
    _link(src / "ProstateX-0001" / "lesion_label_adcspace_EMPTY.nii.gz", root / "labelsTr" / "px0001.nii.gz")
    with pytest.raises(UserInputError) as info:
        prepare_folder(root, labels={1: "csPCa"}, progress=False)
    msg = str(info.value)
    assert "2 problem(s)" in msg
    assert f"label {root / 'labelsTr' / 'px0000.nii.gz'} does not match its image" in msg
    assert "origin (-57.6854, 99.251, -87.8144) vs image (-57.6854, -82.3631, -27.0808) mm (LPS)" in msg
    assert "orientation LAS vs image LPS (direction cosines differ)" in msg
    assert "size (84, 128, 19) vs image (384, 384, 19)" in msg
    # with the corrected copy (T2 header) the case passes; MHA channels beside a NIfTI label, two channel grids
    for p in (root / "labelsTr").iterdir():
        p.unlink()
    for p in root.glob("imagesTr/px0001_*"):
        p.unlink()
    _link(src / "ProstateX-0000" / "lesion_label_t2space_geomfromT2.nii.gz", root / "labelsTr" / "px0000.nii.gz")
    for c, name in ((0, "t2w"), (1, "adc")):
        _link(src / "ProstateX-0000" / f"{name}.mha", root / "imagesTr" / f"px0000b_{c:04d}.mha")
    _link(src / "ProstateX-0000" / "lesion_label_t2space_geomfromT2.nii.gz", root / "labelsTr" / "px0000b.nii.gz")
    res = prepare_folder(root, labels={1: "csPCa"}, channels=["T2", "ADC"], progress=False)
    assert res.datalist["training"][0]["image"] == ["imagesTr/px0000_0000.mha", "imagesTr/px0000_0001.mha"]
    assert res.datalist["orientations"] == {"LPS": 2} and res.datalist["num_folds"] == 2
