"""Training state you can trust: ordered, atomic checkpoints; exact resume; clean stops; guards.

:class:`TrainingState` is the first handler in every bundle's ``train#handlers``. On the trainer it handles, in this
order within each event (it is attached before MONAI's ``ValidationHandler`` and ``StatsHandler``):

``STARTED``
    signal handlers for SIGINT/SIGTERM; the label-value check of the training and validation cases
    (:class:`~ultralight3d.bundle.data.LabelCheck`); resume from the newest readable checkpoint
    (:func:`~ultralight3d.bundle.runs.find_resume_point`): model, optimizer, AMP scaler, LR scheduler, trainer
    iteration, best metric and its iteration, random state (:mod:`ultralight3d.bundle.rng`) and the data order
    (:class:`~ultralight3d.bundle.sampling.ResumableSampler`); logs continue
    (:class:`~ultralight3d.bundle.logs.MetricsLog`); a validation that was due at the checkpoint but not complete
    runs again.
``ITERATION_STARTED``
    the batch's labels must be inside the classes.
``ITERATION_COMPLETED``
    a non-finite loss stops training (nothing is saved after the last good checkpoint); the loss is logged; every
    ``checkpoint_interval`` iterations the resume checkpoint is written **before** the validation of the same
    iteration starts (then the older checkpoint is deleted); at ``max_iterations`` or after a signal the trainer
    stops.
``COMPLETED``
    the final checkpoint ``checkpoint_final_iteration=N.pt``.
``EXCEPTION_RAISED``
    a final checkpoint when the state is consistent (not in the middle of a step, not after a non-finite loss),
    then the exception is raised again at once (so MONAI's ``StatsHandler``, which logs a traceback and re-raises,
    does not run: a :class:`~ultralight3d.errors.UserInputError` reaches the one-line error hook of
    :mod:`ultralight3d.bundle.user_errors`).

On the evaluator: after each validation the best model (``model.pt`` + ``model.json``) is written when the mean Dice
improved (never with non-finite weights), then the validation is logged; a stop request ends a validation early
(it is repeated on resume).

What a ``kill -9`` loses at most: the iterations after the newest complete resume checkpoint (fewer than
``checkpoint_interval``) and the validation that was running; nothing already written is ever damaged.

Fault injection for tests: ``ULTRALIGHT3D_PAUSE_AT=<point>@<iteration>`` (points ``step`` - after the backward pass,
before the optimizer step; ``checkpoint`` - half-way through writing the checkpoint's temporary file; ``validation``
- after the first validation case) makes the process write ``<run_dir>/.paused`` and wait there until it is killed
or signalled.
"""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import write_model_card
from ..errors import UserInputError
from ..labels import label_csv_text
from ..utils import atomic_path
from .data import LabelCheck
from .devices import dist_rank_world
from .logs import MetricsLog
from .network import ModelCardInfo, unwrap
from .rng import capture_rng, restore_rng, transform_generators
from .runs import RESUME_FORMAT, RUN_FINISHED_MARKER, ResumePoint, prune_checkpoints, publish_model
from .settings import as_bool

__all__ = ["TrainingState", "NonFiniteError", "PAUSE_ENV"]

logger = logging.getLogger(__name__)

#: Environment variable of the fault-injection pause (see the module docstring).
PAUSE_ENV = "ULTRALIGHT3D_PAUSE_AT"
#: Consecutive non-finite losses tolerated with AMP (GradScaler skips those updates); without AMP the first one stops.
AMP_NONFINITE_TOLERANCE = 3


class NonFiniteError(UserInputError):
    """Training produced a non-finite loss or weights (shown as one line; no checkpoint or model is written)."""


def _finite_weights(network: nn.Module) -> str | None:
    for name, value in unwrap(network).state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def _loss_value(output: Any) -> float | None:
    if isinstance(output, (list, tuple)):
        output = output[0] if output else None
    loss = output.get("loss") if isinstance(output, Mapping) else output
    if loss is None:
        return None
    return float(loss.detach().float().mean().item() if isinstance(loss, torch.Tensor) else loss)


def _case_names(batch: Any, cases: Any = None, key: str = "image") -> list[str]:
    """The image files of a (decollated) batch: from the tensors' metadata, else via the ``case`` ids of the datalist
    entries (``cases``: the dataset's ``data``)."""
    items = batch if isinstance(batch, (list, tuple)) else [batch]
    by_case = {str(c.get("case")): c.get(key) for c in (cases or []) if isinstance(c, Mapping) and "case" in c}
    names: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        meta = getattr(item.get(key), "meta", None) or {}
        found = meta.get("filename_or_obj")
        if not found and item.get("case") is not None:
            found = by_case.get(str(item["case"]), item["case"])
        for name in found if isinstance(found, (list, tuple)) else [found]:
            if name and str(name) not in names:
                names.append(str(name))
    return names


class TrainingState:
    """Checkpoints, resume, best model, signals and guards of one training run (see the module docstring).

    Args:
        run_dir: the run folder.
        network: the trained network (``DistributedDataParallel`` is unwrapped for saving).
        optimizer: its optimizer.
        max_iterations: stop after this many iterations (also when resumed at or past it).
        checkpoint_interval: write the resume checkpoint every this many iterations (0: only the final one).
        val_interval: validation interval of the run's ``ValidationHandler`` (to repeat a validation that was due at
            the resume checkpoint but not complete).
        evaluator: the validation evaluator (best model, logs).
        metrics_log: the CSV / TensorBoard logs.
        model_card: what the model card of ``model.pt`` says besides iteration and Dice.
        label_check: label-value check run before the first step.
        resume_point: checkpoint to continue from (:func:`~ultralight3d.bundle.runs.find_resume_point`).
        train_dataset: training dataset (its transform's random state is saved).
        key_metric: the evaluator's key metric (higher is better).
        lr_scheduler: saved and restored with the optimizer when given.
        is_main: this process writes files (rank 0).
        ckpt_dir, publish_overwrite: where :meth:`finish` publishes the best model of a finished run.
        handle_signals: stop cleanly on SIGINT/SIGTERM (only in the main thread).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        max_iterations: int,
        checkpoint_interval: int = 500,
        val_interval: int = 0,
        evaluator: Any = None,
        metrics_log: MetricsLog | None = None,
        model_card: ModelCardInfo | None = None,
        label_check: LabelCheck | None = None,
        resume_point: ResumePoint | None = None,
        train_dataset: Any = None,
        key_metric: str = "val_mean_dice",
        lr_scheduler: Any = None,
        is_main: bool = True,
        ckpt_dir: str | os.PathLike | None = None,
        publish_overwrite: bool = False,
        handle_signals: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.network = network
        self.optimizer = optimizer
        self.max_iterations = int(max_iterations)
        self.checkpoint_interval = max(int(checkpoint_interval), 0)
        self.val_interval = max(int(val_interval), 0)
        self.evaluator = evaluator
        self.metrics_log = metrics_log
        self.model_card = model_card
        self.label_check = label_check
        self.resume_point = resume_point
        self.train_dataset = train_dataset
        self.key_metric = key_metric
        self.lr_scheduler = lr_scheduler
        self.is_main = as_bool(is_main)
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir else None
        self.publish_overwrite = as_bool(publish_overwrite, "publish_overwrite")
        self.handle_signals = as_bool(handle_signals)

        self.best_metric: float | None = None
        self.best_iteration: int | None = None
        self.last_validated = -1
        self.last_loss: float | None = None
        self.trainer: Any = None
        self._generators: list[Any] = []
        self._saved: tuple[int, int] = (0, -1)  # (iteration, last validated) of the newest checkpoint on disk
        self._saved_final = False
        self._in_step = False
        self._fetching = False
        self._rng_before_fetch: dict[str, Any] | None = None
        self._stop_signal: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._validating = False
        self._nonfinite_streak = 0

    # ------------------------------------------------------------------------------------------------ wiring
    def attach(self, engine: Any) -> None:
        """Register on the trainer (called by MONAI for every entry of ``train_handlers``) and on the evaluator."""
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        self.trainer = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._get_batch_started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, lambda e: self._pause("step"))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._exception)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.STARTED, self._validation_started)
            self.evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._validation_iteration)
            self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validation_completed)
            self.evaluator.add_event_handler(Events.COMPLETED, self._validation_ended)
            self.evaluator.add_event_handler(Events.TERMINATE, self._validation_ended)

    @property
    def iteration(self) -> int:
        return int(getattr(getattr(self.trainer, "state", None), "iteration", 0) or 0)

    # ----------------------------------------------------------------------------------------------- trainer
    def _started(self, engine: Any) -> None:
        self._install_signals()
        self._generators = transform_generators(getattr(self.train_dataset, "transform", None))
        if self.label_check is not None:
            t0 = time.perf_counter()
            self.label_check.run()
            logger.info(f"label values checked ({time.perf_counter() - t0:.1f} s)")
        rp = self.resume_point
        if rp is not None and rp.state:
            self._load(engine, rp)
        if self.metrics_log is not None:
            self.metrics_log.start(
                iteration=engine.state.iteration,
                last_validated=self.last_validated if rp is not None else None,
                last_loss=self.last_loss,
                purge_step=rp.purge_step if rp is not None else None,
            )
        sampler = getattr(getattr(engine, "data_loader", None), "sampler", None)
        loader = getattr(engine, "data_loader", None)
        if sampler is not None and hasattr(sampler, "set_position") and loader is not None:
            sampler.set_position(engine.state.iteration, loader.batch_size or 1, bool(loader.drop_last))
        elif rp is not None and dist_rank_world()[1] == 1:
            logger.info(
                "the training sampler cannot skip to the resumed position: data order after the resume "
                "differs from an uninterrupted run"
            )
        if rp is not None and rp.revalidate and self.evaluator is not None:
            logger.info(
                f"the validation of iteration {rp.iteration} was not complete when the run stopped: running it again"
            )
            self.evaluator.run(engine.state.epoch)
        self.resume_point = None
        if engine.state.iteration >= self.max_iterations:
            engine.terminate()

    def _load(self, engine: Any, rp: ResumePoint) -> None:
        st = rp.state
        unwrap(self.network).load_state_dict(st["model"])
        if "optimizer" in st:
            self.optimizer.load_state_dict(st["optimizer"])
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        if self.lr_scheduler is not None and st.get("lr_scheduler"):
            self.lr_scheduler.load_state_dict(st["lr_scheduler"])
        trainer = st.get("trainer") or {}
        engine.state.iteration = int(trainer.get("iteration", rp.iteration))
        length = engine.state.epoch_length or int(trainer.get("epoch_length", 1)) or 1
        engine.state.epoch = engine.state.iteration // length
        training = st.get("training") or {}
        self.best_metric = None if training.get("best_metric") is None else float(training["best_metric"])
        self.best_iteration = None if training.get("best_iteration") is None else int(training["best_iteration"])
        self.last_validated = int(training.get("last_validated", -1))
        self.last_loss = None if training.get("last_loss") is None else float(training["last_loss"])
        self._saved = (engine.state.iteration, self.last_validated)
        self._saved_final = rp.path.name.startswith("checkpoint_final_")
        notes = []
        rng = st.get("rng")
        if isinstance(rng, Mapping) and rng.get("ranks"):
            rank, world = dist_rank_world()
            ranks = list(rng["ranks"])
            if len(ranks) != world:
                notes.append(f"random state saved by {len(ranks)} process(es), restored in {world}")
            notes += restore_rng(ranks[rank] if rank < len(ranks) else ranks[0], self._generators)
        else:
            notes.append("no random state in the checkpoint")
        if training.get("format") != RESUME_FORMAT:
            notes.append("checkpoint of an older version: best metric and logs restart")
        if self.evaluator is not None and self.best_metric is not None:
            self.evaluator.state.best_metric = self.best_metric
            self.evaluator.state.best_metric_epoch = (self.best_iteration or 0) // length
        best = "none yet" if self.best_metric is None else f"{self.best_metric:.4f} at iteration {self.best_iteration}"
        logger.info(
            f"resumed from {rp.path.name} at iteration {engine.state.iteration} (best {self.key_metric}: "
            f"{best})" + (f"; not restored: {'; '.join(notes)}" if notes else "")
        )
        rp.state = {}

    def _get_batch_started(self, engine: Any) -> None:
        # the state of "iteration N finished": what a final checkpoint saves if the run stops while fetching N+1
        self._rng_before_fetch = capture_rng(self._generators)
        self._fetching = True

    def _iteration_started(self, engine: Any) -> None:
        self._in_step = True
        if self.label_check is not None:
            self.label_check.check_batch(engine.state.batch, engine.state.iteration)

    def _iteration_completed(self, engine: Any) -> None:
        it = int(engine.state.iteration)
        loss = _loss_value(engine.state.output)
        if loss is not None and not math.isfinite(loss):
            cases = _case_names(engine.state.batch, getattr(self.train_dataset, "data", None))
            where = f" (case {', '.join(cases)})" if cases else ""
            self._nonfinite_streak += 1
            # with AMP, GradScaler skips the update of an overflowing step: tolerate a few while the weights are fine
            tolerated = (
                getattr(engine, "scaler", None) is not None
                and self._nonfinite_streak <= AMP_NONFINITE_TOLERANCE
                and _finite_weights(self.network) is None
            )
            if not tolerated:
                raise NonFiniteError(
                    f"training stopped: the loss is {loss} at iteration {it}{where}; nothing was saved after "
                    f"iteration {self._saved[0]} ({self._last_good()}). Check the case for NaN/inf voxels "
                    "(`ultralight3d prepare` reports them), lower --learning_rate, or pass --amp False"
                )
            logger.warning(
                f"iteration {it}: the loss is {loss}{where}; AMP skipped the update "
                f"({self._nonfinite_streak} in a row, training stops after {AMP_NONFINITE_TOLERANCE})"
            )
        else:
            self._nonfinite_streak = 0
        self._in_step = False
        self._fetching = False
        self.last_loss = loss
        if self.metrics_log is not None and loss is not None:
            self.metrics_log.log_train(it, loss)
        if self.checkpoint_interval and it % self.checkpoint_interval == 0:
            self.save(engine, final=False)
        if self._stop_requested(engine) or it >= self.max_iterations:
            engine.terminate()

    def _stop_requested(self, engine: Any) -> bool:
        _, world = dist_rank_world()
        if world == 1:
            return self._stop_signal is not None
        import torch.distributed as dist

        device = next(unwrap(self.network).parameters()).device
        flag = torch.tensor([0 if self._stop_signal is None else int(self._stop_signal)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if int(flag.item()) and self._stop_signal is None:
            self._stop_signal = int(flag.item())
        return self._stop_signal is not None

    def _completed(self, engine: Any) -> None:
        self._restore_signals()
        if (int(engine.state.iteration), self.last_validated) != self._saved or not self._saved_final:
            self._final_save(engine, gather=True)  # every rank gets here together (a stop is agreed on by all)

    def _exception(self, engine: Any, err: BaseException) -> None:
        self._restore_signals()
        if isinstance(err, NonFiniteError):
            pass
        elif self._in_step:
            logger.error(
                f"no final checkpoint: the run stopped in the middle of iteration {engine.state.iteration} "
                f"({type(err).__name__}); {self._last_good()}"
            )
        else:
            try:
                if (int(engine.state.iteration), self.last_validated) != self._saved:
                    self._final_save(engine)
            except Exception as save_err:
                logger.error(f"final checkpoint not written ({type(save_err).__name__}: {save_err})")
        raise err

    def _last_good(self) -> str:
        from .runs import latest_checkpoint

        ckpt = latest_checkpoint(self.run_dir)
        return f"the run continues from {Path(ckpt).name}" if ckpt else "no checkpoint yet: a rerun starts afresh"

    def _final_save(self, engine: Any, gather: bool = False) -> None:
        if int(engine.state.iteration) == 0:
            return
        rng = self._rng_before_fetch if self._fetching and self._rng_before_fetch is not None else None
        self.save(engine, final=True, rng=rng, gather=gather)

    # ------------------------------------------------------------------------------------------- checkpoints
    def checkpoint_path(self, iteration: int, final: bool) -> Path:
        return self.run_dir / f"checkpoint_{'final_' if final else ''}iteration={int(iteration)}.pt"

    def state_dict(self, engine: Any, rng: dict[str, Any] | None = None, gather: bool = False) -> dict[str, Any]:
        """The resume state: model, optimizer, scaler, scheduler, trainer position, best metric, random state."""
        rank, world = dist_rank_world()
        mine = rng if rng is not None else capture_rng(self._generators)
        ranks = [mine]
        if gather and world > 1:
            import torch.distributed as dist

            ranks = [None] * world  # type: ignore[list-item]
            dist.all_gather_object(ranks, mine)
        it = int(engine.state.iteration)
        state: dict[str, Any] = {
            "model": unwrap(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": {
                "iteration": it,
                "epoch": int(engine.state.epoch),
                "epoch_length": int(engine.state.epoch_length or 0),
            },
            "training": {
                "format": RESUME_FORMAT,
                "best_metric": self.best_metric,
                "best_iteration": self.best_iteration,
                "last_validated": int(self.last_validated),
                "last_loss": self.last_loss,
                "max_iterations": self.max_iterations,
                "key_metric": self.key_metric,
            },  # fmt: skip
            "rng": {"ranks": ranks},
        }
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        return state

    def save(
        self, engine: Any, final: bool = False, rng: dict[str, Any] | None = None, gather: bool | None = None
    ) -> Path | None:
        """Write the resume checkpoint atomically, then delete the older ones (main process only).

        Under DDP the random state of every rank is gathered (a collective: all ranks must call this together)
        unless ``gather`` is False (default: gather for interval checkpoints only).
        """
        it = int(engine.state.iteration)
        bad = _finite_weights(self.network)
        if bad is not None:
            raise NonFiniteError(
                f"training stopped: the weights are not finite at iteration {it} ({bad}); nothing "
                f"was saved after iteration {self._saved[0]} ({self._last_good()}); lower --learning_rate "
                "or pass --amp False"
            )
        state = self.state_dict(engine, rng=rng, gather=(not final) if gather is None else gather)
        self._saved, self._saved_final = (it, self.last_validated), bool(final)
        if not self.is_main:
            return None
        if self.metrics_log is not None:
            self.metrics_log.flush()
        path = self.checkpoint_path(it, final)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=True) as tmp:
            self._write(state, tmp, it)
        if final and self.model_card is not None:  # a stopped run's weights can be used without knowing the network
            write_model_card(path, self.model_card.card(it, None, key_metric=self.key_metric))
        prune_checkpoints(self.run_dir, keep=path)
        logger.info(f"resume checkpoint {path.name} written")
        return path

    def _write(self, state: dict[str, Any], tmp: Path, iteration: int) -> None:
        if not self._pause_wanted("checkpoint", iteration):
            torch.save(state, str(tmp))
            return
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            self._pause("checkpoint")
            f.write(data[len(data) // 2 :])

    # ------------------------------------------------------------------------------------------- validation
    def _validation_started(self, evaluator: Any) -> None:
        self._validating = True
        if self._stop_signal is not None and dist_rank_world()[1] == 1:
            evaluator.terminate(skip_completed=True)

    def _validation_iteration(self, evaluator: Any) -> None:
        self._pause("validation")
        if self._stop_signal is not None and dist_rank_world()[1] == 1:
            logger.info("validation stopped early (it runs again on resume)")
            evaluator.terminate(skip_completed=True)

    def _validation_ended(self, evaluator: Any) -> None:
        self._validating = False

    def _validation_completed(self, evaluator: Any) -> None:
        it = self.iteration
        value = evaluator.state.metrics.get(self.key_metric, float("nan"))
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        per_class: list[float] = []
        details = getattr(evaluator.state, "metric_details", {}).get(self.key_metric)
        if details is not None:
            t = torch.as_tensor(details, dtype=torch.float32)
            if t.ndim == 2:
                t = t.nanmean(dim=0)
            per_class = [float(v) for v in t.flatten().tolist()]
        if math.isfinite(value) and (self.best_metric is None or value > self.best_metric):
            self._save_best(it, value)
        if self.metrics_log is not None:
            self.metrics_log.log_validation(it, value, per_class)
        self.last_validated = it

    def _save_best(self, iteration: int, value: float) -> None:
        bad = _finite_weights(self.network)
        if bad is not None:
            raise NonFiniteError(
                f"training stopped: the weights are not finite at iteration {iteration} ({bad}); "
                "model.pt keeps the previous best model; lower --learning_rate or pass --amp False"
            )
        self.best_metric, self.best_iteration = float(value), int(iteration)
        if not self.is_main:
            return
        path = self.run_dir / "model.pt"
        weights = {k: v.detach().cpu() for k, v in unwrap(self.network).state_dict().items()}
        with atomic_path(path, overwrite=True) as tmp:
            torch.save(weights, str(tmp))
        if self.model_card is not None:
            write_model_card(path, self.model_card.card(iteration, value, key_metric=self.key_metric))
        logger.info(f"new best {self.key_metric} {value:.4f} at iteration {iteration}: {path} written")

    # ------------------------------------------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # pragma: no cover  (not allowed here)
                pass

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError, TypeError):  # pragma: no cover
                pass
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._stop_signal is not None:
            self._restore_signals()
            raise KeyboardInterrupt(f"second {name}: stopping at once, without a final checkpoint")
        self._stop_signal = int(signum)
        logger.warning(
            f"{name} received: finishing iteration {self.iteration + (1 if self._in_step else 0)}, writing a "
            f"final checkpoint and stopping (send {name} again to stop at once, without it)"
        )
        if dist_rank_world()[1] == 1:
            if self.trainer is not None:
                self.trainer.terminate()
            if self._validating and self.evaluator is not None:
                self.evaluator.terminate(skip_completed=True)

    # ---------------------------------------------------------------------------------------------- the end
    def finish(self) -> bool:
        """After ``run``: ``FINISHED`` and the published best model when ``max_iterations`` was reached.

        Returns:
            Whether the run is finished.
        """
        it = self.iteration
        done = it >= self.max_iterations and self._stop_signal is None
        if self.is_main:
            if done:
                with atomic_path(self.run_dir / RUN_FINISHED_MARKER, overwrite=True) as tmp:
                    tmp.write_text(f"iteration={it}\n", encoding="utf-8")
                if self.ckpt_dir is not None:
                    table = self.model_card.label_table if self.model_card is not None else None
                    publish_model(
                        self.run_dir,
                        self.ckpt_dir,
                        self.publish_overwrite,
                        label_csv=label_csv_text(table) if table is not None else None,
                    )
            best = (
                ""
                if self.best_metric is None
                else f"; best {self.key_metric} {self.best_metric:.4f} at iteration {self.best_iteration}"
            )
            logger.info(
                f"training {'finished' if done else 'stopped'} at iteration {it}{best}; run folder {self.run_dir}"
            )
        if self.metrics_log is not None:
            self.metrics_log.close()
        return done

    def exit_if_interrupted(self) -> None:
        """Leave with exit status 128 + signal number (130 for Ctrl-C, 143 for SIGTERM) after a signal stop."""
        if self._stop_signal is None:
            return
        name = signal.Signals(self._stop_signal).name
        from .runs import latest_checkpoint

        ckpt = latest_checkpoint(self.run_dir)
        logger.warning(
            f"training stopped by {name} at iteration {self.iteration}; final checkpoint "
            f"{ckpt}; run the same command again to continue"
        )
        raise SystemExit(128 + int(self._stop_signal))

    # ------------------------------------------------------------------------------------------ fault hooks
    def _pause_wanted(self, point: str, iteration: int | None = None) -> bool:
        spec = os.environ.get(PAUSE_ENV, "")
        if not spec:
            return False
        name, _, at = spec.partition("@")
        it = self.iteration if iteration is None else int(iteration)
        return name.strip() == point and (not at.strip() or int(at) == it)

    def _pause(self, point: str) -> None:
        if not self._pause_wanted(point):
            return
        marker = self.run_dir / ".paused"
        marker.write_text(f"{point} {self.iteration} {os.getpid()}\n", encoding="utf-8")
        logger.warning(f"{PAUSE_ENV}: paused at {point} of iteration {self.iteration} (pid {os.getpid()})")
        while self._stop_signal is None:
            time.sleep(0.05)
