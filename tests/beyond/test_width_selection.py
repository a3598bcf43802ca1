"""Training-free width selection: knee rule on hand-made curves, candidates, determinism, CLI, real fetal atlases."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ultralight3d import create_model
from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.width_selection import (
    candidate_caps,
    capped_channels,
    find_images,
    knee_index_tv,
    minmax_normalise,
    select_width,
)

# 64x32x32 crops: bottleneck 2x1x1, enough for train-mode BatchNorm with batch 1, and cheap on 2 CPU cores
CROP = (64, 32, 32)


def test_knee_rule_on_hand_made_curves() -> None:
    # flat, then collapse: d = [.01, .01, .01, .47, .5]; score(2) = .2375, score(3) = .3167 -> k* = 3 -> index 2
    assert knee_index_tv([0.0, 0.01, 0.02, 0.03, 0.5, 1.0]) == 2
    # late collapse, n = 8: scores(k=2..5) = .1433, .1753, .2225, .2993 -> k* = 5 -> index 4
    assert knee_index_tv([0.0, 0.02, 0.04, 0.05, 0.06, 0.07, 0.5, 1.0]) == 4
    # early collapse: d = [.9, .05, .03, .01, .01]; scores(k=2, 3) = .025 - .475 < .0167 - .3167 -> k* = 3 -> index 2
    assert knee_index_tv([1.0, 0.1, 0.05, 0.02, 0.01, 0.0]) == 2
    # n = 5 allows only k = 2 -> index 1; a constant curve ties everywhere -> first maximum k = 2 -> index 1
    assert knee_index_tv([0.0, 0.1, 0.2, 0.9, 1.0]) == 1
    assert knee_index_tv([0.0] * 7) == 1
    with pytest.raises(ValueError, match="at least 5 candidates"):
        knee_index_tv([0.0, 0.5, 1.0, 1.0])


def test_candidates_and_normalisation() -> None:
    ref = [32, 64, 128, 192, 320]
    assert candidate_caps(ref) == [320, 160, 80, 40, 20, 10, 5, 2, 1]
    assert capped_channels(ref, 80) == [32, 64, 80, 80, 80]
    assert capped_channels(ref, 20) == [20, 20, 20, 20, 20]
    np.testing.assert_allclose(minmax_normalise([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(minmax_normalise([3.0, 3.0]), [0.0, 0.0])


def _write(path: Path, shape: tuple[int, ...], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.zeros(shape, np.float32)
    arr[4:-4, 4:-4, 2:-2] = rng.normal(300, 50, (shape[0] - 8, shape[1] - 8, shape[2] - 4))
    nib.save(nib.Nifti1Image(arr, np.diag([0.8, 0.8, 0.8, 1.0])), str(path))
    return path


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unlabeled")
    _write(root / "a.nii.gz", (70, 40, 28), 0)  # larger than the crop on two axes, smaller on one (zero-padded)
    _write(root / "b.nii.gz", (50, 30, 36), 1)
    return root


def test_find_images_groups_nnunet_channels_and_reports_bad_folders(tmp_path: Path) -> None:
    names = (
        "p1_0000.nii.gz",
        "p1_0001.nii.gz",
        "p2_0000.nii.gz",
        "p2_0001.nii.gz",
        "notes.txt",
        "._p1_0000.nii.gz",
        "p3.seg.nrrd",
    )  # a text file, a hidden macOS resource fork and a Slicer segmentation: not images
    for name in names:
        (tmp_path / name).write_bytes(b"")
    cases = find_images(tmp_path)
    assert [[f.name for f in c] for c in cases] == [["p1_0000.nii.gz", "p1_0001.nii.gz"],
                                                    ["p2_0000.nii.gz", "p2_0001.nii.gz"]]  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserInputError, match=r"no images .* in .*empty"):
        find_images(empty)
    with pytest.raises(UserInputError, match="image folder .*missing not found"):
        find_images(tmp_path / "missing")


def test_unreadable_file_and_bad_crop_are_clear_errors(tmp_path: Path, volumes: Path) -> None:
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    (tmp_path / "._broken.nii.gz").write_bytes(b"macOS resource fork")  # hidden: skipped, like every io finder
    # the message of the shared reader (ultralight3d.io.read_image): the file and the fix
    with pytest.raises(UserInputError, match=r"/broken\.nii\.gz is not a readable NIfTI image .*; give a NIfTI"):
        select_width(tmp_path, reference_model="ultralight_unet3d_t", crop=CROP, progress=False)
    with pytest.raises(UserInputError, match="multiples of 32"):
        select_width(volumes, reference_model="ultralight_unet3d_t", crop=(48, 32, 32), progress=False)
    with pytest.raises(UserInputError, match="one bottleneck voxel"):
        select_width(volumes, reference_model="ultralight_unet3d_t", crop=(32, 32, 32), progress=False)


def test_scan_is_deterministic_finite_and_cli_writes_results(volumes: Path, tmp_path: Path) -> None:
    res = select_width(volumes, reference_model="ultralight_unet3d_t", crop=CROP, max_images=1, progress=False)
    caps = [c.cap for c in res.candidates]
    assert caps == [32, 16, 8, 4, 2, 1]  # every cap down to 1 builds (gates fall back to gcd groups)
    assert res.reference_channels == [4, 8, 16, 24, 32]
    assert all(np.isfinite(c.score) and c.score > 0 for c in res.candidates)
    params = [c.params for c in res.candidates]
    flops = [c.flops for c in res.candidates]
    assert params == sorted(params, reverse=True) and len(set(params)) == len(params)
    assert all(f is not None for f in flops)
    assert flops == sorted((f for f in flops if f is not None), reverse=True)
    norm = [c.normalised for c in res.candidates]
    assert min(norm) == 0.0 and max(norm) == 1.0
    cfg = res.model_config()
    assert cfg["model_name"] == "ultralight_unet3d_t" and cfg["channels"] == res.selected.channels
    net = create_model(**cfg)
    assert sum(p.numel() for p in net.parameters()) == res.selected.params

    # the CLI repeats the scan with the same seed: identical scores (determinism), files written
    out = tmp_path / "out"
    rc = main(["select-width", "--images", str(volumes), "--reference", "ultralight_unet3d_t", "--crop", "64", "32",
               "32", "--max-images", "1", "--output-dir", str(out)])  # fmt: skip
    assert rc == 0
    saved = json.loads((out / "width_selection.json").read_text())
    assert [c["score"] for c in saved["candidates"]] == [c.score for c in res.candidates]
    assert saved["selected"]["cap"] == res.selected.cap
    assert (out / "width_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    override = json.loads((out / "network_override.json").read_text())
    assert override == {"network_def#model_name": "ultralight_unet3d_t", "network_def#channels": res.selected.channels}
    # no silent overwrite
    assert main(["select-width", "--images", str(volumes), "--output-dir", str(out)]) == 2


@pytest.mark.slow
def test_real_fetal_atlases(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real 0.8 mm fetal brain atlases (one per subfolder, srr.nii.gz): the scan runs and reports a choice."""
    atlas = shared_data / "fetal_sb_atlas"
    rc = main(["select-width", "--images", str(atlas), "--pattern", "*/srr.nii.gz", "--reference",
               "ultralight_unet3d_t", "--crop", "64", "--max-images", "1", "--no-flops", "--output-dir",
               str(tmp_path)])  # fmt: skip
    assert rc == 0
    saved = json.loads((tmp_path / "width_selection.json").read_text())
    assert saved["num_images"] == 1 and saved["crop"] == [64, 64, 64]
    assert all(np.isfinite(c["score"]) for c in saved["candidates"])
    assert saved["selected"]["cap"] in [c["cap"] for c in saved["candidates"]]
    assert f"selected: cap {saved['selected']['cap']}" in capsys.readouterr().out
