"""evaluate_cases / ``ultralight3d evaluate``: files in, CSV + JSON + markdown + box plot out, grid checks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest

from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.evaluation import evaluate_cases


def _save(arr: np.ndarray, path: Path, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.astype(np.uint8), aff), str(path))
    return path


@pytest.fixture()
def pair_folders(tmp_path: Path) -> tuple[Path, Path]:
    lab = np.zeros((24, 24, 12), np.uint8)
    lab[4:14, 4:14, 2:8] = 1
    lab[16:20, 16:20, 4:8] = 2
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    _save(lab, labels / "case_a.nii.gz")
    _save(lab, preds / "case_a_seg.nii.gz")  # perfect
    shifted = np.roll(lab, 1, axis=0)
    shifted[shifted == 2] = 0  # class 2 missed
    _save(lab, labels / "case_b.nii.gz")
    _save(shifted, preds / "case_b_seg.nii.gz")
    return preds, labels


def test_evaluate_cli_writes_tables_and_plot(pair_folders, tmp_path, capsys):
    preds, labels = pair_folders
    out = tmp_path / "report"
    rc = main(["evaluate", "--pred", str(preds), "--label", str(labels), "-o", str(out), "--classes", "1:organ,2:node"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| 1 organ |" in printed and f"reports in {out}" in printed
    rows = list(csv.DictReader(open(out / "metrics_per_case.csv")))
    assert [(r["case"], r["class"], r["status"]) for r in rows] == [
        ("case_a", "organ", "ok"),
        ("case_a", "node", "ok"),
        ("case_b", "organ", "ok"),
        ("case_b", "node", "pred_empty"),
    ]
    assert float(rows[2]["dice"]) == pytest.approx(2 * 9 * 10 * 6 / (2 * 600))
    assert rows[3]["hd95_mm"] == "nan" and float(rows[3]["dice"]) == 0.0
    report = json.loads((out / "metrics.json").read_text())
    assert report["classes"]["node"]["n_pred_empty"] == 1
    assert report["classes"]["node"]["dice"]["mean"] == pytest.approx(0.5)
    assert report["classes"]["node"]["hd95"]["n"] == 1
    assert report["cases"][1]["metrics"]["node"]["hd95"] is None  # NaN -> null in JSON
    assert report["tolerance_mm"] == 2.0
    md = (out / "metrics.md").read_text()
    assert "| 2 node | 0.500 ± 0.500 |" in md
    png = mpimg.imread(out / "metrics_boxplot.png")
    assert png.shape[:2] == (420, 1200) and png[..., :3].std() > 0.01
    # outputs are never replaced silently
    assert main(["evaluate", "--pred", str(preds), "--label", str(labels), "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_class_names_from_dataset_json(pair_folders, tmp_path):
    preds, labels = pair_folders
    (labels / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "PZ", "2": "TZ"}}))
    assert (
        main(["evaluate", "--pred", str(preds), "--label", str(labels), "-o", str(tmp_path / "r"), "--no-plots"]) == 0
    )
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert list(report["classes"]) == ["PZ", "TZ"]
    assert not (tmp_path / "r" / "metrics_boxplot.png").exists()


def test_class_names_from_labels_csv(pair_folders, tmp_path):
    """``--labels labels.csv`` (a bundle's table) names the classes (it crashed with a TypeError before)."""
    from ultralight3d.labels import LabelTable, write_label_csv

    preds, labels = pair_folders
    table = write_label_csv(LabelTable.from_names({1: "peripheral zone", 2: "transition zone"}), tmp_path / "l.csv")
    assert (
        main(
            [
                "evaluate",
                "--input",
                str(preds),
                "--reference",
                str(labels),
                "--labels",
                str(table),
                "-o",
                str(tmp_path / "r"),
                "--no-plots",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert list(report["classes"]) == ["peripheral zone", "transition zone"]
    assert report["classes"]["peripheral zone"]["dice"]["n"] == 2 and report["protocol"] is None


def test_different_grid_is_an_error_unless_resampled(tmp_path):
    lab = np.zeros((20, 20, 10), np.uint8)
    lab[5:15, 5:15, 2:8] = 1
    label = _save(lab, tmp_path / "l" / "c.nii.gz", spacing=(1.0, 1.0, 2.0))
    # same object on a grid twice as fine in x and y: resampling (nearest) onto the label grid recovers it exactly
    fine = np.repeat(np.repeat(lab, 2, axis=0), 2, axis=1)
    pred = _save(fine, tmp_path / "p" / "c_seg.nii.gz", spacing=(0.5, 0.5, 2.0), origin=(-0.25, -0.25, 0.0))
    with pytest.raises(UserInputError, match=r"c_seg.nii.gz is not on the grid of its label .*--resample"):
        evaluate_cases([pred], [label], {1: "organ"}, tmp_path / "r")
    res = evaluate_cases([pred], [label], {1: "organ"}, tmp_path / "r", resample=True, plots=False)
    assert res["cases"][0]["resampled"] is True
    assert res["classes"]["organ"]["dice"]["mean"] == pytest.approx(1.0)


def test_unmatched_and_bad_inputs(tmp_path, capsys):
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    _save(lab, tmp_path / "l" / "x.nii.gz")
    _save(lab, tmp_path / "p" / "y_seg.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--label", str(tmp_path / "l")]) == 2
    assert "no reference label" in capsys.readouterr().err
    lab3 = lab.copy()
    lab3[0, 0, 0] = 3
    _save(lab3, tmp_path / "p2" / "x.nii.gz")
    with pytest.raises(UserInputError, match=r"label values \[3\].*--labels"):
        evaluate_cases([tmp_path / "p2" / "x.nii.gz"], [tmp_path / "l" / "x.nii.gz"], {1: "a"}, tmp_path / "r")
    with pytest.raises(UserInputError, match="does not exist"):
        evaluate_cases([tmp_path / "missing.nii.gz"], [tmp_path / "l" / "x.nii.gz"], {1: "a"}, tmp_path / "r2")


@pytest.mark.data
def test_real_msd_labels_end_to_end(shared_data, tmp_path):
    from scipy import ndimage

    files = sorted((shared_data / "msd_prostate_labels").glob("prostate_*.nii.gz"))[:2]
    preds = []
    for f in files:
        img = nib.load(f)
        lab = np.asarray(img.dataobj).astype(np.uint8)
        pert = ndimage.binary_dilation(lab == 1, iterations=1) & (lab != 2)  # PZ grown by one voxel
        out = lab.copy()
        out[pert] = 1
        p = tmp_path / "pred" / f.name.replace(".nii.gz", "_seg.nii.gz")
        p.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(out, img.affine, img.header), str(p))
        preds.append(p)
    res = evaluate_cases(preds, files, {1: "PZ", 2: "TZ"}, tmp_path / "r")
    pz, tz = res["classes"]["PZ"], res["classes"]["TZ"]
    assert tz["dice"]["mean"] == pytest.approx(1.0) and tz["hd95"]["mean"] == pytest.approx(0.0)
    assert 0.5 < pz["dice"]["mean"] < 0.95
    assert 0.5 < pz["hd95"]["mean"] < 5.0  # one in-plane voxel is 0.6 mm, one slice ~4 mm
    assert [c["case"] for c in res["cases"]] == [f.name.removesuffix(".nii.gz") for f in files]
