"""The embedded demo data: deterministic, realistic enough, written in the documented MSD layout."""

from __future__ import annotations

import json
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from ultralight3d.data.phantom import (
    PHANTOM_LABELS,
    PHANTOM_SHAPE,
    PHANTOM_SPACING,
    generate_phantom_dataset,
    make_phantom_case,
)
from ultralight3d.errors import UserInputError


def test_phantom_is_deterministic_and_varies_per_case():
    a_img, a_lab, a_aff = make_phantom_case(3)
    b_img, b_lab, _ = make_phantom_case(3)
    c_img, c_lab, _ = make_phantom_case(4)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    assert a_img.shape == a_lab.shape == PHANTOM_SHAPE and a_img.dtype == np.int16 and a_lab.dtype == np.uint8
    assert np.allclose(np.diag(a_aff)[:3], PHANTOM_SPACING)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_phantom_anatomy_and_intensities(seed):
    img, lab, _ = make_phantom_case(seed)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    vol_ml = {v: (lab == v).sum() * np.prod(PHANTOM_SPACING) / 1000 for v in (1, 2, 3)}
    assert 150 < vol_ml[1] < 2500  # liver: the largest organ
    assert 15 < vol_ml[2] < 400 and 15 < vol_ml[3] < 400 and vol_ml[1] > 2 * max(vol_ml[2], vol_ml[3])
    liver_x = np.argwhere(lab == 1)[:, 0].mean()
    spleen_x = np.argwhere(lab == 3)[:, 0].mean()
    assert liver_x < spleen_x  # RAS: liver on the patient's right (low x), spleen on the left
    # organs are brighter than muscle on average but overlap with it voxel-wise (noise + bias field)
    muscle = img[(lab == 0) & (img > 0) & (img < 80)]
    liver = img[lab == 1]
    assert np.median(liver) > np.median(muscle) + 20
    assert liver.std() > 15
    assert (img < -900).mean() > 0.15  # air around the body


def test_dataset_layout_and_overwrite(tmp_path):
    path = generate_phantom_dataset(tmp_path / "ds", num_cases=3, num_test=1, seed=5)
    meta = json.loads(path.read_text())
    assert meta["labels"] == {str(k): v for k, v in PHANTOM_LABELS.items()}
    assert [t["image"] for t in meta["training"]] == [f"./imagesTr/phantom_00{i}.nii.gz" for i in range(3)]
    assert meta["test"] == ["./imagesTs/phantom_003.nii.gz"]
    img: Any = nib.load(tmp_path / "ds" / "imagesTr" / "phantom_000.nii.gz")  # Nifti1Image
    lab: Any = nib.load(tmp_path / "ds" / "labelsTr" / "phantom_000.nii.gz")
    assert np.allclose(img.affine, lab.affine) and img.header["qform_code"] == 1 and img.header["sform_code"] == 1
    assert np.array_equal(np.asarray(img.dataobj), make_phantom_case(5000)[0])
    assert (tmp_path / "ds" / "labelsTs" / "phantom_003.nii.gz").is_file()
    with pytest.raises(UserInputError, match="already exists; pass --overwrite"):
        generate_phantom_dataset(tmp_path / "ds", num_cases=3, seed=5)
