"""nnU-Net v2 trainer variant for a wall-clock CPU budget (used by ``benchmarks/real_data_cpu.py``).

Not part of the ultralight3d package and never imported by it: ``real_data_cpu.py`` copies this file into the
*benchmark* venv's ``nnunetv2/training/nnUNetTrainer/`` (beside ``nnUNetTrainer.py``) so that ``nnUNetv2_train ...
-tr nnUNetTrainerCPUBudget`` and ``nnUNetv2_predict`` find it, as nnU-Net finds its own variants
(``nnUNetTrainer_Xepochs`` and friends). Not under ``variants/``: nnU-Net's class search walks the sub-packages in
alphabetical order and imports ``primus/`` (timm, hence torchvision) first, which fails where torchvision cannot load
(PyPI's torchvision is a CUDA build; beside a CPU-only torch it raises ``operator torchvision::nms does not exist``).

What differs from ``nnUNetTrainer`` (everything else - plans, network, loss, augmentation, SGD with Nesterov, batch
size, patch size, sampling - is nnU-Net's own):

* Training stops after the first iteration that ends ``UL3D_NNUNET_BUDGET_S`` seconds (default 1200) or more after
  the first training iteration began. Start-up (planning the run, unpacking the preprocessed data, starting the
  augmentation workers, waiting for the first batch) is not counted; nnU-Net's per-epoch validation batches are.
* An epoch is ``UL3D_NNUNET_ITERS_PER_EPOCH`` iterations (default 25, nnU-Net: 250) with
  ``UL3D_NNUNET_VAL_ITERS`` validation batches (default 1, nnU-Net: 50), so epochs (logs, pseudo Dice,
  ``checkpoint_best``) still happen within a budget of minutes on a CPU.
* The poly learning-rate schedule (initial lr 0.01, exponent 0.9) runs over the wall-clock budget instead of over 1000
  epochs: before each iteration ``lr = 0.01 * (1 - elapsed / budget) ** 0.9``. That is what
  ``nnUNetTrainer_Xepochs`` does for a shorter epoch count, with time in place of epochs (the iteration rate is not
  known before the run).
* ``checkpoint_final.pth`` is written at the stop (nnU-Net's ``on_train_end``); the end-of-training validation
  (``perform_actual_validation``: mirrored sliding-window prediction of the held-out fold) is skipped, because the
  benchmark predicts the held-out cases itself with ``nnUNetv2_predict``, timed.
* ``budget_log.json`` in the fold folder records the first-iteration time, iterations and epochs done, training seconds
  and the budget.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

__all__ = ["nnUNetTrainerCPUBudget"]

_CUDA = torch.device("cuda")  # nnUNetTrainer's default device


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


class nnUNetTrainerCPUBudget(nnUNetTrainer):
    """``nnUNetTrainer`` that trains for a wall-clock budget (see the module docstring)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA):  # fmt: skip
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.budget_s = _env_float("UL3D_NNUNET_BUDGET_S", 1200.0)
        self.num_iterations_per_epoch = int(_env_float("UL3D_NNUNET_ITERS_PER_EPOCH", 25))
        self.num_val_iterations_per_epoch = max(1, int(_env_float("UL3D_NNUNET_VAL_ITERS", 1)))
        self.poly_exponent = 0.9
        self.iterations_done = 0
        self.first_iteration_time: float | None = None
        self.train_start_time: float | None = None

    def _write_budget_log(self, **extra) -> None:
        if self.local_rank != 0:
            return
        now = time.time()
        info = {
            "budget_s": self.budget_s,
            "iterations": self.iterations_done,
            "current_epoch": self.current_epoch,
            "iterations_per_epoch": self.num_iterations_per_epoch,
            "val_iterations_per_epoch": self.num_val_iterations_per_epoch,
            "train_start_time": self.train_start_time,
            "first_iteration_time": self.first_iteration_time,
            "train_s": None if self.first_iteration_time is None else round(now - self.first_iteration_time, 2),
            "startup_s": None
            if self.first_iteration_time is None or self.train_start_time is None
            else round(self.first_iteration_time - self.train_start_time, 2),
            "batch_size": self.batch_size,
            "patch_size": list(self.configuration_manager.patch_size),
            "parameters": int(sum(p.numel() for p in self.network.parameters())) if self.network is not None else None,
            **extra,
        }
        os.makedirs(self.output_folder, exist_ok=True)
        path = os.path.join(self.output_folder, "budget_log.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _elapsed(self) -> float:
        return 0.0 if self.first_iteration_time is None else time.time() - self.first_iteration_time

    def _set_budget_lr(self) -> None:
        frac = min(self._elapsed() / self.budget_s, 0.999) if self.budget_s > 0 else 0.0
        lr = self.initial_lr * (1.0 - frac) ** self.poly_exponent
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def run_training(self) -> None:
        self.train_start_time = time.time()
        self.on_train_start()
        self.print_to_log_file(
            f"CPU budget trainer: {self.budget_s:g} s from the first iteration, {self.num_iterations_per_epoch} "
            f"iterations and {self.num_val_iterations_per_epoch} validation batch(es) per epoch, poly lr over time"
        )
        stop = False
        for _ in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = []
            for _ in range(self.num_iterations_per_epoch):
                batch = next(self.dataloader_train)
                if self.first_iteration_time is None:
                    self.first_iteration_time = time.time()
                    self._write_budget_log(state="training")
                self._set_budget_lr()
                train_outputs.append(self.train_step(batch))
                self.iterations_done += 1
                if self._elapsed() >= self.budget_s:
                    stop = True
                    break
            self.on_train_epoch_end(train_outputs)
            if stop:  # the budget is spent: no validation batch for this partial epoch
                self.current_epoch += 1  # on_train_end subtracts one, expecting on_epoch_end to have counted it
                break
            with torch.no_grad():
                self.on_validation_epoch_start()
                val_outputs = [self.validation_step(next(self.dataloader_val))
                               for _ in range(self.num_val_iterations_per_epoch)]  # fmt: skip
                self.on_validation_epoch_end(val_outputs)
            self.on_epoch_end()
            if self._elapsed() >= self.budget_s:
                stop = True
                break
        train_s = self._elapsed()
        self.on_train_end()
        self.print_to_log_file(
            f"CPU budget trainer: stopped after {self.iterations_done} iterations, {train_s:.1f} s of training"
        )
        self._write_budget_log(state="done", train_s=round(train_s, 2),
                               final_lr=float(np.round(self.optimizer.param_groups[0]["lr"], 6)))  # fmt: skip

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("CPU budget trainer: end-of-training validation skipped (the benchmark predicts)")
