"""The class of each voxel from per-class scores, fast on the CPU: :func:`channel_argmax` and the dictionary transform
:class:`ChannelArgmaxd` the bundles use in place of MONAI's ``AsDiscreted(argmax=True)``.

``torch.argmax(x, dim=0)`` over the class axis of a ``(K, *S)`` volume walks the volume strided: on a
``(2, 256, 256, 128)`` volume it took 1.9 s on a 2-core AMD EPYC (AVX2), against 0.07 s for one elementwise compare
pass per class (8 classes: 2.0 s against 0.23 s). Same labels, ties to the first maximum, as ``torch.argmax``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

__all__ = ["ChannelArgmaxd", "channel_argmax"]


def channel_argmax(prob: torch.Tensor) -> torch.Tensor:
    """The class of each voxel: the index of the largest value along dim 0, the first one on ties (as
    ``torch.argmax(prob, dim=0)``), with one pass per class (an elementwise compare and a running maximum).

    Args:
        prob: ``(K, *S)`` probabilities or logits (K >= 1), any float dtype; NaN-free (a softmax of NaN logits is NaN
            in every class, and gives class 0 as ``torch.argmax`` does).

    Returns:
        ``(*S)`` class indices on ``prob``'s device: uint8 for K <= 256, else int64 (a plain tensor).
    """
    if isinstance(prob, MetaTensor):
        prob = prob.as_tensor()
    k = int(prob.shape[0])
    label = torch.zeros(prob.shape[1:], dtype=torch.uint8 if k <= 256 else torch.int64, device=prob.device)
    if k == 1:
        return label
    best = prob[0].clone()
    for c in range(1, k):
        label.masked_fill_(prob[c] > best, c)
        torch.maximum(best, prob[c], out=best)
    return label


class ChannelArgmaxd(MapTransform):
    """``AsDiscreted(keys, argmax=True, to_onehot=...)`` through :func:`channel_argmax`: ``(K, *S)`` scores ->
    ``(1, *S)`` float32 class indices, or with ``to_onehot=N`` the ``(N, *S)`` one-hot of them. A ``MetaTensor``
    keeps its meta data and applied operations (so ``Invertd`` can still bring it back to the input grid).

    Args:
        keys: keys of the items to transform.
        to_onehot: per key, None (class indices) or the number of classes of a one-hot output.
        allow_missing_keys: don't raise for a missing key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        to_onehot: Sequence[int | None] | int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.to_onehot = ensure_tuple_rep(to_onehot, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, onehot in self.key_iterator(d, self.to_onehot):
            scores = torch.as_tensor(d[key])
            label = channel_argmax(scores)
            if onehot is None:
                out = label[None].to(torch.float32)
            else:
                out = torch.zeros((int(onehot), *label.shape), dtype=torch.float32, device=label.device)
                out.scatter_(0, label[None].long(), 1.0)
            if isinstance(d[key], MetaTensor):
                src = d[key]
                out = MetaTensor(out, meta=dict(src.meta), applied_operations=list(src.applied_operations))
            d[key] = out
        return d
