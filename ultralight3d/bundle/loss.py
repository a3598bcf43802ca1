"""The bundles' training loss: the segmentation loss on the logits, and on every head of a deep-supervised network.

A network built with ``deep_supervision=True`` returns, in training mode, its heads stacked as
``(B, K, C, *S)`` (slot 0 the final logits); :class:`DeepSupervisedLoss` scores each slot against the same label
with MONAI's :class:`~monai.losses.DeepSupervisionLoss` and the network's own slot weights
(``supervision_weights``, e.g. EGE-UNet's 1, 0.5 ... 0.1), or MONAI's "exp" weights when it has none. A plain
``(B, C, *S)`` prediction is passed to the segmentation loss unchanged, so every bundle uses this loss whatever
network ``--model_name`` picks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DeepSupervisionLoss
from torch import nn

from ..errors import UserInputError
from .network import unwrap

__all__ = ["DeepSupervisedLoss", "deep_supervision_default", "supervision_weights"]


def deep_supervision_default(model_name: str) -> bool | None:
    """The bundles' ``deep_supervision`` for ``model_name`` (the registry's ``ModelCfg.deep_supervision``):
    ``True`` for networks trained with it in their paper (EGE-UNet3D); ``None`` means "do not pass it"."""
    from ..registry import get_model_cfg, list_models

    if str(model_name) not in list_models():
        return None  # the network factory reports the unknown name with its fix
    return get_model_cfg(str(model_name)).deep_supervision


def supervision_weights(network: nn.Module) -> list[float] | None:
    """The slot weights a network declares for its deep-supervision output (``None``: MONAI's "exp" weights)."""
    weights = getattr(unwrap(network), "supervision_weights", None)
    return None if weights is None else [float(w) for w in weights]


class DeepSupervisedLoss(nn.Module):
    """``loss`` on the logits, or the weighted sum of ``loss`` over the slots of a deep-supervision output.

    Args:
        loss: the segmentation loss, e.g. ``DiceCELoss(to_onehot_y=True, softmax=True)``.
        weights: one weight per slot (slot 0 the final logits); ``None``: MONAI's "exp" weights (1, 0.5, 0.25...).

    Shapes: ``pred`` (B, C, *S) or (B, K, C, *S); ``target`` (B, 1, *S) as ``loss`` takes it.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]
        self._deep = DeepSupervisionLoss(loss, weight_mode="exp", weights=self.weights)  # type: ignore[arg-type]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.ndim != target.ndim + 1:
            return self.loss(pred, target)
        heads = list(torch.unbind(pred, dim=1))
        if self.weights is not None and len(self.weights) != len(heads):
            raise UserInputError(
                f"the network returns {len(heads)} deep-supervision outputs but the loss has {len(self.weights)} "
                "weights (bundle id loss#weights); give one weight per output or --deep_supervision false"
            )
        return self._deep(heads, target)
