"""Per-class statistics of a segmentation on the input grid (``ultralight3d predict --statistics``).

For each class: voxel count, volume in ml (voxel count times the voxel volume of the input grid) and, for each input
channel, the mean, standard deviation (population, ``ddof=0``), median and 5th/95th percentiles (linear
interpolation, :func:`numpy.percentile`) of the input intensities inside the class, as read from the file (before
any normalisation). A class with no voxel has count 0, volume 0 and no intensity values (``null`` / empty cells).
Like TotalSegmentator's ``--statistics``, written per case as JSON and CSV.

Example::

    >>> stats = label_statistics(label, image, table, channels=["T2", "ADC"])
    >>> stats[0]["volume_ml"], stats[0]["intensity"]["T2"]["mean"]
    (12.3, 412.5)
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import LabelTable
from ..utils import atomic_path
from .postprocessing import voxel_volume_ml

__all__ = ["INTENSITY_STATS", "label_statistics", "write_statistics"]

#: intensity statistics per channel, in CSV column order.
INTENSITY_STATS = ("mean", "std", "median", "p5", "p95")


def label_statistics(
    label: np.ndarray, image: Any, labels: LabelTable, channels: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Statistics of every class of ``labels`` in ``label``.

    Args:
        label: label map ``(X, Y, Z)`` on ``image``'s grid.
        image: the input (:class:`ultralight3d.io.ImageData`: ``array`` ``(C, X, Y, Z)`` and ``affine``).
        labels: the classes to report (in table order).
        channels: channel names (default ``channel0`` …).

    Returns:
        one dict per class: ``value``, ``name``, ``voxels``, ``volume_ml`` and ``intensity`` =
        ``{channel: {"mean", "std", "median", "p5", "p95"}}`` (None values for an empty class).
    """
    array = np.asarray(image.array)
    if array.shape[1:] != np.shape(label):
        raise ValueError(f"label {np.shape(label)} and image {array.shape[1:]} are not on the same grid")
    names = list(channels) if channels else [f"channel{i}" for i in range(array.shape[0])]
    if len(names) != array.shape[0]:
        names = [f"channel{i}" for i in range(array.shape[0])]
    vox_ml = voxel_volume_ml(image.affine)
    lab = np.asarray(label)
    out = []
    for entry in labels:
        mask = lab == entry.value
        n = int(mask.sum())
        intensity: dict[str, dict[str, float | None]] = {}
        for c, name in enumerate(names):
            if n == 0:
                intensity[name] = dict.fromkeys(INTENSITY_STATS)
                continue
            vals = array[c][mask].astype(np.float64)
            p5, median, p95 = np.percentile(vals, [5, 50, 95])
            intensity[name] = {
                "mean": float(vals.mean()),
                "std": float(vals.std()),
                "median": float(median),
                "p5": float(p5),
                "p95": float(p95),
            }
        out.append(
            {
                "value": int(entry.value),
                "name": entry.name,
                "voxels": n,
                "volume_ml": round(n * vox_ml, 6),
                "intensity": intensity,
            }
        )
    return out


def write_statistics(
    stats: list[dict[str, Any]], json_path: str | os.PathLike, csv_path: str | os.PathLike, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write :func:`label_statistics` as JSON (``{"classes": [...]}``) and CSV (one row per class: value, name,
    voxels, volume_ml, then ``<channel>_<stat>`` columns)."""
    with atomic_path(json_path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps({"classes": stats}, indent=2) + "\n", encoding="utf-8")
    channels = list(stats[0]["intensity"]) if stats else []
    with atomic_path(csv_path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["value", "name", "voxels", "volume_ml", *[f"{c}_{s}" for c in channels for s in INTENSITY_STATS]]
            )
            for row in stats:
                cells = [row["intensity"][c][s] for c in channels for s in INTENSITY_STATS]
                writer.writerow(
                    [
                        row["value"],
                        row["name"],
                        row["voxels"],
                        row["volume_ml"],
                        *["" if v is None else v for v in cells],
                    ]
                )
    return Path(json_path), Path(csv_path)
