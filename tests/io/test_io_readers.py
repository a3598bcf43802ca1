"""Readers and input checks: geometry of NIfTI / NRRD (LPS and RAS space) / MHA, and one clear message per bad input."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from ultralight3d.errors import UserInputError
from ultralight3d.io import CaseSpec, check_image, discover_cases, load_case, parse_channel_args, read_image


def _oblique_affine(spacing=(0.8, 1.5, 3.0), angle=0.4, origin=(10.0, -20.0, 5.0)) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.array(
        [[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def test_nifti_affine_is_exact(tmp_path):
    aff = _oblique_affine()
    vol = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    nib.save(nib.Nifti1Image(vol, aff), tmp_path / "a.nii.gz")
    img = read_image(tmp_path / "a.nii.gz")
    assert img.array.shape == (1, 6, 5, 4)
    np.testing.assert_array_equal(img.array[0], vol)
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)  # float32 header precision
    np.testing.assert_allclose(img.spacing, (0.8, 1.5, 3.0), atol=1e-5)


def test_nrrd_lps_and_ras_spaces_give_same_ras_affine(tmp_path):
    aff = _oblique_affine()
    vol = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    lps = np.diag([-1.0, -1, 1, 1]) @ aff
    nrrd.write(
        str(tmp_path / "lps.nrrd"),
        vol,
        {
            "space": "left-posterior-superior",
            "space directions": lps[:3, :3].T,
            "space origin": lps[:3, 3],
            "kinds": ["domain"] * 3,
        },
    )
    nrrd.write(
        str(tmp_path / "ras.nrrd"),
        vol,
        {
            "space": "right-anterior-superior",
            "space directions": aff[:3, :3].T,
            "space origin": aff[:3, 3],
            "kinds": ["domain"] * 3,
        },
    )
    for name in ("lps.nrrd", "ras.nrrd"):
        img = read_image(tmp_path / name)
        np.testing.assert_allclose(img.affine, aff, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(img.array[0], vol)


def test_mha_geometry_matches_itk(tmp_path):
    vol = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)  # (z, y, x) in ITK order
    im = sitk.GetImageFromArray(vol)
    im.SetSpacing((0.7, 1.1, 2.5))
    im.SetOrigin((3.0, -4.0, 12.0))
    im.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    sitk.WriteImage(im, str(tmp_path / "a.mha"))
    img = read_image(tmp_path / "a.mha")
    assert img.array.shape == (1, 6, 5, 4)
    np.testing.assert_array_equal(img.array[0], vol.transpose(2, 1, 0))
    # voxel (1, 2, 3) -> ITK physical point (LPS) -> RAS
    lps = np.array(im.TransformIndexToPhysicalPoint((1, 2, 3)))
    ras = img.affine @ np.array([1, 2, 3, 1.0])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-6)


def test_not_an_image(tmp_path):
    bad = tmp_path / "notes.nii.gz"
    bad.write_text("hello")
    with pytest.raises(UserInputError, match=r"notes\.nii\.gz is not a readable NIfTI image .*give a NIfTI"):
        read_image(bad)
    txt = tmp_path / "report.txt"
    txt.write_text("x")
    with pytest.raises(UserInputError, match=r"report\.txt is not a supported image file; give a NIfTI"):
        read_image(txt)
    bad_mha = tmp_path / "broken.mha"
    bad_mha.write_text("ObjectType = Image\n")
    with pytest.raises(UserInputError, match=r"broken\.mha is not a readable image"):
        read_image(bad_mha)


def test_missing_input(tmp_path):
    with pytest.raises(UserInputError, match=r"input .*nothere does not exist; give a NIfTI"):
        discover_cases(tmp_path / "nothere")


def test_2d_image(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((20, 30), np.float32), np.eye(4)), tmp_path / "slice.nii.gz")
    img = read_image(tmp_path / "slice.nii.gz")
    with pytest.raises(UserInputError, match=r"slice\.nii\.gz is 2D \(shape \(20, 30\)\); ultralight3d segments 3D"):
        check_image(img, expected_channels=1)
    # a 3D file with a single slice is 2D too
    nib.save(nib.Nifti1Image(np.zeros((20, 30, 1), np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    with pytest.raises(UserInputError, match=r"one\.nii\.gz is 2D \(shape \(20, 30, 1\)\)"):
        check_image(read_image(tmp_path / "one.nii.gz"), expected_channels=1)


def test_4d_where_3d_expected(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "dwi.nii.gz")
    img = read_image(tmp_path / "dwi.nii.gz")
    assert img.array.shape == (3, 8, 8, 8)
    with pytest.raises(UserInputError, match=r"dwi\.nii\.gz is 4D with 3 volumes .* expects one 3D image; split it"):
        check_image(img, expected_channels=1)


def test_wrong_channel_count(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "mp.nii.gz")
    with pytest.raises(
        UserInputError,
        match=r"mp\.nii\.gz has 3 channel\(s\) but the bundle expects 2 \(T2, ADC\); "
        r"give one image per channel with --channel",
    ):
        check_image(read_image(tmp_path / "mp.nii.gz"), expected_channels=2, channel_names=["T2", "ADC"])
    # a 4D (channel-last, MSD style) file with the right count is accepted
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), tmp_path / "msd.nii.gz")
    case = load_case(CaseSpec("msd", [tmp_path / "msd.nii.gz"]), ["T2", "ADC"])
    assert case.array.shape == (2, 8, 8, 8)


def test_nan_voxels(tmp_path):
    vol = np.zeros((8, 8, 8), np.float32)
    vol[1, 2, 3] = np.nan
    vol[2, 2, 2] = np.inf
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(UserInputError, match=r"nan\.nii\.gz has 2 NaN/inf voxel\(s\); replace them"):
        check_image(read_image(tmp_path / "nan.nii.gz"), expected_channels=1)


def test_non_orthonormal_direction(tmp_path):
    aff = np.eye(4)
    aff[0, 1] = 0.5  # shear
    img = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), aff)
    img.set_sform(aff, code=1)
    nib.save(img, tmp_path / "shear.nii.gz")
    with pytest.raises(
        UserInputError,
        match=r"shear\.nii\.gz has a non-orthonormal \(sheared\) direction matrix.*"
        r"resample it onto an orthonormal grid",
    ):
        check_image(read_image(tmp_path / "shear.nii.gz"), expected_channels=1)


def test_multichannel_resampled_onto_first_grid(tmp_path):
    aff1 = np.diag([1.0, 1.0, 2.0, 1.0])
    aff2 = np.diag([2.0, 2.0, 2.0, 1.0])  # coarser second channel covering the same field of view
    x1 = np.zeros((16, 16, 8), np.float32)
    ii = np.arange(8, dtype=np.float32)
    x2 = np.broadcast_to(ii[:, None, None], (8, 8, 8)).copy()  # value = i index on the coarse grid
    nib.save(nib.Nifti1Image(x1, aff1), tmp_path / "c_0000.nii.gz")
    nib.save(nib.Nifti1Image(x2, aff2), tmp_path / "c_0001.nii.gz")
    cases = discover_cases(tmp_path, channels=["T2", "ADC"])
    assert [c.case_id for c in cases] == ["c"]
    img = load_case(cases[0], ["T2", "ADC"])
    assert img.array.shape == (2, 16, 16, 8)
    np.testing.assert_allclose(img.affine, aff1)
    # fine voxel i sits at x = i mm = coarse index i/2
    np.testing.assert_allclose(img.array[1, 6, 5, 3], 3.0, atol=1e-5)
    np.testing.assert_allclose(img.array[1, 7, 5, 3], 3.5, atol=1e-5)
    # the same case given channel by channel
    (explicit,) = discover_cases(
        None, ["T2", "ADC"], {"T2": str(tmp_path / "c_0000.nii.gz"), "ADC": str(tmp_path / "c_0001.nii.gz")}
    )
    assert explicit.case_id == "c"  # nnU-Net channel suffix dropped
    np.testing.assert_array_equal(load_case(explicit, ["T2", "ADC"]).array, img.array)


def test_multichannel_folder_missing_channel(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), tmp_path / "p1_0000.nii.gz")
    cases = discover_cases(tmp_path, channels=["T2", "ADC"])
    assert cases[0].error and "case p1 has channel files [0] but the bundle needs 2 (T2, ADC)" in cases[0].error


def test_channel_args():
    assert parse_channel_args(["T2=/a/b.nii.gz", "ADC=1.2.3"]) == {"T2": "/a/b.nii.gz", "ADC": "1.2.3"}
    with pytest.raises(UserInputError, match=r"--channel 'T2' must look like NAME=FILE_OR_FOLDER_OR_SERIESUID"):
        parse_channel_args(["T2"])
    with pytest.raises(UserInputError, match=r"--channel gave \['T2'\] but the bundle's channels are \['T2', 'ADC'\]"):
        discover_cases(None, ["T2", "ADC"], {"T2": "x.nii.gz"})
