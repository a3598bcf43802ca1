"""The flags of ``prepare``, ``select-width`` and ``demo`` that no other test drives from the command line:
``--check-images`` and ``--name`` of ``prepare folder``, ``--download`` of ``prepare msd-prostate`` (skipped when the
extracted data set is already there, so no network is used), ``select-width --min-cap``, ``demo --bundles``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from data_fixtures_ul3d import write_nifti
from test_data_prepare import make_msd

from ultralight3d.cli import main


def test_prepare_folder_check_images_and_name(make_folder, capsys) -> None:
    root = make_folder(n=3)
    assert main(["prepare", "folder", "--root", str(root), "--name", "Abdomen", "--check-images", "--quiet"]) == 0
    datalist = json.loads((root / "datalist.json").read_text())
    assert datalist["name"] == "Abdomen"
    # one NaN voxel in one image: --check-images names that file, and nothing is overwritten
    bad = root / "imagesTr" / "case_001.nii.gz"
    img = nib.load(str(bad))
    data = np.asarray(img.dataobj, dtype=np.float32).copy()
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(bad))
    capsys.readouterr()
    before = (root / "datalist.json").read_bytes()
    argv = ["prepare", "folder", "--root", str(root), "--check-images", "--overwrite", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "case_001.nii.gz" in err and "NaN" in err
    assert (root / "datalist.json").read_bytes() == before
    # without the check the header-only scan accepts it (the check is what finds it)
    assert main(["prepare", "folder", "--root", str(root), "--overwrite", "--quiet"]) == 0


def test_prepare_msd_download_is_skipped_when_the_data_is_there(tmp_path: Path) -> None:
    make_msd(tmp_path, n=5)
    assert main(["prepare", "msd-prostate", "--root", str(tmp_path), "--download", "--quiet"]) == 0
    datalist = json.loads((tmp_path / "Task05_Prostate" / "datalist.json").read_text())
    assert datalist["numTraining"] == 5 and not (tmp_path / "Task05_Prostate.tar").exists()


def test_select_width_min_cap(tmp_path: Path, capsys) -> None:
    from ultralight3d.width_selection import candidate_caps

    volumes = tmp_path / "volumes"
    for i in range(2):
        write_nifti(volumes / f"vol{i}.nii.gz", shape=(64, 40, 40))
    out = tmp_path / "sel"
    # T's caps are halvings of its widest stage (32); --min-cap 16 leaves too few for the knee rule, and says so
    assert len([c for c in candidate_caps([4, 8, 16, 24, 32]) if c >= 16]) < 5
    argv = ["select-width", "--images", str(volumes), "--reference", "ultralight_unet3d_t", "--crop", "64", "32", "32",
            "--min-cap", "16", "--output-dir", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "width candidates gave finite scores" in err and "smaller --min-cap" in err
    assert not (out / "width_selection.json").exists()


def test_demo_bundles_folder_is_used_and_checked(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--bundles", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "nowhere") in err[0] and "--bundles" in err[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written
