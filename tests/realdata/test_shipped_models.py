"""The two bundles that ship trained weights, on real scans from ``../shared/data`` (skipped when it is absent).

Each model segments one real case through ``ultralight3d predict --bundle`` (no ``--checkpoint`` / ``--variant``: the
model card decides) and must reach a Dice floor set a margin below what was measured on that case when the model was
shipped (see FLOORS). The card must name the right classes, and ``models/large_files.yml`` must hold the weights'
SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ultralight3d.checkpoint import read_model_card
from ultralight3d.transforms import get_protocol

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
pytestmark = pytest.mark.data
CLI = "import sys; from ultralight3d.cli import main; sys.exit(main())"  # the `ultralight3d` command

#: bundle -> (image, label relative to ../shared/data, protocol, measured Dice per class on that case, floor margin).
#: Both shipped models are trained on all their cases (10 CHAOS cases, 15 atlases), so these cases (CHAOS 8, GA 31
#: operated) were seen in training: the floors guard against regressions, they are not held-out scores (held-out
#: fold-0 Dice: the bundles' README). Measured with ``ultralight3d predict --bundle`` + ``evaluate`` on 2026-12-02.
CASES = {
    "chaos_t2_ultralight_unet3d": (
        "chaos_t2/image_8.nii.gz", "chaos_t2/label_8.nii.gz", "chaos_t2",
        {"liver": 0.904, "right kidney": 0.897, "left kidney": 0.875, "spleen": 0.917},
    ),
    "fetal_brain_ultralight_unet3d": (
        "fetal_sb_atlas/fetal_SB_atlas_GA31_operated/srr.nii.gz",
        "fetal_sb_atlas/fetal_SB_atlas_GA31_operated/parcellation.nii.gz", "fetal_sb_atlas",
        {"external cerebrospinal fluid": 0.780, "grey matter": 0.656, "white matter": 0.861, "ventricles": 0.917,
         "cerebellum": 0.784, "deep grey matter": 0.833, "brainstem": 0.706},
    ),
}  # fmt: skip
MEAN_MARGIN = 0.05  # the mean Dice must stay within this of the measured mean
CLASS_MARGIN = 0.15  # and every class within this of its measured Dice


def _dice(pred: np.ndarray, ref: np.ndarray, value: int) -> float:
    p, r = pred == value, ref == value
    denom = p.sum() + r.sum()
    return float(2.0 * np.logical_and(p, r).sum() / denom) if denom else 1.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_model_segments_a_real_case(name: str, shared_data: Path, tmp_path: Path) -> None:
    image, label, protocol, measured = CASES[name]
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS=str(min(2, os.cpu_count() or 1)))
    cmd = [sys.executable, "-c", CLI, "predict", "-i", str(shared_data / image), "-o", str(out),
           "--bundle", str(BUNDLES / name), "--device", "cpu", "--quiet", "--no-seg-nrrd"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    seg_file = out / (Path(image).name.removesuffix(".nii.gz") + "_seg.nii.gz")
    seg_img, ref_img = nib.load(seg_file), nib.load(shared_data / label)
    assert seg_img.shape == ref_img.shape and np.allclose(seg_img.affine, ref_img.affine, atol=1e-4)
    seg = np.asarray(seg_img.dataobj).astype(np.int64)
    ref = np.rint(np.asarray(ref_img.dataobj)).astype(np.int64)
    label_map = {int(k): int(v) for k, v in (get_protocol(protocol)["label_map"] or {}).items() if k[0] != "_"}
    if label_map:  # the atlas parcellation -> FeTA order, exactly as training maps it
        ref = np.vectorize(lambda v: label_map.get(int(v), int(v)), otypes=[np.int64])(ref)
    names = {int(k): v for k, v in get_protocol(protocol)["labels"].items() if int(k) > 0}
    dice = {n: _dice(seg, ref, v) for v, n in names.items()}
    mean, floor = float(np.mean(list(dice.values()))), float(np.mean(list(measured.values()))) - MEAN_MARGIN
    assert mean >= floor, f"{name}: mean Dice {mean:.3f} < floor {floor:.3f} ({dice})"
    low = {n: round(d, 3) for n, d in dice.items() if d < measured[n] - CLASS_MARGIN}
    assert not low, f"{name}: classes below their floor (measured - {CLASS_MARGIN}): {low}; all: {dice}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_card_names_the_classes_and_large_files_hash_matches(name: str) -> None:
    protocol = CASES[name][2]
    weights = BUNDLES / name / "models" / "model.pt"
    card = read_model_card(weights)
    assert card is not None and card.protocol == protocol
    expected = {int(k): v for k, v in get_protocol(protocol)["labels"].items() if int(k) > 0}
    assert card.class_names == expected and card.out_channels == len(expected) + 1 and card.in_channels == 1
    assert weights.stat().st_size < 4_000_000
    text = (BUNDLES / name / "models" / "large_files.yml").read_text()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert 'path: "models/model.pt"' in text and f'hash_val: "{digest}"' in text and 'hash_type: "sha256"' in text
