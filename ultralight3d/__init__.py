"""ultralight3d: ultra-light 3D medical image segmentation on MONAI."""

from __future__ import annotations

__version__ = "0.2.0"

from . import networks  # noqa: F401  (fills the registry)
from .registry import ModelCfg, create_model, get_model_cfg, list_models, register_model

__all__ = ["__version__", "ModelCfg", "create_model", "get_model_cfg", "list_models", "register_model"]
