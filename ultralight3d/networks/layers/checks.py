"""Input checks shared by the network families (TorchScript-compatible: plain string building, no f-strings)."""

from __future__ import annotations

import torch

__all__ = ["check_input"]


def check_input(x: torch.Tensor, name: str, spatial_dims: int, in_channels: int, divisor: int) -> None:
    """Raise a ``ValueError`` that names the fix when ``x`` is not a valid input of the network ``name``.

    Args:
        x: the input, expected (B, in_channels, *S) with ``spatial_dims`` spatial axes.
        name: the network's class name, for the message.
        spatial_dims: 2 or 3.
        in_channels: channels the network was built for.
        divisor: every spatial size must be a multiple of it (2 ** number of downsamplings).
    """
    if x.dim() != spatial_dims + 2:
        axes = "D, H, W" if spatial_dims == 3 else "H, W"
        raise ValueError(
            name + "(spatial_dims=" + str(spatial_dims) + ") expects input (B, C, " + axes + "), got shape "
            + str(list(x.shape))
        )  # fmt: skip
    if x.shape[1] != in_channels:
        raise ValueError(
            name + " was built for in_channels=" + str(in_channels) + " but the input has " + str(x.shape[1])
            + " channels"
        )  # fmt: skip
    for s in x.shape[2:]:
        if s % divisor != 0:
            raise ValueError(
                name + " needs every spatial size to be a multiple of " + str(divisor) + " (its downsamplings), e.g. "
                + str(divisor) + ", " + str(2 * divisor) + ", " + str(3 * divisor) + "; got " + str(list(x.shape[2:]))
                + ". Pad or crop the input, or use sliding-window inference with a 96³ ROI"
            )  # fmt: skip
