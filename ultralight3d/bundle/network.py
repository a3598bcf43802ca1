"""The bundle's network factory and the model card written beside every ``model.pt``.

``network_def`` in every bundle is ``{"_target_": "ultralight3d.bundle.create_network", "model_name": ...}``: it calls
:func:`ultralight3d.create_model` and remembers the name and keyword arguments the network was built with (including
overrides such as ``--network_def#feature_size``), so :class:`ModelCardInfo` can write a card that rebuilds exactly
this network (``create_model(card.model_name, **card.network_kwargs)``).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import ModelCard
from ..errors import UserInputError
from ..labels import LabelTable

__all__ = [
    "create_network",
    "network_spec",
    "unwrap",
    "check_patch_size",
    "check_settings",
    "ModelCardInfo",
    "network_for_checkpoint",
]

logger = logging.getLogger(__name__)

_CREATED: weakref.WeakKeyDictionary[nn.Module, tuple[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def unwrap(network: nn.Module) -> nn.Module:
    """The network inside ``DistributedDataParallel`` / ``DataParallel`` (or the network itself)."""
    if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return network.module
    return network


def _known_model(model_name: str) -> None:
    from ..registry import list_models

    if model_name in list_models():
        return
    family = model_name.rsplit("_", 1)[0] if model_name.count("_") > 1 else model_name
    variants = [m.rsplit("_", 1)[1] for m in list_models(f"{family}_*")]
    hint = f"--variant {'|'.join(variants)}" if variants else f"--model_name one of {', '.join(list_models())}"
    raise UserInputError(f"unknown network '{model_name}' (bundle id model_name); use {hint}")


def create_network(model_name: str, **kwargs: Any) -> nn.Module:
    """:func:`ultralight3d.create_model`, remembering how the network was built (see :func:`network_spec`).

    Raises:
        UserInputError: unknown model name (e.g. a bad ``--variant``).
    """
    from ..registry import create_model

    _known_model(str(model_name))
    net = create_model(str(model_name), **kwargs)
    _CREATED[net] = (str(model_name), {k: v for k, v in kwargs.items() if v is not None})
    return net


def network_spec(network: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """``(model_name, kwargs)`` a network was built with by :func:`create_network` (``None`` otherwise)."""
    spec = _CREATED.get(unwrap(network))
    return None if spec is None else (spec[0], dict(spec[1]))


def check_patch_size(model_name: str, patch_size: Sequence[int]) -> None:
    """Refuse a patch (and sliding-window ROI) that the network cannot take.

    Raises:
        UserInputError: a size that is not a positive multiple of the network's divisor (32 for UltraLightUNet3D,
            16 for 3D UX-Net).
    """
    from ..registry import get_model_cfg

    _known_model(str(model_name))
    divisor = int(get_model_cfg(str(model_name)).divisor)
    sizes = [int(s) for s in patch_size]
    if len(sizes) != 3 or any(s <= 0 or s % divisor for s in sizes):
        ok = [divisor * max(1, round(s / divisor)) for s in sizes] if sizes else [divisor * 3] * 3
        raise UserInputError(
            f"--patch_size {sizes} does not fit {model_name}: every size must be a multiple of "
            f'{divisor}; use e.g. --patch_size "{ok}"'
        )


def check_settings(model_name: str, patch_size: Sequence[int], datalist: Any = None) -> None:
    """Settings checks of ``initialize`` (before any data is loaded): network name, patch size; resolving
    ``datalist`` (the bundle's ``@datalist``) already checked the split and the files."""
    check_patch_size(model_name, patch_size)


def network_for_checkpoint(card: ModelCard | None, model_name: str, in_channels: int, out_channels: int) -> nn.Module:
    """The network of a trained checkpoint: built from its model card when there is one, else from the bundle ids."""
    if card is not None:
        logger.info(f"network from the model card: {card.model_name} ({card.out_channels} classes)")
        return create_network(card.model_name, **card.network_kwargs)
    return create_network(model_name, spatial_dims=3, in_channels=int(in_channels), out_channels=int(out_channels))


class ModelCardInfo:
    """Everything the model card needs that the training run knows up front (filled in by the bundle config).

    Args:
        network: the trained network (built by :func:`create_network`).
        model_name, in_channels, out_channels: fallbacks when ``network`` was built another way.
        label_table: class table (foreground) with names and colours.
        channel_names: one name per input channel.
        protocol, transform_params: the pre-processing protocol and its overrides.
        patch_size: training patch / sliding-window ROI.
        datalist_file, split, fold: the data the model saw.
        extra: kept in the card's ``extra``.
    """

    def __init__(
        self,
        network: nn.Module,
        model_name: str,
        in_channels: int,
        out_channels: int,
        label_table: LabelTable,
        channel_names: Sequence[str] = (),
        protocol: str | Mapping[str, Any] | None = None,
        transform_params: Mapping[str, Any] | None = None,
        patch_size: Sequence[int] | None = None,
        datalist_file: str | os.PathLike | None = None,
        split: str | None = None,
        fold: int | str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.network = network
        self.model_name = str(model_name)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.label_table = label_table
        self.channel_names = [str(c) for c in channel_names]
        self.protocol = protocol
        self.transform_params = dict(transform_params or {})
        self.patch_size = [int(s) for s in patch_size] if patch_size is not None else None
        self.datalist_file = str(Path(datalist_file).resolve()) if datalist_file else None
        self.split = split
        self.fold = fold
        self.extra = dict(extra or {})

    def _spacing(self) -> list[float] | None:
        if self.protocol is None:
            return None
        from .data import protocol_value

        try:
            spacing = protocol_value(self.protocol, self.transform_params, "spacing")
        except UserInputError:
            return None
        return [float(s) for s in spacing] if spacing else None

    def card(self, iteration: int | None = None, val_mean_dice: float | None = None, **extra: Any) -> ModelCard:
        """The :class:`~ultralight3d.checkpoint.ModelCard` of the network's current weights."""
        spec = network_spec(self.network)
        if spec is None:
            name, kwargs = (
                self.model_name,
                {"spatial_dims": 3, "in_channels": self.in_channels, "out_channels": self.out_channels},
            )
        else:
            name, kwargs = spec
        in_ch = int(kwargs.get("in_channels", self.in_channels))
        out_ch = int(kwargs.get("out_channels", self.out_channels))
        labels = self.label_table.to_records()
        split = str(self.split) if self.split is not None else None
        fold: int | None = None
        if split != "fixed" and self.fold is not None and str(self.fold).strip().lower() not in {"none", "all", ""}:
            fold = int(self.fold)
        protocol = (
            self.protocol
            if isinstance(self.protocol, str) or self.protocol is None
            else str(dict(self.protocol).get("name", "custom"))
        )
        return ModelCard(
            model_name=name,
            network_kwargs={k: _jsonable(v) for k, v in kwargs.items()},
            in_channels=in_ch,
            out_channels=out_ch,
            channel_names=list(self.channel_names),
            labels=labels,
            protocol=protocol,
            transform_params={k: _jsonable(v) for k, v in self.transform_params.items()},
            patch_size=self.patch_size,
            spacing=self._spacing(),
            datalist=self.datalist_file,
            fold=fold,
            iteration=None if iteration is None else int(iteration),
            val_mean_dice=None if val_mean_dice is None else float(val_mean_dice),
            extra={**self.extra, "split": split, **{k: _jsonable(v) for k, v in extra.items()}},
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
