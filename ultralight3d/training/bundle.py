"""Locate the bundle folder and pick devices / process groups for bundle configs."""

from __future__ import annotations

import ast
import logging
import os
import sys
from pathlib import Path

import torch

__all__ = ["find_bundle_root", "select_device", "init_distributed"]

logger = logging.getLogger(__name__)


def _bundle_of(config_file: str | os.PathLike) -> Path:
    cfg_dir = Path(config_file).resolve().parent
    return cfg_dir.parent if cfg_dir.name == "configs" else cfg_dir


def _config_files_from_argv(argv: list[str]) -> list[str]:
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        if value is None:
            continue
        value = value.strip()
        if value.startswith("["):
            try:
                return [str(v) for v in ast.literal_eval(value)]
            except (ValueError, SyntaxError):
                return [v.strip(" '\"") for v in value.strip("[]").split(",") if v.strip(" '\"")]
        return [value]
    return []


def find_bundle_root(default: str | os.PathLike = ".") -> str:
    """Absolute path of the bundle whose config is being run, whatever the current directory.

    Looked up in this order:

    1. the ``config_root_path`` of the MONAI ``ConfigWorkflow`` that is evaluating this expression (covers
       ``python -m monai.bundle run``, ``torchrun -m monai.bundle run`` and in-process ``ConfigWorkflow``);
    2. ``--config_file`` on the command line;
    3. ``default`` (the current directory) - its parent if it is a ``configs`` folder.

    A bundle root is the parent of the ``configs/`` folder holding the first config file. Pass ``--bundle_root`` to
    override it.
    """
    frame = sys._getframe(1)
    try:
        from monai.bundle.workflows import ConfigWorkflow
    except ImportError:  # pragma: no cover
        ConfigWorkflow = None  # type: ignore[assignment,misc]
    while frame is not None and ConfigWorkflow is not None:
        obj = frame.f_locals.get("self")
        if isinstance(obj, ConfigWorkflow) and getattr(obj, "config_root_path", None) is not None:
            root = Path(obj.config_root_path).resolve()
            return str(root.parent if root.name == "configs" else root)
        frame = frame.f_back
    files = _config_files_from_argv(sys.argv)
    if files:
        return str(_bundle_of(files[0]))
    root = Path(default).resolve()
    return str(root.parent if root.name == "configs" else root)


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
