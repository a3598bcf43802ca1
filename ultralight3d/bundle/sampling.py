"""A shuffling sampler whose order is a function of (seed, pass), so a resumed run sees the same cases in the same
order as an uninterrupted one, from the exact iteration it stopped at."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from .settings import as_bool

__all__ = ["ResumableSampler"]

logger = logging.getLogger(__name__)


class ResumableSampler(Sampler[int]):
    """Shuffled (or sequential) indices; pass ``p`` uses ``torch.randperm`` seeded with ``seed + p``.

    Each ``iter()`` (one pass over the data, as a ``DataLoader`` iterator starts) takes the next pass. After a resume,
    :meth:`set_position` skips the indices the interrupted run had already trained on in its current pass, without
    loading them.

    Args:
        data_source: the dataset (only its length is used).
        shuffle: shuffle each pass (``False``: dataset order).
        seed: seed of pass 0.
    """

    def __init__(self, data_source: Sized, shuffle: bool = True, seed: int = 0) -> None:
        self.data_source = data_source
        self.shuffle = as_bool(shuffle, "train#sampler#shuffle")
        self.seed = int(seed)
        self._pass = 0
        self._skip = 0

    def __len__(self) -> int:
        return len(self.data_source)

    def set_position(self, batches_done: int, batch_size: int, drop_last: bool = False) -> None:
        """Continue after ``batches_done`` batches of ``batch_size`` (the trainer's iteration count)."""
        n, b = len(self.data_source), max(int(batch_size), 1)
        per_pass = n // b if drop_last else math.ceil(n / b)
        if per_pass <= 0:
            self._pass, self._skip = 0, 0
            return
        self._pass, offset = divmod(int(batches_done), per_pass)
        self._skip = offset * b
        if batches_done:
            logger.info(f"data order: pass {self._pass}, {self._skip} of {n} cases already seen in this pass")

    def __iter__(self) -> Iterator[int]:
        p, skip = self._pass, self._skip
        self._pass, self._skip = p + 1, 0
        n = len(self.data_source)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + p)).tolist()
        else:
            order = list(range(n))
        return iter(order[skip:])
