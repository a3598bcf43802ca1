"""Training-free width selection for UltraLightUNet3D (XTinyU-Net's Jacobian-sensitivity rule, adapted to 3D).

The source method (``alvinkimbowa/nntinyunet``, nnU-Net v2 ``2d`` configurations; ``../shared/spec/architectures.md``
§3) builds untrained networks whose per-stage widths are capped at F[-1], F[-1]/2, ..., 1, scores each with the norm
of the input gradient of the summed output on unlabeled images, min-max normalises the scores and picks the smallest
width before the total-variation "knee" (where the score curve starts to change fast as the network collapses).

How this 3D adaptation differs from the 2D original:

* **Network and candidates.** The candidates cap the five stage widths [c0..c4] of an UltraLightUNet3D reference
  variant (default ``ultralight_unet3d_m``: [32, 64, 128, 192, 320]) instead of an nnU-Net PlainConvUNet's
  ``features_per_stage``: caps c4, c4/2, ... down to 1 with ``channels[i] = min(cap, ref[i])``. Candidates that
  cannot be built (none for UltraLightUNet3D) are dropped. Weights are MONAI/PyTorch's default init, not nnU-Net's.
* **Input.** A centre 3D crop (default 96³, zero-padded where the volume is smaller) of each volume replaces the
  centre 2D slice (MONAI ``ResizeWithPadOrCrop``), and the crop size must be a multiple of 32 (five poolings).
  Preprocessing is a per-volume, per-channel z-score over the non-zero voxels (no resampling and no dataset-level
  nnU-Net plans): pass volumes already at the spacing you will train at. Files are found and read with
  :mod:`ultralight3d.io` (its suffix list, hidden files skipped, :func:`~ultralight3d.io.read_image` and
  :func:`~ultralight3d.io.check_image`); nnU-Net-style channel files (``case_0000.nii.gz``, ``case_0001.nii.gz``)
  are stacked as channels; 4D channel-last files (MSD) give their channels directly.
* **Unchanged.** Seed 369 set (Python, NumPy, torch) before building each candidate, candidates kept in train mode
  (BatchNorm uses batch statistics; at 96³ the bottleneck is 3³, so batch 1 is well defined), deep supervision off,
  score = ‖∂(Σ y)/∂x‖₂ per image, mean of the finite per-image scores per candidate, min-max normalisation and the
  exact total-variation knee rule (:func:`knee_index_tv`), which needs at least 5 candidates.
* **Extras.** Parameters and FLOPs (ptflops, multiply-accumulates at the crop size, input_repeat 1) per candidate,
  a PNG of the curve, and a ready ``create_model`` configuration and bundle override for the chosen width.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn

from .errors import UserInputError
from .io.files import IMAGE_SUFFIXES, list_image_files, split_channel, strip_image_suffix
from .utils import atomic_path

__all__ = [
    "SEED",
    "WidthCandidate",
    "WidthSelection",
    "candidate_caps",
    "capped_channels",
    "minmax_normalise",
    "knee_index_tv",
    "jacobian_score",
    "find_images",
    "load_crops",
    "select_width",
]

logger = logging.getLogger(__name__)

#: the seed of the original code and paper notebook (set before building every candidate).
SEED = 369


def candidate_caps(reference: Sequence[int]) -> list[int]:
    """Width caps from the deepest reference width halved (integer division) down to 1, e.g. 320, 160, ..., 2, 1."""
    if not reference or min(reference) < 1:
        raise ValueError(f"reference channels must be positive, got {list(reference)}")
    caps, cap = [], int(reference[-1])
    while cap >= 1:
        caps.append(cap)
        cap //= 2
    return caps


def capped_channels(reference: Sequence[int], cap: int) -> list[int]:
    """``[min(cap, c) for c in reference]``."""
    return [min(int(cap), int(c)) for c in reference]


def minmax_normalise(values: Sequence[float]) -> np.ndarray:
    """Scale to [0, 1]; a constant curve maps to zeros."""
    arr = np.asarray(values, dtype=np.float64)
    lo, hi = arr.min(), arr.max()
    return np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo)


def knee_index_tv(normalised_desc: Sequence[float]) -> int:
    """XTinyU-Net's total-variation knee rule.

    Args:
        normalised_desc: normalised scores y_0..y_{n-1} ordered from the LARGEST cap to the smallest (n >= 5).

    Returns:
        the index (into ``normalised_desc``) of the selected candidate: with d_j = |y_{j+1} - y_j| and, for
        k = 2..n-3, score(k) = mean(d[k-1:]) - mean(d[:k]), k* = first argmax and the selection is position k* - 1,
        i.e. the smallest width before the high-variation (collapse) region.

    Raises:
        ValueError: fewer than 5 values.
    """
    y = np.asarray(normalised_desc, dtype=np.float64)
    n = len(y)
    if n < 5:
        raise ValueError(f"the knee rule needs at least 5 candidates with finite scores, got {n}")
    d = np.abs(np.diff(y))
    ks = list(range(2, n - 2))
    scores = [d[k - 1 :].mean() - d[:k].mean() for k in ks]
    k_star = ks[int(np.argmax(scores))]  # np.argmax keeps the first maximum
    return k_star - 1


def jacobian_score(model: nn.Module, x: torch.Tensor) -> float:
    """‖∂(Σ model(x))/∂x‖₂ (Frobenius norm of the whole input gradient) for one input.

    Args:
        model: the network (its mode is left as is; the original keeps train mode).
        x: (1, C, *S) input.

    Returns:
        the score (may be inf/nan for a degenerate network; callers drop non-finite scores).
    """
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    if isinstance(y, (list, tuple)):
        y = y[0]
    (grad,) = torch.autograd.grad(y.sum(), x)
    return float(grad.norm().item())


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def find_images(images: str | os.PathLike | Sequence[str | os.PathLike], pattern: str = "*") -> list[list[Path]]:
    """Image files of a folder (matching ``pattern``, e.g. ``"*/srr.nii.gz"``) or an explicit list, grouped per case.

    nnU-Net channel files ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz`` form one case with several channels.

    Returns:
        sorted cases, each a list of channel files.

    Raises:
        UserInputError: a missing folder/file, or no image files.
    """
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.exists():
            raise UserInputError(f"image folder {folder} not found; pass --images FOLDER with your unlabeled volumes")
        if folder.is_file():
            files = [folder]
        else:
            files = list_image_files(folder, pattern)
            if not files:
                raise UserInputError(
                    f"no images ({', '.join(IMAGE_SUFFIXES)}) matching '{pattern}' in {folder}; pass the folder that "
                    "holds the volumes (or --pattern, e.g. '*/srr.nii.gz' for one volume per subfolder)"
                )
    else:
        files = [Path(p) for p in images]
        if not files:
            raise UserInputError("no image files given; pass --images FOLDER")
        for f in files:
            if not f.is_file():
                raise UserInputError(f"image file {f} not found")
    groups: dict[str, list[Path]] = {}
    for f in files:
        case, channel = split_channel(strip_image_suffix(f))
        key = str(f.parent / case) if channel is not None else str(f)
        groups.setdefault(key, []).append(f)
    return [sorted(groups[k]) for k in sorted(groups)]


def _read_volume(path: Path) -> np.ndarray:
    """Read one file as (C, X, Y, Z) float32 with :func:`ultralight3d.io.read_image` (4D channel-last files keep their
    channels) and check it (3D, finite voxels) with :func:`ultralight3d.io.check_image`."""
    from .io.image import check_image, read_image

    image = read_image(path)
    check_image(image)
    return image.array


def _zscore_nonzero(arr: np.ndarray) -> np.ndarray:
    """Per-channel z-score over the non-zero voxels (all voxels for an all-zero channel), zeros kept at 0.

    Kept in NumPy on purpose: MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)`` computes the mean and
    standard deviation in torch, which differ by one float32 ulp, and the Jacobian scores of untrained train-mode
    candidates amplify that into ~0.3 % (measured): the scores would no longer match the reference implementation.
    """
    out = np.empty_like(arr)
    for c in range(arr.shape[0]):
        ch = arr[c]
        mask = ch != 0
        vals = ch[mask] if mask.any() else ch.ravel()
        std = float(vals.std())
        out[c] = (ch - float(vals.mean())) / (std if std > 0 else 1.0)
        out[c][~mask] = 0.0 if mask.any() else out[c][~mask]
    return out


def _preprocess(arr: np.ndarray, crop: Sequence[int]) -> torch.Tensor:
    """Z-score (:func:`_zscore_nonzero`), then centre crop / zero-pad (C, *S) to (C, *crop) with MONAI's
    ``ResizeWithPadOrCrop`` (for even crop sizes the same start offsets as the reference code)."""
    from monai.transforms import ResizeWithPadOrCrop

    x = torch.from_numpy(np.ascontiguousarray(_zscore_nonzero(arr)))
    x = ResizeWithPadOrCrop(spatial_size=list(crop), mode="constant")(x)
    return torch.as_tensor(x).as_subclass(torch.Tensor).contiguous()


def load_crops(
    cases: Sequence[Sequence[Path]], crop: Sequence[int] = (96, 96, 96), max_images: int | None = None, seed: int = SEED
) -> list[torch.Tensor]:
    """Read, z-score (non-zero voxels) and centre-crop/pad each case.

    Args:
        cases: from :func:`find_images`.
        crop: spatial crop size.
        max_images: keep K cases chosen by a seeded shuffle (as ``num_samples=K`` in the original); None: all.
        seed: shuffle seed.

    Returns:
        one (1, C, *crop) float32 tensor per case; every case must have the same number of channels.
    """
    cases = [list(c) for c in cases]
    if max_images is not None and max_images < len(cases):
        if max_images < 1:
            raise UserInputError(f"--max-images must be >= 1, got {max_images}")
        order = list(range(len(cases)))
        random.Random(seed).shuffle(order)
        cases = [cases[i] for i in sorted(order[:max_images])]
    crops: list[torch.Tensor] = []
    for files in cases:
        arrs = [_read_volume(f) for f in files]
        shapes = {a.shape[1:] for a in arrs}
        if len(shapes) > 1:
            raise UserInputError(
                f"channel files of case {files[0]} have different sizes {sorted(shapes)}; resample them"
            )
        crops.append(_preprocess(np.concatenate(arrs, 0), crop)[None])
    channels = {int(c.shape[1]) for c in crops}
    if len(channels) > 1:
        raise UserInputError(f"images have different channel counts {sorted(channels)}; pass one kind of image")
    return crops


@dataclass
class WidthCandidate:
    """One scanned width: ``channels = min(cap, reference)`` per stage."""

    cap: int
    channels: list[int]
    params: int
    flops: float | None  # multiply-accumulates at the crop size (ptflops), None if not computed
    score: float  # mean Jacobian score (nan if not finite / not buildable)
    normalised: float = float("nan")
    seconds: float = 0.0


@dataclass
class WidthSelection:
    """Result of :func:`select_width`: candidates in descending cap order and the selected one."""

    reference_model: str
    reference_channels: list[int]
    crop: list[int]
    seed: int
    num_images: int
    candidates: list[WidthCandidate]
    selected_index: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> WidthCandidate:
        return self.candidates[self.selected_index]

    def model_config(self) -> dict[str, Any]:
        """Keyword arguments for ``ultralight3d.create_model`` (reference variant with the selected channels)."""
        return {"model_name": self.reference_model, **self.model_kwargs, "channels": list(self.selected.channels)}

    def bundle_override(self) -> dict[str, Any]:
        """``#``-key overrides for a bundle's train/inference configs (``network_def#channels``)."""
        return {"network_def#model_name": self.reference_model, "network_def#channels": list(self.selected.channels)}

    def table(self) -> str:
        """Plain-text table: cap, channels, params, GFLOPs, score, normalised score; the selection is marked."""
        lines = [f"{'cap':>5} {'channels':<26} {'params':>10} {'GFLOPs':>8} {'score':>12} {'norm':>6}"]
        for i, c in enumerate(self.candidates):
            gf = f"{c.flops / 1e9:8.3f}" if c.flops is not None else f"{'-':>8}"
            mark = "  <- selected" if i == self.selected_index else ""
            lines.append(
                f"{c.cap:>5} {str(c.channels):<26} {c.params:>10,} {gf} {c.score:>12.5g} {c.normalised:>6.3f}{mark}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["selected"] = asdict(self.selected)
        d["model_config"] = self.model_config()
        d["bundle_override"] = self.bundle_override()
        return d

    def save_json(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True))
        return Path(path)

    def save_plot(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """PNG: normalised score vs parameters (log x) with the selection marked, and |Δ normalised score|."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ok = [c for c in self.candidates if np.isfinite(c.normalised)]
        params = [c.params for c in ok]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(params, [c.normalised for c in ok], "o-")
        for c in ok:
            axes[0].annotate(
                str(c.cap), (c.params, c.normalised), textcoords="offset points", xytext=(3, 3), fontsize=8
            )
        sel = self.selected
        axes[0].plot([sel.params], [sel.normalised], "r*", markersize=14, label=f"selected cap {sel.cap}")
        axes[0].set(xscale="log", xlabel="parameters", ylabel="normalised Jacobian score", title="width scan")
        axes[0].legend()
        if len(ok) > 1:
            dy = np.abs(np.diff([c.normalised for c in ok]))
            axes[1].plot(params[1:], dy, "o-")
        axes[1].axvline(sel.params, color="r", linestyle="--")
        axes[1].set(xscale="log", xlabel="parameters", ylabel="|Δ normalised score|", title="total variation")
        fig.suptitle(f"{self.reference_model}: {self.num_images} image(s), crop {self.crop}, seed {self.seed}")
        fig.tight_layout()
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return Path(path)


def _count_flops(model: nn.Module, in_channels: int, crop: Sequence[int]) -> float | None:
    try:
        from ptflops import get_model_complexity_info
    except ImportError:  # pragma: no cover
        return None
    training = model.training
    model.eval()
    try:
        macs, _ = get_model_complexity_info(
            model, (in_channels, *crop), as_strings=False, print_per_layer_stat=False, verbose=False
        )
    finally:
        model.train(training)
    return float(macs) if macs is not None else None


def select_width(
    images: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[torch.Tensor],
    reference_model: str = "ultralight_unet3d_m",
    out_channels: int = 2,
    crop: Sequence[int] = (96, 96, 96),
    seed: int = SEED,
    max_images: int | None = None,
    pattern: str = "*",
    min_cap: int = 1,
    count_flops: bool = True,
    progress: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    build: Callable[..., nn.Module] | None = None,
) -> WidthSelection:
    """Scan width caps of an UltraLightUNet3D reference variant and select the smallest stable width.

    Args:
        images: a folder, a list of files, or already-preprocessed (1, C, *crop) tensors.
        reference_model: registered UltraLightUNet3D variant whose channels are capped (e.g. ``ultralight_unet3d_l``).
        out_channels: output classes of the candidates (the score sums all outputs).
        crop: crop size (multiples of 32).
        seed: seed set before building every candidate (and for the ``max_images`` shuffle).
        max_images: use K cases (seeded shuffle); None: all.
        pattern: glob inside the folder (e.g. ``"*/srr.nii.gz"``).
        min_cap: smallest cap scanned (default 1, as the original).
        count_flops: compute FLOPs with ptflops.
        progress: show a tqdm bar.
        model_kwargs: extra constructor kwargs for every candidate (e.g. ``{"mkdc_norm": False}``).
        build: model factory ``build(model_name, **kwargs)``; defaults to :func:`ultralight3d.create_model`.

    Returns:
        a :class:`WidthSelection`.

    Raises:
        UserInputError: bad images/crop/reference, or fewer than 5 candidates with finite scores.
    """
    from .registry import create_model, get_model_cfg, list_models

    build = build or create_model
    if reference_model not in list_models():
        choices = ", ".join(list_models("ultralight*"))
        raise UserInputError(f"unknown reference model '{reference_model}'; choose one of {choices}")
    divisor = get_model_cfg(reference_model).divisor
    crop = [int(c) for c in (list(crop) * 3 if len(crop) == 1 else crop)]
    if len(crop) != 3:
        raise UserInputError(f"crop must be one size or three (D H W), got {crop}")
    if any(c % divisor or c <= 0 for c in crop):
        raise UserInputError(
            f"crop {crop} must be positive multiples of {divisor} for {reference_model}, e.g. 96 96 96"
        )
    if int(np.prod([c // 32 for c in crop])) < 2:
        raise UserInputError(
            f"crop {crop} leaves one bottleneck voxel: train-mode BatchNorm needs more; use a crop of at least 64 on "
            "one axis (default 96)"
        )
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], torch.Tensor):
        crops = [t.float() for t in images]
    else:
        crops = load_crops(find_images(images, pattern), crop, max_images, seed)  # type: ignore[arg-type]
    in_channels = int(crops[0].shape[1])
    kwargs = dict(model_kwargs or {})
    probe = build(reference_model, in_channels=in_channels, out_channels=out_channels, **kwargs)
    reference = [int(c) for c in cast(Sequence[int], probe.channels)]
    del probe
    caps = [c for c in candidate_caps(reference) if c >= min_cap]
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=len(caps) * len(crops), desc="width scan", unit="fwd+bwd", disable=not progress) if tqdm else None
    candidates: list[WidthCandidate] = []
    for cap in caps:  # descending, as the original
        channels = capped_channels(reference, cap)
        t0 = time.perf_counter()
        _set_seed(seed)
        try:
            net = build(
                reference_model, in_channels=in_channels, out_channels=out_channels, channels=channels, **kwargs
            )
        except (ValueError, RuntimeError) as err:
            logger.warning("cap %d (channels %s) cannot be built (%s); skipped", cap, channels, err)
            if bar:
                bar.update(len(crops))
            continue
        if hasattr(net, "deep_supervision"):
            net.deep_supervision = False  # type: ignore[assignment]  # a plain bool attribute of the network
        net.train()
        params = sum(p.numel() for p in net.parameters())
        scores = []
        try:
            for x in crops:
                scores.append(jacobian_score(net, x))
                if bar:
                    bar.update(1)
        except (ValueError, RuntimeError) as err:  # e.g. zero-width layers at cap 1
            logger.warning("cap %d (channels %s) cannot run (%s); skipped", cap, channels, str(err).splitlines()[0])
            if bar:
                bar.update(len(crops) - len(scores))
            continue
        finite_scores = [s for s in scores if np.isfinite(s)]
        score = float(np.mean(finite_scores)) if finite_scores else float("nan")
        flops = _count_flops(net, in_channels, crop) if count_flops else None
        candidates.append(WidthCandidate(cap, channels, params, flops, score, seconds=time.perf_counter() - t0))
    if bar:
        bar.close()
    finite = [c for c in candidates if np.isfinite(c.score)]
    if len(finite) < 5:
        raise UserInputError(
            f"only {len(finite)} width candidates gave finite scores; the knee rule needs 5 - use a larger reference "
            "model (--reference ultralight_unet3d_l) or a smaller --min-cap"
        )
    # spec §3 step 6: sort by cap ascending, min-max normalise, reverse to descending cap, knee rule
    ascending = sorted(finite, key=lambda c: c.cap)
    for c, v in zip(ascending, minmax_normalise([c.score for c in ascending]), strict=True):
        c.normalised = float(v)
    descending = ascending[::-1]
    chosen = descending[knee_index_tv([c.normalised for c in descending])]
    if np.ptp([c.score for c in finite]) == 0:
        logger.warning("all candidates scored the same; the knee is arbitrary (check the images)")
    result = WidthSelection(
        reference_model=reference_model,
        reference_channels=reference,
        crop=crop,
        seed=seed,
        num_images=len(crops),
        candidates=candidates,
        selected_index=candidates.index(chosen),
        model_kwargs={"in_channels": in_channels, "out_channels": out_channels, **kwargs},
    )
    return result
