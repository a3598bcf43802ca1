"""Devices and process groups for bundle configs (single process, or ``torchrun`` DDP)."""

from __future__ import annotations

import logging
import os

import torch

__all__ = ["select_device", "init_distributed", "dist_rank_world"]

logger = logging.getLogger(__name__)


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` without one."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:
        pass
    return 0, 1


def select_device(device: str | None = None) -> torch.device:
    """``cuda:$LOCAL_RANK`` (or ``cuda``) when CUDA is available, else CPU; an explicit ``device`` wins."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> torch.device:
    """Start the default process group (NCCL on CUDA, gloo on CPU) under ``torchrun``; return this rank's device.

    Non-zero ranks log warnings only.
    """
    import torch.distributed as dist

    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    device = select_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.get_rank() > 0:
        logging.getLogger().setLevel(logging.WARNING)
        for name in ("ignite", "monai", "ultralight3d"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logger.info(f"distributed training: backend {backend}, world size {dist.get_world_size()}, device {device}")
    return device
