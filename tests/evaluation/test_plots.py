"""PNG outputs are real images of the stated size: overlays, training curves (CSV and TensorBoard logs)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.plots import load_training_logs, plot_training_curves, save_overlay_png


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (40, 36, 20)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[10:25, 8:20, 5:15] = 1
    lab[28:34, 20:30, 8:12] = 2
    img[lab > 0] += 4
    return img, lab


def test_overlay_png_size_and_colours(tmp_path: Path):
    img, lab = _volume()
    path = save_overlay_png(
        img,
        lab,
        tmp_path / "ov.png",
        reference=np.roll(lab, 1, 0),
        class_names={1: "liver"},
        colors={1: (255, 0, 0), 2: (0, 0, 255)},
        spacing=(1.0, 1.0, 2.5),
        title="case",
        size_px=(900, 340),
    )
    png = mpimg.imread(path)
    assert png.shape == (340, 900, 4)
    rgb = png[..., :3]
    # the filled labels leave red-dominant and blue-dominant pixels (grey image + 45 % colour)
    assert ((rgb[..., 0] - rgb[..., 1] > 0.2) & (rgb[..., 0] - rgb[..., 2] > 0.2)).sum() > 200
    assert ((rgb[..., 2] - rgb[..., 0] > 0.2) & (rgb[..., 2] - rgb[..., 1] > 0.2)).sum() > 50
    with pytest.raises(UserInputError, match="already exists"):
        save_overlay_png(img, lab, path)
    with pytest.raises(UserInputError, match="same shape"):
        save_overlay_png(img, lab[:-1], tmp_path / "bad.png")


def _write_csv(path: Path, header: list[str], rows: list[list[float]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_training_curves_from_csv_logs(tmp_path: Path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _write_csv(run / "training_log.csv", ["iteration", "loss"], [[i, 2.0 / (1 + 0.05 * i)] for i in range(1, 101)])
    _write_csv(
        run / "validation_log.csv",
        ["iteration", "mean_dice", "dice_liver", "dice_kidney"],
        [[i, 0.5 + i / 400, 0.6 + i / 400, 0.4 + i / 400] for i in (25, 50, 75, 100)],
    )
    logs = load_training_logs(run)
    assert logs["train"]["loss"][0] == pytest.approx(2.0 / 1.05)
    assert logs["val"]["iteration"] == [25.0, 50.0, 75.0, 100.0] and "dice_kidney" in logs["val"]
    assert main(["plot-training", str(run), "--width", "800", "--height", "300"]) == 0
    assert f"written to {run / 'training_curves.png'}" in capsys.readouterr().out
    png = mpimg.imread(run / "training_curves.png")
    assert png.shape[:2] == (300, 800) and png[..., :3].std() > 0.05
    # -i/--input names the run folder too; -o the PNG; nothing is replaced without --overwrite
    out = tmp_path / "curves.png"
    assert main(["plot-training", "-i", str(run), "-o", str(out)]) == 0 and out.is_file()
    assert main(["plot-training", "--input", str(run), "--output", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["plot-training", "-i", str(run), "-o", str(out), "--overwrite"]) == 0
    assert main(["plot-training", str(run), "-i", str(run)]) == 2
    assert "give the run folder once" in capsys.readouterr().err


def test_training_curves_from_tensorboard(tmp_path: Path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "tbrun"
    writer = SummaryWriter(str(run))
    for i in range(1, 21):
        writer.add_scalar("Loss", 1.0 / i, i)
    for i in (10, 20):
        writer.add_scalar("val_mean_dice", i / 25, i)
    writer.close()
    logs = load_training_logs(run)
    assert logs["train"]["loss"][-1] == pytest.approx(0.05)
    assert logs["val"]["mean_dice"] == pytest.approx([0.4, 0.8])
    png = mpimg.imread(plot_training_curves(run, tmp_path / "c.png", size_px=(600, 250)))
    assert png.shape[:2] == (250, 600)


def test_training_curves_missing_logs(tmp_path: Path, capsys):
    assert main(["plot-training", str(tmp_path)]) == 2
    assert "no training logs in" in capsys.readouterr().err
