"""Building blocks shared by the network families."""

from __future__ import annotations

from .attention import ChannelAttention, GroupedAttentionGate, SpatialAttention
from .init import normal_init_
from .mk_conv import MultiKernelDepthwiseConv, MultiKernelInvertedResidual, channel_shuffle

__all__ = [
    "ChannelAttention",
    "GroupedAttentionGate",
    "MultiKernelDepthwiseConv",
    "MultiKernelInvertedResidual",
    "SpatialAttention",
    "channel_shuffle",
    "normal_init_",
]
