"""Low-level layers shared by the blocks: inference-time fusion primitives (:mod:`.fuse`)."""

from __future__ import annotations

from .fuse import (
    FUSE_SWITCHES,
    FusableModule,
    FusedConvNormAct,
    InplaceAct,
    fold_conv_bn,
    fuse_children,
    fuse_modules,
    fuse_switches,
)

__all__ = [
    "FUSE_SWITCHES",
    "FusableModule",
    "FusedConvNormAct",
    "InplaceAct",
    "fold_conv_bn",
    "fuse_children",
    "fuse_modules",
    "fuse_switches",
]
