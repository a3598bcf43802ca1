"""Parity: do an exported model and the PyTorch network give the same logits?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .formats import example_input

__all__ = ["ParityResult", "check_parity"]


@dataclass(frozen=True)
class ParityResult:
    """Outcome of :func:`check_parity`.

    Attributes:
        max_abs_diff: largest absolute logit difference between the two engines.
        mean_abs_diff: mean absolute logit difference.
        argmax_agreement: fraction of voxels whose predicted class agrees.
        shape: shape of the compared logits.
        atol: tolerance used for ``passed``.
    """

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    shape: tuple[int, ...]
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff < self.atol


def check_parity(
    reference: nn.Module,
    candidate: Any,
    size: Sequence[int] = (96, 96, 96),
    in_channels: int | None = None,
    atol: float = 1e-3,
    seed: int = 0,
) -> ParityResult:
    """Compare the logits of ``reference`` (torch, eval mode) and ``candidate`` (an :class:`OnnxRuntimeModel`, a
    TorchScript module or any callable) on one seeded random input of spatial ``size``.

    Returns:
        a :class:`ParityResult`; ``result.passed`` is True when the max abs difference is below ``atol``.
    """
    reference = reference.cpu().eval()
    x = example_input(reference, size, in_channels, seed=seed)
    with torch.no_grad():
        ref = reference(x).float()
        out = candidate(x)
    out = torch.as_tensor(out).float().cpu()
    if out.shape != ref.shape:
        raise AssertionError(f"output shapes differ: torch {list(ref.shape)} vs exported {list(out.shape)}")
    diff = (out - ref).abs()
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    return ParityResult(diff.max().item(), diff.mean().item(), agree, tuple(ref.shape), atol)
