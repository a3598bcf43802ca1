"""``ultralight3d prepare ...``: exit codes, one-line errors, the summary it prints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from data_fixtures_ul3d import write_nifti

from ultralight3d.cli import main
from ultralight3d.cli.prepare import parse_labels
from ultralight3d.errors import UserInputError


def test_folder_command_writes_datalist_and_reports(make_folder, tmp_path: Path, caplog, capsys) -> None:
    root = make_folder(n=5, nnunet_channels=2)
    with caplog.at_level(logging.INFO):
        code = main(
            [
                "prepare",
                "folder",
                "--root",
                str(root),
                "--labels",
                "1=gland, 2=lesion",
                "--channels",
                "T2,ADC",
                "--folds",
                "5",
                "--quiet",
            ]
        )
    assert code == 0
    dl = json.loads((root / "datalist.json").read_text())
    assert dl["labels"] == {"0": "background", "1": "gland", "2": "lesion"} and dl["channels"] == ["T2", "ADC"]
    assert "folder MyData: 5 training cases in 5 folds (sizes 1/1/1/1/1), 0 validation, 0 test" in caplog.text
    assert "classes (3 incl. background): 1 gland, 2 lesion" in caplog.text
    assert "spacing (mm, x/y/z range): 1 x 1 x 1" in caplog.text and "RAS (5 cases)" in caplog.text
    assert f"datalist written to {root / 'datalist.json'}" in caplog.text

    # again without --overwrite: exit 2, one line naming the file and the fix, no traceback
    capsys.readouterr()
    assert main(["prepare", "folder", "--root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {root / 'datalist.json'} already exists; pass --overwrite to replace it or choose another "
        "output folder\n"
    )
    out = tmp_path / "elsewhere"
    out.mkdir()
    assert main(["prepare", "folder", "--root", str(root), "--output", str(out), "--seed", "3", "--quiet"]) == 0
    assert json.loads((out / "datalist.json").read_text())["fold_seed"] == 3


def test_dataset_commands_and_errors(tmp_path: Path, capsys) -> None:
    train = tmp_path / "RawData" / "Training"
    for n in [f"{i:04d}" for i in [*range(1, 11), *range(21, 41)]]:
        write_nifti(train / "img" / f"img{n}.nii.gz")
        write_nifti(train / "label" / f"label{n}.nii.gz", label=True)
    assert main(["prepare", "synapse", "--root", str(tmp_path), "--protocol", "8", "--quiet"]) == 0
    dl = json.loads((tmp_path / "datalist.json").read_text())
    assert dl["label_protocol"] == "8" and len(dl["validation"]) == 12 and len(dl["training"]) == 18

    assert main(["prepare", "feta", "--root", str(tmp_path / "none"), "--quiet"]) == 2
    assert "error: no sub-*/anat folders under" in capsys.readouterr().err
    assert main(["prepare", "msd-prostate", "--root", str(tmp_path), "--quiet"]) == 2
    assert "point --root at the extracted Task05_Prostate folder" in capsys.readouterr().err
    assert main(["prepare", "folder", "--root", str(tmp_path), "--folds", "1"]) == 2
    assert "--folds must be at least 2, got 1" in capsys.readouterr().err
    assert main(["prepare"]) == 2  # no dataset: help, exit 2
    assert "msd-prostate" in capsys.readouterr().out
    code: int | str | None
    try:  # argparse: missing --root (main returns 2, or argparse exits with 2)
        code = main(["prepare", "feta"])
    except SystemExit as stop:
        code = stop.code
    assert code == 2


def test_parse_labels() -> None:
    assert parse_labels("1=liver, 2=liver tumour,") == {"1": "liver", "2": "liver tumour"}
    with pytest.raises(UserInputError, match=r"--labels entry 'liver' is not VALUE=NAME"):
        parse_labels("liver")
