"""Normalisation layers shared by the network families."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ChannelLayerNorm"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a channels-first (B, C, *S) tensor, any number of spatial axes
    (ConvNeXt's ``data_format="channels_first"``; used by EGE-UNet and 3D UX-Net).

    Each voxel's C-vector is normalised to zero mean and unit (biased) variance, then scaled and shifted per
    channel. Computed as a permute to channels-last, ``F.layer_norm`` and a permute back, with explicit
    non-negative permutations (ONNX Runtime rejects the negative ones ``movedim(1, -1)`` exports to). A channels-last
    input (``optimize_for_inference``) makes the first permute free.

    Args:
        channels: C.
        eps: added to the variance. Defaults to 1e-6.

    Shapes:
        forward(x: (B, C, *S)) -> (B, C, *S).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.dim()
        to_last = [0] + [i for i in range(2, n)] + [1]
        to_first = [0, n - 1] + [i for i in range(1, n - 1)]
        x = F.layer_norm(x.permute(to_last), [self.channels], self.weight, self.bias, self.eps)
        return x.permute(to_first)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"
