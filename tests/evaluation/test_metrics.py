"""Metric values against hand-computed cases and on real MSD Prostate labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ultralight3d.evaluation import compute_case_metrics, summarize_cases


def _cube(shape=(20, 20, 20), lo=5, hi=15) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    a[lo:hi, lo:hi, lo:hi] = 1
    return a


def test_identical_masks_score_perfectly():
    a = _cube()
    a[1:3, 1:3, 1:3] = 2
    m = compute_case_metrics(a, a, [1, 2], spacing=(1.0, 1.0, 3.0))
    for cid in (1, 2):
        assert m[cid] == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0, "status": "ok"}


def test_disjoint_masks():
    a = _cube(lo=2, hi=6)
    b = np.roll(a, 10, axis=0)  # 4-voxel cube moved 10 voxels: faces 7 voxels apart
    m = compute_case_metrics(b, a, [1], spacing=(1.0, 1.0, 1.0), tolerance_mm=2.0)[1]
    assert m["status"] == "ok"
    assert m["dice"] == 0.0
    assert m["nsd"] == 0.0
    # every surface voxel of one cube is 7..13 voxels from the other's surface along x; the 95th percentile is >= 7
    assert 7.0 <= m["hd95"] <= 13.0


def test_one_voxel_shift_with_anisotropic_spacing():
    a = _cube()  # 10^3 cube
    b = np.roll(a, 1, axis=0)
    m = compute_case_metrics(b, a, [1], spacing=(2.0, 1.0, 1.0), tolerance_mm=2.0)[1]
    assert m["dice"] == pytest.approx(2 * 900 / 2000)  # overlap 9 x 10 x 10
    assert m["hd95"] == pytest.approx(2.0)  # one voxel along an axis of 2 mm
    assert m["nsd"] == pytest.approx(1.0)  # every surface point within the 2 mm tolerance
    # the same shift along a 1 mm axis halves the distance
    m1 = compute_case_metrics(np.roll(a, 1, axis=1), a, [1], spacing=(2.0, 1.0, 1.0))[1]
    assert m1["hd95"] == pytest.approx(1.0)


def test_surface_dice_tolerance_on_a_shifted_sheet():
    a = np.zeros((12, 12, 12), np.uint8)
    a[5, 2:10, 2:10] = 1  # a one-voxel-thick sheet: every voxel is surface
    b = np.roll(a, 1, axis=0)
    below = compute_case_metrics(b, a, [1], spacing=(2.0, 1.0, 1.0), tolerance_mm=1.5)[1]
    above = compute_case_metrics(b, a, [1], spacing=(2.0, 1.0, 1.0), tolerance_mm=2.0)[1]
    assert below["nsd"] == 0.0 and above["nsd"] == 1.0
    assert below["dice"] == 0.0 and below["hd95"] == pytest.approx(2.0)


def test_empty_prediction_and_empty_label():
    a = _cube()
    z = np.zeros_like(a)
    missed = compute_case_metrics(z, a, [1])[1]
    assert missed["status"] == "pred_empty" and missed["dice"] == 0.0 and missed["nsd"] == 0.0
    assert math.isnan(missed["hd95"])
    false_pos = compute_case_metrics(a, z, [1])[1]
    assert false_pos["status"] == "label_empty" and false_pos["dice"] == 0.0 and math.isnan(false_pos["hd95"])
    both = compute_case_metrics(z, z, [1])[1]
    assert both["status"] == "both_empty"
    assert all(math.isnan(both[k]) for k in ("dice", "hd95", "nsd"))


def test_summary_means_over_cases_and_counts_empty_cases():
    a = _cube()
    per_case = {
        "perfect": compute_case_metrics(a, a, [1, 2]),  # class 2 absent in both
        "shifted": compute_case_metrics(np.roll(a, 1, axis=0), a, [1, 2]),
        "missed": compute_case_metrics(np.zeros_like(a), a, [1, 2]),
    }
    s = summarize_cases(per_case, {1: "organ", 2: "lesion"})
    organ = s["classes"]["organ"]
    assert organ["dice"]["mean"] == pytest.approx((1.0 + 0.9 + 0.0) / 3)
    assert organ["dice"]["n"] == 3
    assert organ["hd95"]["mean"] == pytest.approx((0.0 + 1.0) / 2)  # the missed case has no finite HD95
    assert organ["hd95"]["n"] == 2 and organ["n_pred_empty"] == 1
    lesion = s["classes"]["lesion"]
    assert lesion["n_both_empty"] == 3 and lesion["dice"]["n"] == 0 and math.isnan(lesion["dice"]["mean"])
    assert s["mean"]["dice"] == pytest.approx(organ["dice"]["mean"])  # classes without values are skipped


def test_bad_inputs_are_rejected():
    a = _cube()
    with pytest.raises(ValueError, match="shape"):
        compute_case_metrics(a[:-1], a, [1])
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        b = a.copy()
        b[0, 0, 0] = 7
        compute_case_metrics(b, a, [1])


@pytest.mark.data
def test_real_msd_prostate_labels_against_perturbed_copies(shared_data):
    import nibabel as nib
    from scipy import ndimage

    files = sorted((shared_data / "msd_prostate_labels").glob("prostate_*.nii.gz"))[:2]
    assert files, "msd_prostate_labels holds no prostate_*.nii.gz"
    for f in files:
        img = nib.load(f)
        lab = np.asarray(img.dataobj).astype(np.int64)
        spacing = img.header.get_zooms()[:3]
        same = compute_case_metrics(lab, lab, [1, 2], spacing=spacing)
        assert all(v["dice"] == 1.0 and v["hd95"] == 0.0 and v["nsd"] == 1.0 for v in same.values())
        # shift by one slice (3.6-4 mm) and erode the transition zone: every metric must get worse, plausibly
        pert = np.roll(lab, 1, axis=2)
        tz = ndimage.binary_erosion(pert == 2, iterations=2)
        pert[(pert == 2) & ~tz] = 0
        m = compute_case_metrics(pert, lab, [1, 2], spacing=spacing, tolerance_mm=2.0)
        for cid in (1, 2):
            assert m[cid]["status"] == "ok"
            assert 0.3 < m[cid]["dice"] < 0.97
            assert 0.0 < m[cid]["nsd"] < 1.0
            assert m[cid]["hd95"] >= min(spacing) - 1e-6
        assert m[2]["dice"] < m[1]["dice"] or m[2]["nsd"] < m[1]["nsd"]  # TZ was perturbed twice
        assert m[1]["hd95"] == pytest.approx(float(spacing[2]), rel=0.05)  # PZ: one slice apart at most
