"""Model registry: variants are data, registered builder functions create them (timm-style).

Example::

    >>> from ultralight3d import create_model, list_models
    >>> list_models("ultralight_unet3d_*")
    ['ultralight_unet3d_base', 'ultralight_unet3d_l', 'ultralight_unet3d_m', 'ultralight_unet3d_s',
     'ultralight_unet3d_t']
    >>> net = create_model("ultralight_unet3d_m", in_channels=2, out_channels=3)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["ModelCfg", "register_model", "create_model", "list_models", "get_model_cfg"]


@dataclass(frozen=True)
class ModelCfg:
    """Metadata that travels with a registered variant but is not part of the architecture.

    Attributes:
        family: network family name (e.g. ``"ultralight_unet"``).
        variant: variant key inside the family table (e.g. ``"m"``).
        patch_size: default training / sliding-window ROI.
        divisor: every spatial size must be a multiple of this.
        paper_params_m: parameter count (millions) reported by the paper, if any.
        paper_gflops: FLOPs (G, ptflops convention, at ``paper_input_size``) reported by the paper, if any.
        paper_settings: constructor settings that reproduce the paper's counts.
        paper_input_size: spatial input size of the paper's FLOPs (96³ for the 3D papers, 256² for 2D EGE-UNet).
        weights_url: URL of released weights (None: no weights released yet).
        weights_sha256: checksum of the released weights.
        deep_supervision: what the bundles pass as the network's ``deep_supervision`` argument when training
            (``True`` for networks whose paper trains with it, e.g. EGE-UNet); ``None``: not passed (the network
            has no such argument or keeps its own default).
    """

    family: str
    variant: str
    patch_size: tuple[int, ...] = (96, 96, 96)
    divisor: int = 32
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    paper_settings: dict[str, Any] = field(default_factory=dict)
    paper_input_size: tuple[int, ...] = (96, 96, 96)
    weights_url: str | None = None
    weights_sha256: str | None = None
    deep_supervision: bool | None = None


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}
_FILLED = False


def _fill() -> None:
    """Register every network family once, on the first lookup (importing :mod:`ultralight3d.networks` registers
    them; ``import ultralight3d`` alone imports no torch)."""
    global _FILLED
    if not _FILLED:
        _FILLED = True
        try:
            from . import networks  # noqa: F401
        except BaseException:
            _FILLED = False
            raise


def register_model(cfg: ModelCfg) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder function under its own ``__name__`` with ``cfg``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        _MODELS[name] = fn
        _CFGS[name] = cfg
        return fn

    return wrap


def _check_name(name: str) -> None:
    _fill()
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'. Registered models: {', '.join(list_models())}")


def create_model(model_name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; keyword arguments override the variant table (``None`` values are dropped).

    Args:
        model_name: a name from :func:`list_models`.
        kwargs: constructor arguments, e.g. ``spatial_dims``, ``in_channels``, ``out_channels``.

    Raises:
        ValueError: for an unknown name (the message lists the registered names).
    """
    _check_name(model_name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _MODELS[model_name](**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered model names matching a shell-style ``pattern``."""
    _fill()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_model_cfg(model_name: str) -> ModelCfg:
    """The :class:`ModelCfg` of a registered model."""
    _check_name(model_name)
    return _CFGS[model_name]
