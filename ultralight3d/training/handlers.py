"""Ignite handlers for iteration-based training: a hard iteration limit and CSV logs of loss and validation Dice."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["IterationLimit", "CSVLogger", "every", "times", "read_class_names"]

logger = logging.getLogger(__name__)


def every(n: int) -> Callable[[Any, int], bool]:
    """Event filter ``(engine, event) -> bool`` true every ``n`` events (for ``StatsHandler(iteration_log=...)``)."""
    n = max(int(n), 1)
    return lambda engine, event: event % n == 0


def times(n: int) -> Callable[[int], int]:
    """``lambda epoch: epoch * n`` (TensorBoard step of a validation run when one epoch is ``n`` iterations)."""
    n = int(n)
    return lambda epoch: epoch * n


def read_class_names(labels_file: str | os.PathLike | None, num_classes: int) -> dict[int, str]:
    """Foreground class names ``{1: name, ...}`` from a ``labels.csv`` (``LabelValue,Name,...``); numbers if absent."""
    names = {i: f"class{i}" for i in range(1, int(num_classes))}
    if labels_file and Path(labels_file).is_file():
        with open(labels_file, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    value = int(row["LabelValue"])
                except (KeyError, ValueError):
                    continue
                if 0 < value < int(num_classes):
                    names[value] = row.get("Name", names[value]).strip()
    return names


class IterationLimit:
    """Stop the trainer after exactly ``max_iterations`` iterations (also when resumed at or past the limit).

    Attach it after any resume ``CheckpointLoader`` so the check on ``STARTED`` sees the restored iteration.
    """

    def __init__(self, max_iterations: int) -> None:
        self.max_iterations = int(max_iterations)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._check)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)

    def _check(self, engine: Any) -> None:
        if engine.state.iteration >= self.max_iterations:
            engine.terminate()


class CSVLogger:
    """Write ``training_log.csv`` (``iteration,loss``) and ``validation_log.csv`` (``iteration,mean_dice,dice_<c>``).

    On a resumed run, rows after the restored iteration (written by the interrupted run after its last checkpoint) are
    dropped, so each iteration appears once. Only rank 0 writes.

    Args:
        run_dir: the run folder.
        class_names: foreground ``{label value: name}`` for the per-class Dice columns.
        key_metric: validation metric name (a ``MeanDice`` with ``save_details=True`` gives per-class values).
        loss_key: key of the loss in the trainer output.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        class_names: Mapping[int, str],
        key_metric: str = "val_mean_dice",
        loss_key: str = "loss",
        enabled: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.class_names = {int(k): str(v) for k, v in class_names.items()}
        self.key_metric = key_metric
        self.loss_key = loss_key
        self.enabled = enabled
        self.train_csv = self.run_dir / "training_log.csv"
        self.val_csv = self.run_dir / "validation_log.csv"
        self._trainer: Any = None

    def attach(self, trainer: Any, evaluator: Any = None) -> None:
        from ignite.engine import Events

        if not self.enabled:
            return
        self._trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        if evaluator is not None:
            evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)

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

    def _val_header(self) -> list[str]:
        cols = [f"dice_{n.replace(' ', '_')}" for _, n in sorted(self.class_names.items())]
        return ["iteration", "mean_dice", *cols]

    def _started(self, engine: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        it = int(engine.state.iteration)
        self._truncate(self.train_csv, ["iteration", "loss"], it)
        self._truncate(self.val_csv, self._val_header(), it)

    def _iteration(self, engine: Any) -> None:
        out = engine.state.output
        if isinstance(out, (list, tuple)):
            out = out[0]
        loss = out.get(self.loss_key) if isinstance(out, Mapping) else out
        loss = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        with open(self.train_csv, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([engine.state.iteration, f"{loss:.6g}"])

    def _validated(self, evaluator: Any) -> None:
        it = int(self._trainer.state.iteration) if self._trainer is not None else int(evaluator.state.epoch)
        mean = evaluator.state.metrics.get(self.key_metric, float("nan"))
        mean = float(mean.item() if isinstance(mean, torch.Tensor) else mean)
        per_class = [float("nan")] * len(self.class_names)
        details = getattr(evaluator.state, "metric_details", {}).get(self.key_metric)
        if details is not None:
            t = torch.as_tensor(details, dtype=torch.float32)
            if t.ndim == 2:
                t = t.nanmean(dim=0)
            per_class = [float(v) for v in t.flatten().tolist()][: len(self.class_names)]
            per_class += [float("nan")] * (len(self.class_names) - len(per_class))
        with open(self.val_csv, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([it, f"{mean:.6g}", *(f"{v:.6g}" for v in per_class)])
        logger.info(f"iteration {it}: validation mean Dice {mean:.4f} (log: {self.val_csv})")
