"""Deterministic synthetic abdominal CT-like phantoms (liver, kidneys, spleen) in the MSD layout, for the CPU demo,
the quickstart notebook and tests: no download needed.

:func:`make_phantom_case` builds one volume and its labels; :func:`generate_phantom_dataset` writes ``imagesTr``,
``labelsTr``, ``imagesTs``, ``labelsTs`` and a ``dataset.json`` that ``ultralight3d prepare folder`` reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import UserInputError
from ..utils import atomic_path, check_writable

__all__ = [
    "PHANTOM_COLORS",
    "PHANTOM_LABELS",
    "PHANTOM_SHAPE",
    "PHANTOM_SPACING",
    "generate_phantom_dataset",
    "make_phantom_case",
]

logger = logging.getLogger(__name__)

#: Label values of the phantom (MSD ``dataset.json`` style, background included).
PHANTOM_LABELS = {0: "background", 1: "liver", 2: "kidney", 3: "spleen"}
#: RGB colours of the phantom organs (liver as in Slicer; kidney and spleen chosen to stand apart from it).
PHANTOM_COLORS = {1: (221, 130, 101), 2: (230, 210, 60), 3: (120, 110, 220)}
#: Voxel size in mm (X, Y, Z): in-plane 2.5 mm, 4 mm slices, like a low-dose abdominal CT on a coarse grid.
PHANTOM_SPACING = (2.5, 2.5, 4.0)
#: Volume size in voxels (X, Y, Z): 160 x 160 x 128 mm.
PHANTOM_SHAPE = (64, 64, 32)

# Mean CT numbers (HU) and their per-case jitter.
_HU = {"air": -1000.0, "fat": -90.0, "muscle": 45.0, "liver": 95.0, "kidney": 165.0, "spleen": 125.0,
       "bone": 450.0, "gas": -650.0, "bowel": 25.0}  # fmt: skip


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std random field smoothed with a Gaussian of ``sigma`` voxels."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-8)


def _blob(
    grid: tuple[np.ndarray, ...],
    centre: np.ndarray,
    radii: np.ndarray,
    rot: np.ndarray,
    wobble: np.ndarray,
    amount: float,
) -> np.ndarray:
    """Boolean deformed ellipsoid: ``|R (x - c) / r|^2 < 1 + amount * wobble`` (coordinates in mm)."""
    d = np.stack([g - c for g, c in zip(grid, centre, strict=True)], axis=-1) @ rot.T
    q = ((d / radii) ** 2).sum(-1)
    return q < 1.0 + amount * wobble


def _rotation_z(angle: float, tilt: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    ct, st = math.cos(tilt), math.sin(tilt)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]])
    return rz @ rx


def make_phantom_case(
    seed: int,
    shape: tuple[int, int, int] = PHANTOM_SHAPE,
    spacing: tuple[float, float, float] = PHANTOM_SPACING,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic abdominal CT-like volume and its label map.

    The body is an elliptic cylinder (fat rim, muscle) with a spine, a liver on the patient's right, a spleen on the
    left and two kidneys beside the spine, each a smoothly deformed ellipsoid; bowel loops with gas are distractors.
    Every case has its own anatomy size, pose (rotation, shift), organ shapes and contrast; the image gets Gaussian
    noise and a smooth multiplicative bias field. The affine is RAS (``+x`` = patient left, ``+y`` = anterior).

    Args:
        seed: case seed (same seed -> identical case).
        shape: ``(X, Y, Z)`` voxels.
        spacing: ``(X, Y, Z)`` voxel size in mm.

    Returns:
        ``(image, label, affine)``: int16 HU image ``(X, Y, Z)``, uint8 labels ``(X, Y, Z)`` with
        :data:`PHANTOM_LABELS`, and the 4x4 voxel-to-RAS affine.
    """
    rng = np.random.default_rng(seed)
    sx, sy, sz = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    ext = np.array([n * s for n, s in zip(shape, spacing, strict=True)])
    grid = np.meshgrid(sx, sy, sz, indexing="ij")  # mm, voxel centres
    centre = ext / 2 + np.array([rng.uniform(-6, 6), rng.uniform(-5, 5), rng.uniform(-6, 6)])
    scale = rng.uniform(0.9, 1.1)
    angle = math.radians(rng.uniform(-12, 12))
    rot = _rotation_z(angle)
    wob = [_smooth_field(rng, shape, 5.0) for _ in range(4)]

    def place(offset_mm: tuple[float, float, float]) -> np.ndarray:
        """Body-frame offset -> world position (the body is rotated about z by ``angle``)."""
        return centre + rot.T @ (np.array(offset_mm) * scale)

    # body: elliptic cylinder in x/y, whole z extent (the field of view cuts the abdomen)
    d = np.stack([g - c for g, c in zip(grid, centre, strict=True)], axis=-1) @ rot.T
    ax_b, ay_b = 0.45 * ext[0] * scale, 0.36 * ext[1] * scale
    body_q = (d[..., 0] / ax_b) ** 2 + (d[..., 1] / ay_b) ** 2
    body = body_q < 1.0 + 0.04 * wob[0]
    inner = body_q < (1.0 - rng.uniform(0.12, 0.2)) ** 2
    spine = ((d[..., 0] / 10.0) ** 2 + ((d[..., 1] + 0.62 * ay_b) / 9.0) ** 2) < 1.0

    label = np.zeros(shape, np.uint8)
    # liver: large, patient right (-x), anterior-ish, upper half
    liver = _blob(
        grid,
        place((-0.38 * ax_b, 0.05 * ay_b, rng.uniform(10, 25))),
        np.array([rng.uniform(44, 52), rng.uniform(36, 44), rng.uniform(46, 56)]) * scale,
        _rotation_z(angle + rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2)),
        wob[1],
        0.35,
    )
    spleen = _blob(
        grid,
        place((0.52 * ax_b, -0.25 * ay_b, rng.uniform(5, 25))),
        np.array([rng.uniform(16, 20), rng.uniform(22, 28), rng.uniform(28, 36)]) * scale,
        _rotation_z(angle + rng.uniform(-0.6, 0.6), rng.uniform(-0.3, 0.3)),
        wob[2],
        0.35,
    )
    kz = rng.uniform(-25, -5)
    kidneys = np.zeros(shape, bool)
    for side in (-1, 1):
        kidneys |= _blob(
            grid,
            place((side * rng.uniform(0.34, 0.42) * ax_b, -0.5 * ay_b, kz + rng.uniform(-6, 6))),
            np.array([rng.uniform(14, 17), rng.uniform(16, 19), rng.uniform(26, 32)]) * scale,
            _rotation_z(angle + side * rng.uniform(0.2, 0.5)),
            wob[3],
            0.25,
        )
    label[liver & inner] = 1
    label[kidneys & inner & (label == 0) & ~spine] = 2
    label[spleen & inner & (label == 0)] = 3

    jitter = {k: v + rng.normal(0, 10) for k, v in _HU.items()}
    img = np.full(shape, jitter["air"], np.float32)
    img[body] = jitter["fat"]
    img[inner] = jitter["muscle"]
    # bowel loops (soft tissue with gas pockets) in the free space: distractors with organ-like texture
    free = inner & (label == 0) & ~spine
    bowel = free & (_smooth_field(rng, shape, 3.0) > 0.6)
    img[bowel] = jitter["bowel"]
    img[bowel & (_smooth_field(rng, shape, 1.5) > 1.2)] = jitter["gas"]
    img[spine] = jitter["bone"]
    texture = _smooth_field(rng, shape, 1.2)
    for value, key in ((1, "liver"), (2, "kidney"), (3, "spleen")):
        img[label == value] = jitter[key] + 12.0 * texture[label == value]
    img = ndimage.gaussian_filter(img, 0.6)  # partial-volume blur at edges
    bias = 1.0 + 0.03 * _smooth_field(rng, shape, 12.0)  # smooth multiplicative shading: about ±30 HU at 1 sd
    img = (img + 1000.0) * bias - 1000.0
    img += rng.normal(0.0, 22.0, shape).astype(np.float32)
    image = np.clip(np.round(img), -1024, 3071).astype(np.int16)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -ext / 2  # centre the field of view at the scanner origin
    return image, label, affine


def generate_phantom_dataset(
    output_dir: str | os.PathLike,
    num_cases: int = 10,
    num_test: int = 1,
    seed: int = 0,
    shape: tuple[int, int, int] = PHANTOM_SHAPE,
    spacing: tuple[float, float, float] = PHANTOM_SPACING,
    overwrite: bool = False,
) -> Path:
    """Write ``num_cases`` phantom cases in the Medical Segmentation Decathlon layout.

    Layout: ``<output_dir>/imagesTr/phantom_XXX.nii.gz`` (int16 HU), ``labelsTr/phantom_XXX.nii.gz`` (uint8), the
    held-out cases in ``imagesTs/`` with their reference labels in ``labelsTs/``, and a ``dataset.json``
    (``labels``, ``modality``, ``training``, ``test``), ready for ``ultralight3d prepare folder``.

    Args:
        output_dir: dataset root.
        num_cases: number of training cases (case ``i`` uses seed ``seed * 1000 + i``).
        num_test: number of held-out test cases (numbered after the training cases).
        seed: dataset seed.
        shape: ``(X, Y, Z)`` voxels per case.
        spacing: voxel size in mm.
        overwrite: replace existing files.

    Returns:
        The path of ``dataset.json``.
    """
    if num_cases < 3:
        raise UserInputError(f"the phantom set needs at least 3 cases (train, validate, test), got {num_cases}")
    root = Path(output_dir)
    check_writable(root / "dataset.json", overwrite)
    training: list[dict[str, str]] = []
    test: list[str] = []
    from tqdm import tqdm

    for i in tqdm(range(num_cases + num_test), desc="phantom cases", unit="case"):
        name = f"phantom_{i:03d}.nii.gz"
        image, label, affine = make_phantom_case(seed * 1000 + i, shape, spacing)
        split = "Tr" if i < num_cases else "Ts"
        for sub, arr in ((f"images{split}", image), (f"labels{split}", label)):
            nii = nib.Nifti1Image(arr, affine)
            nii.set_qform(affine, code=1)
            nii.set_sform(affine, code=1)
            nii.header.set_xyzt_units("mm")
            with atomic_path(root / sub / name, overwrite=overwrite) as tmp:
                nib.save(nii, str(tmp))
        if split == "Tr":
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            test.append(f"./imagesTs/{name}")
    meta = {
        "name": "ultralight3d-phantom",
        "description": "Deterministic synthetic abdominal CT-like phantoms (liver, kidneys, spleen) generated by "
        f"ultralight3d.data.phantom (seed {seed}); noise, bias field and random pose per case.",
        "reference": "ultralight3d", "licence": "CC0", "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(k): v for k, v in PHANTOM_LABELS.items()},
        "numTraining": len(training), "numTest": len(test),
        "training": training, "test": test,
    }  # fmt: skip
    path = root / "dataset.json"
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("Phantom dataset (%d cases, %s voxels at %s mm) written to %s", num_cases, shape, spacing, root)
    return path
