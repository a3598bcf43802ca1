"""Run folders, resume checkpoints and publishing the best model.

Layout of one training run (``<bundle>/runs/<run name>/``)::

    events.out.tfevents.*                  TensorBoard (train_loss every iteration, val_mean_dice[/<class>] per
                                           validation); a resumed run adds a file and hides the replaced steps
    training_log.csv                       iteration,loss
    validation_log.csv                     iteration,mean_dice,dice_<class>...
    model.pt / model.json                  best model by validation mean Dice (plain state dict) and its model card
    checkpoint_iteration=<N>.pt            resume state, every checkpoint_interval iterations (only the newest kept)
    checkpoint_final_iteration=<N>.pt      resume state written when the run ends or is stopped (Ctrl-C, SIGTERM)
    FINISHED                               written when the requested number of iterations was reached

Every file is written to a temporary name, fsynced and renamed (:func:`ultralight3d.utils.atomic_path`), and an older
checkpoint is deleted only after the newer one is complete, so a kill at any moment leaves at least one complete
resume checkpoint (once the first one was written).

``run_name="auto"`` (the default) continues the newest unfinished run that has a resume checkpoint, otherwise starts
``run_<YYYYmmdd_HHMMSS>``; any other name uses (and, if it holds a checkpoint, resumes) that folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils import atomic_path
from .devices import dist_rank_world
from .settings import as_bool

__all__ = [
    "RUN_FINISHED_MARKER",
    "RESUME_FORMAT",
    "ResumePoint",
    "checkpoint_files",
    "latest_checkpoint",
    "find_resume_point",
    "resolve_run_dir",
    "prune_checkpoints",
    "clean_temporary_files",
    "publish_model",
]

logger = logging.getLogger(__name__)

RUN_FINISHED_MARKER = "FINISHED"
#: ``training["format"]`` of the resume checkpoints written by :class:`~ultralight3d.bundle.state.TrainingState`.
RESUME_FORMAT = "ultralight3d.resume/1"
_CKPT_RE = re.compile(r"^checkpoint_(final_)?iteration=(\d+)\.pt$")
_TEMP_RE = re.compile(r"^(\.paused|\.(checkpoint_(final_)?iteration=\d+|model|FINISHED|labels|label_check)\..*)$")


def checkpoint_files(run_dir: str | os.PathLike) -> list[tuple[int, bool, Path]]:
    """``[(iteration, is_final, path)]`` of the resume checkpoints in ``run_dir``, newest first (at the same
    iteration the final one first: it was written later)."""
    d = Path(run_dir)
    found = []
    if d.is_dir():
        for p in d.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and p.is_file():
                found.append((int(m.group(2)), bool(m.group(1)), p))
    return sorted(found, key=lambda t: (t[0], t[1]), reverse=True)


def latest_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """Path of the newest resume checkpoint in ``run_dir`` by name (``None`` when there is none)."""
    files = checkpoint_files(run_dir)
    return str(files[0][2]) if files else None


@dataclass
class ResumePoint:
    """The checkpoint a run continues from.

    Attributes:
        path: the checkpoint file.
        iteration: trainer iteration stored in it.
        last_validated: last iteration whose validation was complete when it was written (``-1``: unknown).
        revalidate: the validation of ``iteration`` is due but was not complete; it runs again first.
        state: the loaded checkpoint (dropped once applied).
    """

    path: Path
    iteration: int
    last_validated: int = -1
    revalidate: bool = False
    state: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def purge_step(self) -> int:
        """First TensorBoard step the resumed run writes again."""
        return self.iteration if self.revalidate else self.iteration + 1

    @property
    def last_loss(self) -> float | None:
        value = (self.state.get("training") or {}).get("last_loss")
        return None if value is None else float(value)


def _readable(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict) or "trainer" not in obj:
        return None, "not a resume checkpoint (no 'model' / 'trainer')"
    return obj, ""


def clean_temporary_files(run_dir: str | os.PathLike) -> list[str]:
    """Remove the temporary files an interrupted write left in ``run_dir`` (``.checkpoint_...``, ``.model...``)."""
    d = Path(run_dir)
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if _TEMP_RE.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p.name)
    if removed:
        logger.info(f"removed {len(removed)} unfinished temporary file(s) of an interrupted write in {d}")
    return removed


def find_resume_point(
    run_dir: str | os.PathLike, resume: bool = True, val_interval: int = 0, is_main: bool = True
) -> ResumePoint | None:
    """The newest readable resume checkpoint of ``run_dir`` (``None``: start from scratch).

    Unreadable checkpoints (a truncated file from an old version, a damaged disk) are logged, renamed to
    ``<name>.unreadable`` (by the main process) and skipped; the next newest is tried.

    Args:
        run_dir: the run folder.
        resume: ``False`` ignores every checkpoint.
        val_interval: validation interval, to tell whether the checkpoint's validation is still due.
        is_main: this process may rename and delete files (rank 0).
    """
    if not as_bool(resume, "resume"):
        return None
    if as_bool(is_main):
        clean_temporary_files(run_dir)
    for iteration, _final, path in checkpoint_files(run_dir):
        state, why = _readable(path)
        if state is None:
            logger.warning(f"skipping unreadable checkpoint {path} ({why})")
            if as_bool(is_main):
                try:
                    path.rename(path.with_name(path.name + ".unreadable"))
                except OSError:  # pragma: no cover
                    pass
            continue
        training: dict[str, Any] = state["training"] if isinstance(state.get("training"), dict) else {}
        iteration = int((state.get("trainer") or {}).get("iteration", iteration))
        last_validated = int(training.get("last_validated", -1))
        due = int(val_interval) > 0 and iteration > 0 and iteration % int(val_interval) == 0
        return ResumePoint(
            path=path,
            iteration=iteration,
            last_validated=last_validated,
            revalidate=due and last_validated < iteration,
            state=state,
        )
    return None


def prune_checkpoints(run_dir: str | os.PathLike, keep: str | os.PathLike) -> None:
    """Delete every resume checkpoint of ``run_dir`` except ``keep`` (call only once ``keep`` is complete), with
    the model card a final checkpoint has beside it."""
    from ..checkpoint import model_card_path

    keep = Path(keep).resolve()
    for _it, _final, path in checkpoint_files(run_dir):
        if path.resolve() != keep:
            path.unlink(missing_ok=True)
            model_card_path(path).unlink(missing_ok=True)


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
    rank, world = dist_rank_world()
    runs = Path(runs_dir).resolve()
    resume = as_bool(resume, "resume")
    chosen = [str(_pick_run_dir(runs, str(run_name), resume))] if rank == 0 else [""]
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


def publish_model(
    run_dir: str | os.PathLike, ckpt_dir: str | os.PathLike, overwrite: bool = False, label_csv: str | None = None
) -> str | None:
    """Copy the run's best ``model.pt`` and its ``model.json`` to the bundle's ``models/`` (what inference and
    evaluation use), and write ``models/labels.csv`` when ``label_csv`` (its text) differs from the file there.

    An existing ``models/model.pt`` is kept unless ``overwrite`` (bundle override ``--publish_overwrite true``).

    Returns:
        The destination path when copied, else ``None``.
    """
    rank, _ = dist_rank_world()
    src, dst = Path(run_dir) / "model.pt", Path(ckpt_dir) / "model.pt"
    if rank != 0:
        return None
    if not src.is_file():
        logger.warning(f"no best model in {run_dir} (no validation ran); nothing published to {ckpt_dir}")
        return None
    if dst.exists() and not as_bool(overwrite, "publish_overwrite"):
        logger.info(f"best model of this run: {src} ({dst} kept; pass --publish_overwrite true to replace it)")
        return None
    with atomic_path(dst, overwrite=True) as tmp:
        shutil.copyfile(src, tmp)
    card = src.with_suffix(".json")
    if card.is_file():
        with atomic_path(dst.with_suffix(".json"), overwrite=True) as tmp:
            shutil.copyfile(card, tmp)
    labels = Path(ckpt_dir) / "labels.csv"
    if label_csv is not None and (not labels.is_file() or labels.read_text(encoding="utf-8") != label_csv):
        with atomic_path(labels, overwrite=True) as tmp:
            tmp.write_text(label_csv, encoding="utf-8")
    logger.info(f"best model copied to {dst} (model card {dst.with_suffix('.json').name})")
    return str(dst)
