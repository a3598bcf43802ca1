"""Figures: 3-plane label overlays, training curves and metric box plots (matplotlib, Agg backend, no display).

Every function writes one PNG of an exact pixel size (``size_px``; no tight bounding box), atomically, and refuses to
overwrite an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from .errors import UserInputError
from .labels import default_color
from .utils import atomic_path, check_writable

__all__ = [
    "load_training_logs",
    "plot_training_curves",
    "save_metric_boxplots",
    "save_overlay_png",
]

logger = logging.getLogger(__name__)
_DPI = 100


def _figure(size_px: tuple[int, int], ncols: int) -> tuple[plt.Figure, np.ndarray]:
    width, height = size_px
    fig, axes = plt.subplots(1, ncols, figsize=(width / _DPI, height / _DPI), dpi=_DPI, squeeze=False)
    return fig, axes[0]


def _save(fig: plt.Figure, path: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(path)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, dpi=_DPI, format="png")  # no bbox_inches="tight": the size stays exactly size_px
    finally:
        plt.close(fig)
    return path


def _rgba(colors: Mapping[int, Sequence[float]] | None, value: int) -> tuple[float, float, float]:
    c = colors.get(value) if colors else None
    if c is None:
        c = default_color(value)
    c = [float(x) for x in c][:3]
    if max(c) > 1.0:
        c = [x / 255.0 for x in c]
    return (c[0], c[1], c[2])


def _slice_centre(label: np.ndarray) -> tuple[int, ...]:
    """Voxel index through which the three planes are cut: foreground centroid, else the volume centre."""
    fg = np.argwhere(label > 0)
    if fg.size == 0:
        return tuple(s // 2 for s in label.shape)
    return tuple(int(round(v)) for v in fg.mean(0))


def save_overlay_png(
    image: np.ndarray,
    label: np.ndarray,
    path: str | os.PathLike,
    reference: np.ndarray | None = None,
    class_names: Mapping[int, str] | None = None,
    colors: Mapping[int, Sequence[float]] | None = None,
    spacing: Sequence[float] | None = None,
    title: str | None = None,
    center: Sequence[int] | None = None,
    window: tuple[float, float] | None = None,
    alpha: float = 0.45,
    size_px: tuple[int, int] = (1200, 460),
    overwrite: bool = False,
) -> Path:
    """Three orthogonal planes of ``image`` with ``label`` filled in its label colours (and ``reference`` outlined).

    Arrays are in NIfTI / MONAI order ``(X, Y, Z)`` (axis 2 is the slice axis of an axial scan); the planes are
    ``image[:, :, k]`` (axial), ``image[:, j, :]`` (coronal) and ``image[i, :, :]`` (sagittal), drawn with the
    physical aspect ratio from ``spacing``. The cut point is the foreground centroid unless ``center`` is given.

    Args:
        image: intensity volume ``(X, Y, Z)``, or ``(C, X, Y, Z)`` (the first channel is shown).
        label: integer label map ``(X, Y, Z)`` on the same grid (e.g. the prediction).
        path: output ``.png``.
        reference: optional second label map ``(X, Y, Z)`` drawn as outlines (e.g. the ground truth).
        class_names: ``{value: name}`` for the legend (default ``"label <value>"``).
        colors: ``{value: (R, G, B[, A])}`` in 0-255 or 0-1 (default: the project's label palette).
        spacing: voxel size in mm per axis (default isotropic).
        title: figure title.
        center: voxel index ``(i, j, k)`` where the planes cross.
        window: display intensity range ``(low, high)``, e.g. ``(-160, 240)`` for CT soft tissue (default: the 1st
            to 99.5th percentile of the image).
        alpha: fill opacity of the label colours.
        size_px: ``(width, height)`` of the PNG in pixels.
        overwrite: replace an existing file.

    Returns:
        The PNG path.

    Raises:
        UserInputError: shapes do not match or the arrays are not 3D.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4:
        image = image[0]
    label = np.asarray(label)
    if image.ndim != 3 or label.shape != image.shape:
        raise UserInputError(
            f"overlay needs a 3D image and a label map of the same shape, got {image.shape} and "
            f"{label.shape} (for {path})"
        )
    if reference is not None and np.asarray(reference).shape != image.shape:
        raise UserInputError(f"reference shape {np.asarray(reference).shape} differs from image shape {image.shape}")
    check_writable(path, overwrite)
    sp = [1.0, 1.0, 1.0] if spacing is None else [float(s) for s in spacing][:3]
    ci, cj, ck = (
        int(c)
        for c in (
            center
            if center is not None
            else _slice_centre(label if label.any() or reference is None else np.asarray(reference))
        )
    )
    present = {int(v) for v in np.unique(label)}
    if reference is not None:
        present |= {int(v) for v in np.unique(reference)}
    values = sorted(present - {0})
    max_v = max(values, default=0)
    lut = np.zeros((max_v + 1, 4))
    for v in values:
        lut[v, :3] = _rgba(colors, v)
        lut[v, 3] = 1.0
    cmap = ListedColormap(lut)
    lo, hi = window if window is not None else np.percentile(image, [1, 99.5])
    if hi <= lo:
        hi = lo + 1.0

    planes: list[tuple[str, tuple[slice | int, ...], tuple[float, float], str]] = [
        ("axial", (slice(None), slice(None), ck), (sp[0], sp[1]), f"z = {ck}"),
        ("coronal", (slice(None), cj, slice(None)), (sp[0], sp[2]), f"y = {cj}"),
        ("sagittal", (ci, slice(None), slice(None)), (sp[1], sp[2]), f"x = {ci}"),
    ]
    fig, axes = _figure(size_px, 3)
    fig.patch.set_facecolor("black")
    for ax, (name, idx, (sx, sy), where) in zip(axes, planes, strict=True):
        img2 = image[idx].T
        lab2 = label[idx].T
        aspect = sy / sx
        ax.imshow(img2, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect, interpolation="nearest")
        if max_v > 0:
            masked = np.ma.masked_where(lab2 == 0, lab2)
            ax.imshow(
                masked,
                cmap=cmap,
                vmin=0,
                vmax=max_v,
                origin="lower",
                aspect=aspect,
                alpha=alpha,
                interpolation="nearest",
            )
        if reference is not None:
            ref2 = np.asarray(reference)[idx].T
            for v in values:
                if (ref2 == v).any():
                    ax.contour(
                        (ref2 == v).astype(float),
                        levels=[0.5],
                        colors=[_rgba(colors, v)],
                        linewidths=1.2,
                        origin="lower",
                    )
        ax.set_title(f"{name} ({where})", color="white", fontsize=10)
        ax.set_axis_off()
    handles = [Patch(facecolor=_rgba(colors, v), label=(class_names or {}).get(v, f"label {v}")) for v in values]
    if reference is not None:
        handles.append(Patch(facecolor="none", edgecolor="white", label="outline: reference"))
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 6),
            frameon=False,
            fontsize=9,
            labelcolor="white",
        )
    if title:
        fig.suptitle(title, color="white", fontsize=12)
    fig.subplots_adjust(
        left=0.01, right=0.99, top=0.88 if title else 0.93, bottom=0.1 if handles else 0.02, wspace=0.03
    )
    return _save(fig, path, overwrite)


def _read_csv_columns(path: Path) -> dict[str, list[float]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols: dict[str, list[float]] = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            for k in cols:
                try:
                    cols[k].append(float(row[k]))
                except (TypeError, ValueError):
                    cols[k].append(math.nan)
    return cols


def _read_tensorboard(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train: dict[str, list[float]] = {}
    val: dict[str, list[float]] = {}
    for event_dir in sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(event_dir), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            events = acc.Scalars(tag)
            steps = [float(e.step) for e in events]
            vals = [float(e.value) for e in events]
            low = tag.lower()
            if "loss" in low and "loss" not in train:
                train = {"iteration": steps, "loss": vals}
            elif "dice" in low:
                if not val:
                    val = {"iteration": steps}
                if len(steps) == len(val["iteration"]):
                    key = "mean_dice" if "mean" in low or "mean_dice" not in val else tag
                    val[key] = vals
    return {"train": train, "val": val}


def load_training_logs(run_dir: str | os.PathLike) -> dict[str, dict[str, list[float]]]:
    """Loss and validation curves of a training run.

    Reads ``training_log.csv`` (``iteration,loss``) and ``validation_log.csv`` (``iteration,mean_dice,dice_<class>
    ...``) from ``run_dir`` (or the first ones found below it); falls back to TensorBoard event files (the first
    scalar tag containing "loss", tags containing "dice").

    Returns:
        ``{"train": {"iteration": [...], "loss": [...]}, "val": {"iteration": [...], "mean_dice": [...], ...}}``.

    Raises:
        UserInputError: the folder is missing or holds no training log.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"run folder {run_dir} does not exist; pass the folder a training run wrote")
    logs: dict[str, dict[str, list[float]]] = {"train": {}, "val": {}}
    for key, name in (("train", "training_log.csv"), ("val", "validation_log.csv")):
        path = run_dir / name
        if not path.is_file():
            path = next(iter(sorted(run_dir.rglob(name))), path)
        if path.is_file():
            logs[key] = _read_csv_columns(path)
    if not logs["train"].get("loss"):
        tb = _read_tensorboard(run_dir)
        logs = {"train": logs["train"] or tb["train"], "val": logs["val"] or tb["val"]}
    if not logs["train"].get("loss") and not logs["val"].get("mean_dice"):
        raise UserInputError(
            f"no training logs in {run_dir} (looked for training_log.csv, validation_log.csv and "
            "TensorBoard event files); pass the run folder of a training run"
        )
    return logs


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_training_curves(
    run_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    size_px: tuple[int, int] = (1200, 450),
    overwrite: bool = False,
) -> Path:
    """Draw the training loss and the validation Dice (mean and per class) of a run into one PNG.

    Args:
        run_dir: the run folder (see :func:`load_training_logs`).
        output: PNG path (default ``<run_dir>/training_curves.png``).
        size_px: ``(width, height)`` in pixels.
        overwrite: replace an existing PNG.

    Returns:
        The PNG path.
    """
    logs = load_training_logs(run_dir)
    output = Path(output) if output is not None else Path(run_dir) / "training_curves.png"
    check_writable(output, overwrite)
    fig, (ax_loss, ax_dice) = _figure(size_px, 2)
    tr = logs["train"]
    if tr.get("loss"):
        it = np.asarray(tr.get("iteration") or range(1, len(tr["loss"]) + 1), dtype=float)
        loss = np.asarray(tr["loss"], dtype=float)
        ax_loss.plot(it, loss, color="tab:blue", alpha=0.35, lw=0.8, label="loss")
        window = max(1, len(loss) // 20)
        if window > 1:
            ax_loss.plot(it, _smooth(loss, window), color="tab:blue", lw=1.8, label=f"moving mean ({window})")
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no loss log", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Training loss")
    ax_loss.grid(alpha=0.3)
    va = logs["val"]
    if va.get("mean_dice"):
        it = np.asarray(va.get("iteration") or range(1, len(va["mean_dice"]) + 1), dtype=float)
        ax_dice.plot(it, va["mean_dice"], "o-", color="black", lw=2, ms=4, label="mean")
        best = int(np.nanargmax(va["mean_dice"]))
        ax_dice.annotate(
            f"best {va['mean_dice'][best]:.3f}",
            (it[best], va["mean_dice"][best]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
        for key, vals in va.items():
            if key not in ("iteration", "mean_dice", "epoch"):
                ax_dice.plot(it, vals, ".--", lw=1, ms=3, label=key.removeprefix("dice_").removeprefix("val_"))
        ax_dice.set_ylim(0, 1)
        ax_dice.legend(fontsize=8, loc="lower right")
    else:
        ax_dice.text(0.5, 0.5, "no validation log", ha="center", va="center", transform=ax_dice.transAxes)
    ax_dice.set_xlabel("iteration")
    ax_dice.set_ylabel("Dice (background excluded)")
    ax_dice.set_title("Validation Dice")
    ax_dice.grid(alpha=0.3)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.12, wspace=0.2)
    path = _save(fig, output, overwrite)
    logger.info("Training curves written to %s", path)
    return path


def save_metric_boxplots(
    per_case: Mapping[str, Mapping[int, Mapping[str, float | str]]],
    class_names: Mapping[int, str],
    path: str | os.PathLike,
    tolerance_mm: float | None = None,
    colors: Mapping[int, Sequence[float]] | None = None,
    size_px: tuple[int, int] = (1200, 420),
    overwrite: bool = False,
) -> Path:
    """Box plots (with the individual cases as dots) of Dice, HD95 and NSD per class.

    Args:
        per_case: ``{case: {class_id: {"dice", "hd95", "nsd", "status"}}}`` as built by
            :func:`ultralight3d.evaluation.compute_case_metrics`; NaN values are left out.
        class_names: ``{class_id: name}``.
        path: output PNG.
        tolerance_mm: NSD tolerance for the axis title.
        colors: label colours (default palette otherwise).
        size_px: ``(width, height)`` in pixels.
        overwrite: replace an existing PNG.
    """
    ids = sorted(int(k) for k in class_names if int(k) != 0)
    titles = {
        "dice": "Dice",
        "hd95": "HD95 (mm)",
        "nsd": f"NSD @ {tolerance_mm:g} mm" if tolerance_mm is not None else "NSD",
    }
    fig, axes = _figure(size_px, 3)
    rng = np.random.default_rng(0)
    for ax, key in zip(axes, ("dice", "hd95", "nsd"), strict=True):
        data = [
            [float(c[i][key]) for c in per_case.values() if i in c and not math.isnan(float(c[i][key]))] for i in ids
        ]
        positions = list(range(1, len(ids) + 1))
        non_empty = [(p, d) for p, d in zip(positions, data, strict=True) if d]
        if non_empty:
            bp = ax.boxplot(
                [d for _, d in non_empty],
                positions=[p for p, _ in non_empty],
                widths=0.6,
                patch_artist=True,
                showfliers=False,
            )
            for patch, (p, _) in zip(bp["boxes"], non_empty, strict=True):
                patch.set_facecolor((*_rgba(colors, ids[p - 1]), 0.6))
            for p, d in non_empty:
                ax.scatter(p + rng.uniform(-0.12, 0.12, len(d)), d, s=10, color="black", zorder=3)
        ax.set_xticks(positions)
        ax.set_xticklabels([class_names[i] for i in ids], rotation=20, fontsize=8)
        ax.set_xlim(0.4, len(ids) + 0.6)
        if key != "hd95":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(titles[key])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Per-class metrics over {len(per_case)} cases", fontsize=11)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.86, bottom=0.2, wspace=0.25)
    return _save(fig, path, overwrite)
