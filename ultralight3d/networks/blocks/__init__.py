"""Building blocks shared by the network families."""

from __future__ import annotations

from .attention import ChannelAttention, GroupedAttentionGate, SpatialAttention
from .conv import ConvNormAct
from .init import normal_init_
from .mk_conv import MultiKernelDepthwiseConv, MultiKernelInvertedResidual, channel_shuffle
from .norm import ChannelLayerNorm

__all__ = [
    "ChannelAttention",
    "ChannelLayerNorm",
    "ConvNormAct",
    "GroupedAttentionGate",
    "MultiKernelDepthwiseConv",
    "MultiKernelInvertedResidual",
    "SpatialAttention",
    "channel_shuffle",
    "normal_init_",
]
