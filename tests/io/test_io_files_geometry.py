"""The one home of file-name facts (io.files) and grids (io.geometry), and the layering of the io package."""

from __future__ import annotations

import ast
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import ultralight3d.io as uio
from ultralight3d.io import (
    GRID_TOLERANCE,
    IMAGE_SUFFIXES,
    ImageGeometry,
    channel_file_name,
    discover_cases,
    grid_mismatch,
    is_image_file,
    list_image_files,
    load_case,
    read_geometry,
    read_image,
    same_grid,
    split_channel,
    strip_image_suffix,
)

IO_LAYERS = ["files", "geometry", "volume", "dicom", "image", "cases"]  # each imports only the ones before it


def test_io_modules_import_only_lower_layers() -> None:
    """No import cycle (image <-> dicom was one): every ``from .x import`` in io/ points to a lower layer, including
    imports inside functions."""
    folder = Path(uio.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == sorted(IO_LAYERS)
    for rank, name in enumerate(IO_LAYERS):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert imported <= set(IO_LAYERS[:rank]), (name, imported)


def test_file_name_facts() -> None:
    assert IMAGE_SUFFIXES == (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
    assert is_image_file("a/B.NII.GZ") and is_image_file("x.nhdr") and not is_image_file("x.seg.nrrd")
    assert not is_image_file("notes.txt") and not is_image_file("archive.gz")
    assert strip_image_suffix("/a/b/Case_01.NII.GZ") == "Case_01" and strip_image_suffix("x.mhd") == "x"
    assert strip_image_suffix("label.seg.nrrd") == "label.seg" and strip_image_suffix("notes.txt") == "notes"
    assert split_channel("case_01_0001") == ("case_01", 1) and split_channel("case_01") == ("case_01", None)
    assert split_channel("case_001") == ("case_001", None)  # three digits: not an nnU-Net channel
    assert channel_file_name("p", 3) == "p_0003"


def test_list_image_files_skips_hidden_segmentations_and_folders(tmp_path: Path) -> None:
    for name in ("b.nii.gz", "a.mha", "._a.nii.gz", ".hidden.nrrd", "a.seg.nrrd", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.nii.gz").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "srr.nii.gz").write_bytes(b"")
    assert [p.name for p in list_image_files(tmp_path)] == ["a.mha", "b.nii.gz"]
    assert list_image_files(tmp_path, "*/srr.nii.gz") == [tmp_path / "sub" / "srr.nii.gz"]
    assert list_image_files(tmp_path / "missing") == []


def test_discover_cases_skips_macos_resource_forks(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "._a.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    assert [c.case_id for c in discover_cases(tmp_path)] == ["a"]


def _geometry(affine: np.ndarray, shape=(10, 12, 8)) -> ImageGeometry:
    return ImageGeometry.from_affine(affine, shape)


def test_one_convention_for_header_sitk_and_affine_geometry(tmp_path: Path) -> None:
    affine = np.array([[0.0, -0.8, 0.0, 12.5], [0.9, 0.0, 0.0, -30.0], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1]])
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 8), np.float32), affine), path)
    header = read_geometry(path)
    from_sitk = ImageGeometry.from_sitk(sitk.ReadImage(str(path)), path)
    from_affine = read_image(path).geometry
    for g in (from_sitk, from_affine):
        assert g.size == header.size and same_grid(header, g)
        np.testing.assert_allclose(g.spacing, header.spacing, atol=1e-6)
        np.testing.assert_allclose(g.origin, header.origin, atol=1e-5)
        np.testing.assert_allclose(g.direction, header.direction, atol=1e-6)
    np.testing.assert_allclose(header.affine, affine, atol=1e-5)  # RAS affine <-> LPS geometry round trip
    assert header.orientation == from_affine.orientation == "ALS"


def test_same_grid_uses_one_tolerance_in_voxels() -> None:
    base = np.diag([0.5, 0.5, 2.0, 1.0])
    ref = _geometry(base)
    step = GRID_TOLERANCE * 0.5  # mm = GRID_TOLERANCE voxels of the smallest voxel size (0.5 mm)

    def moved(dx: float) -> ImageGeometry:
        a = base.copy()
        a[0, 3] += dx
        return _geometry(a)

    assert same_grid(ref, moved(0.9 * step)) and not same_grid(ref, moved(1.1 * step))
    assert grid_mismatch(ref, moved(2 * step)) == [f"origin ({-2 * step:.6g}, 0, 0) vs image (0, 0, 0) mm (LPS)"]
    # a spacing difference counts by how far it moves the far corner (9 voxels away on x)
    ds = 0.9 * step / 9
    assert same_grid(ref, _geometry(np.diag([0.5 + ds, 0.5, 2.0, 1.0])))
    assert grid_mismatch(ref, _geometry(np.diag([0.5 + 1.2 * step / 9, 0.5, 2.0, 1.0])), "label")[0].startswith(
        "spacing (0.50067, 0.5, 2) vs label (0.5, 0.5, 2) mm"
    )
    # a rotation counts by how far it moves the corners
    angle = 1.2 * step / np.hypot(9 * 0.5, 11 * 0.5)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    assert grid_mismatch(ref, _geometry(rot @ base)) == ["orientation RAS vs image RAS (direction cosines differ)"]
    assert grid_mismatch(ref, _geometry(base, (10, 12, 9))) == ["size (10, 12, 9) vs image (10, 12, 8)"]


def test_channels_on_the_same_grid_are_not_resampled(tmp_path: Path) -> None:
    """load_case stacks a channel whose grid differs by less than the tolerance as it is (no interpolation)."""
    rng = np.random.default_rng(0)
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    nudged = aff.copy()
    nudged[:3, 3] = 1e-4  # 1e-4 mm << GRID_TOLERANCE voxels
    x1, x2 = rng.normal(size=(2, 8, 8, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(x1, aff), tmp_path / "c_0000.nii.gz")
    nib.save(nib.Nifti1Image(x2, nudged), tmp_path / "c_0001.nii.gz")
    img = load_case(discover_cases(tmp_path, channels=["T2", "ADC"])[0], ["T2", "ADC"])
    np.testing.assert_array_equal(img.array[1], x2)
    nudged[:3, 3] = 0.5  # half a voxel: resampled onto the first grid
    nib.save(nib.Nifti1Image(x2, nudged), tmp_path / "c_0001.nii.gz")
    img = load_case(discover_cases(tmp_path, channels=["T2", "ADC"])[0], ["T2", "ADC"])
    assert not np.array_equal(img.array[1], x2)


@pytest.mark.parametrize("dtype", [None, np.float32])
def test_read_image_dtype(tmp_path: Path, dtype) -> None:
    nib.save(nib.Nifti1Image(np.arange(27, dtype=np.uint8).reshape(3, 3, 3), np.eye(4)), tmp_path / "lab.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 3, 3), np.uint8)), str(tmp_path / "lab.nrrd"))
    for name in ("lab.nii.gz", "lab.nrrd"):
        arr = read_image(tmp_path / name, dtype=dtype).array
        assert arr.dtype == (np.uint8 if dtype is None else np.float32) and arr.shape == (1, 3, 3, 3)
