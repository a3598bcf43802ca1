"""Training logs that continue across resumes: ``training_log.csv``, ``validation_log.csv`` and TensorBoard.

Both sinks are written by :class:`MetricsLog` from the same numbers, so they agree. On resume from a checkpoint taken
at iteration ``N`` the CSV rows after ``N`` (written by the interrupted run after its checkpoint) are dropped, and
TensorBoard is opened with ``purge_step`` so the events after ``N`` are hidden: every step appears once.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import fsync_file
from .settings import as_bool

__all__ = ["MetricsLog", "every", "summary_writer"]

logger = logging.getLogger(__name__)


def every(n: int) -> Callable[[Any, int], bool]:
    """Event filter ``(engine, event) -> bool`` true every ``n`` events (for ``StatsHandler(iteration_log=...)``)."""
    n = max(int(n), 1)
    return lambda engine, event: event % n == 0


def summary_writer(log_dir: str | os.PathLike, purge_step: int | None = None, enabled: bool = True) -> Any:
    """A TensorBoard ``SummaryWriter`` for the run folder (``None`` when disabled, e.g. on DDP ranks > 0).

    ``purge_step``: on resume, the first step written again; TensorBoard hides older events from that step on.
    """
    if not as_bool(enabled):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class MetricsLog:
    """The run's loss and validation-Dice logs (CSV and TensorBoard).

    Args:
        run_dir: the run folder.
        class_names: foreground ``{label value: name}`` (the per-class Dice columns use these names).
        writer: TensorBoard ``SummaryWriter`` (``None``: CSV only).
        enabled: write anything (``False`` on DDP ranks > 0).
        train_tag: TensorBoard tag of the loss.
        val_tag: TensorBoard tag of the validation mean Dice (per class: ``<val_tag>/<class>``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        class_names: Mapping[int, str],
        writer: Any = None,
        enabled: bool = True,
        train_tag: str = "train_loss",
        val_tag: str = "val_mean_dice",
    ) -> None:
        self.run_dir = Path(run_dir)
        self.class_names = {int(k): str(v) for k, v in class_names.items()}
        self.writer = writer if as_bool(enabled) else None
        self.enabled = as_bool(enabled)
        self.train_tag, self.val_tag = train_tag, val_tag
        self.train_csv = self.run_dir / "training_log.csv"
        self.val_csv = self.run_dir / "validation_log.csv"

    def columns(self) -> list[str]:
        return [f"dice_{'_'.join(n.split())}" for _, n in sorted(self.class_names.items())]

    @staticmethod
    def _truncate(path: Path, header: list[str], last_iteration: int) -> None:
        rows: list[list[str]] = []
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                next(reader, None)
                rows = [r for r in reader if r and r[0].isdigit() and int(r[0]) <= last_iteration]
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    def start(
        self,
        iteration: int = 0,
        last_validated: int | None = None,
        last_loss: float | None = None,
        purge_step: int | None = None,
    ) -> None:
        """Begin (or continue) the logs at ``iteration``: drop rows of losses after it and of validations after
        ``last_validated``; re-log the loss of ``iteration`` to TensorBoard when ``purge_step`` hid it."""
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        it = int(iteration)
        self._truncate(self.train_csv, ["iteration", "loss"], it)
        self._truncate(
            self.val_csv,
            ["iteration", "mean_dice", *self.columns()],
            it if last_validated is None else int(last_validated),
        )
        if (
            self.writer is not None
            and purge_step is not None
            and it >= 1
            and purge_step <= it
            and last_loss is not None
        ):
            self.writer.add_scalar(self.train_tag, float(last_loss), it)

    def log_train(self, iteration: int, loss: float) -> None:
        if not self.enabled:
            return
        with open(self.train_csv, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([int(iteration), f"{float(loss):.6g}"])
        if self.writer is not None:
            self.writer.add_scalar(self.train_tag, float(loss), int(iteration))

    def log_validation(self, iteration: int, mean: float, per_class: Sequence[float]) -> None:
        if not self.enabled:
            return
        values = list(per_class)[: len(self.class_names)]
        values += [float("nan")] * (len(self.class_names) - len(values))
        with open(self.val_csv, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([int(iteration), f"{float(mean):.6g}", *(f"{float(v):.6g}" for v in values)])
        if self.writer is not None:
            self.writer.add_scalar(self.val_tag, float(mean), int(iteration))
            for (_, name), v in zip(sorted(self.class_names.items()), values, strict=True):
                self.writer.add_scalar(f"{self.val_tag}/{'_'.join(name.split())}", float(v), int(iteration))
        logger.info(f"iteration {iteration}: validation mean Dice {float(mean):.4f} (log: {self.val_csv})")

    def flush(self) -> None:
        """Put everything logged so far on disk (before a checkpoint, so a resume never loses logged steps)."""
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.flush()
        for path in (self.train_csv, self.val_csv):
            if path.is_file():
                fsync_file(path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
