"""Run folders and resume checkpoints.

Layout of one training run (``<bundle>/runs/<run name>/``)::

    events.out.tfevents.*                  TensorBoard (train_loss every iteration, val_mean_dice every validation)
    training_log.csv                       iteration,loss
    validation_log.csv                     iteration,mean_dice,dice_<class>...
    model.pt                               best model by validation mean Dice (plain state dict)
    checkpoint_iteration=<N>.pt            latest resume state {model, optimizer, trainer} (every checkpoint_interval)
    checkpoint_final_iteration=<N>.pt      resume state written when the run ends, fails or is interrupted (Ctrl-C)
    FINISHED                               written when the requested number of iterations was reached

``run_name="auto"`` (the default) continues the newest unfinished run that has a resume checkpoint, otherwise starts
``run_<YYYYmmdd_HHMMSS>``; any other name uses (and, if it holds a checkpoint, resumes) that folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from ..utils import atomic_path

__all__ = ["RUN_FINISHED_MARKER", "resolve_run_dir", "latest_checkpoint", "finish_run", "publish_model"]

logger = logging.getLogger(__name__)

RUN_FINISHED_MARKER = "FINISHED"
_CKPT_RE = re.compile(r"^checkpoint_(?:final_)?iteration=(\d+)\.pt$")


def _dist_rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # noqa: BLE001 pragma: no cover
        pass
    return 0, 1


def latest_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """Path of the resume checkpoint with the highest iteration in ``run_dir`` (``None`` when there is none)."""
    d = Path(run_dir)
    best: tuple[int, str] | None = None
    if d.is_dir():
        for p in d.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), str(p))
    return None if best is None else best[1]


def _pick_run_dir(runs_dir: Path, run_name: str, resume: bool) -> Path:
    if run_name and run_name != "auto":
        return runs_dir / run_name
    if resume and runs_dir.is_dir():
        candidates = [
            d for d in runs_dir.iterdir()
            if d.is_dir() and not (d / RUN_FINISHED_MARKER).exists() and latest_checkpoint(d) is not None
        ]  # fmt: skip
        if candidates:
            return max(candidates, key=lambda d: os.path.getmtime(latest_checkpoint(d)))  # type: ignore[arg-type]
    name = time.strftime("run_%Y%m%d_%H%M%S")
    out, i = runs_dir / name, 1
    while out.exists():
        out, i = runs_dir / f"{name}_{i}", i + 1
    return out


def resolve_run_dir(runs_dir: str | os.PathLike, run_name: str = "auto", resume: bool = True) -> str:
    """Choose (and create) the run folder; under ``torch.distributed`` rank 0 decides and broadcasts.

    Args:
        runs_dir: folder of all runs of a bundle (``<bundle>/runs``).
        run_name: ``"auto"`` or a folder name.
        resume: allow ``"auto"`` to pick an unfinished run with a checkpoint.

    Returns:
        Absolute path of the run folder (created).
    """
    rank, world = _dist_rank_world()
    runs = Path(runs_dir).resolve()
    chosen = [str(_pick_run_dir(runs, str(run_name), bool(resume)))] if rank == 0 else [""]
    if world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(chosen, src=0)
    out = Path(chosen[0])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        ckpt = latest_checkpoint(out) if resume else None
        if ckpt:
            logger.info(f"run folder {out}: resuming from {Path(ckpt).name}")
        else:
            logger.info(f"run folder {out}: logs, TensorBoard events and checkpoints are written here")
    return str(out)


def _prune_checkpoints(run_dir: Path) -> None:
    """Delete interval checkpoints older than the newest one (left behind by interrupted runs)."""
    newest = latest_checkpoint(run_dir)
    if newest is None:
        return
    top = int(_CKPT_RE.match(Path(newest).name).group(1))  # type: ignore[union-attr]
    for p in run_dir.glob("checkpoint_iteration=*.pt"):
        m = _CKPT_RE.match(p.name)
        if m and int(m.group(1)) < top:
            p.unlink(missing_ok=True)


def finish_run(run_dir: str | os.PathLike, trainer: object, max_iterations: int) -> bool:
    """Write the ``FINISHED`` marker when ``trainer`` reached ``max_iterations``; returns whether it did."""
    rank, _ = _dist_rank_world()
    iteration = int(getattr(getattr(trainer, "state", None), "iteration", 0) or 0)
    done = iteration >= int(max_iterations)
    if rank == 0:
        _prune_checkpoints(Path(run_dir))
        if done:
            (Path(run_dir) / RUN_FINISHED_MARKER).write_text(f"iteration={iteration}\n", encoding="utf-8")
        logger.info(f"training {'finished' if done else 'stopped'} at iteration {iteration}; run folder {run_dir}")
    return done


def publish_model(run_dir: str | os.PathLike, ckpt_dir: str | os.PathLike, overwrite: bool = False) -> str | None:
    """Copy the run's best ``model.pt`` to the bundle's ``models/model.pt`` (used by inference and evaluation).

    An existing ``models/model.pt`` is kept unless ``overwrite`` (bundle override ``--publish_overwrite true``).

    Returns:
        The destination path when copied, else ``None``.
    """
    rank, _ = _dist_rank_world()
    src, dst = Path(run_dir) / "model.pt", Path(ckpt_dir) / "model.pt"
    if rank != 0 or not src.is_file():
        return None
    if dst.exists() and not overwrite:
        logger.info(f"best model of this run: {src} ({dst} kept; pass --publish_overwrite true to replace it)")
        return None
    with atomic_path(dst, overwrite=True) as tmp:
        shutil.copyfile(src, tmp)
    logger.info(f"best model copied to {dst}")
    return str(dst)
