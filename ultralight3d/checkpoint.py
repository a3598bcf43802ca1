"""The one place that reads trained weights, and the model card that travels with them.

Training writes ``model.pt`` (a plain state dict, the model-zoo convention) and, beside it, ``model.json``: the *model
card*, everything needed to rebuild and use the network without repeating training options (network name and
keyword arguments, channels, class table, protocol, patch size, the data and fold it saw, the iteration and validation
Dice it reached, the project version). ``predict``, ``export`` and ``evaluate`` read both through this module.

Rules for reading a checkpoint (:func:`load_state_dict`):

- always ``torch.load(..., weights_only=True)`` on the CPU: a checkpoint is data, never code;
- a plain state dict (``model.pt``), or a dict holding one under ``"model"`` (resume checkpoints),
  ``"state_dict"`` or ``"network"``;
- a ``module.`` (DistributedDataParallel) or ``_orig_mod.`` (``torch.compile``) prefix on every key is removed;
- non-finite weights are refused: a model whose training diverged would silently predict background.

Example::

    >>> card = read_model_card("bundles/custom_ultralight_unet3d/models/model.pt")
    >>> model = create_model(card.model_name, **card.network_kwargs)
    >>> load_weights(model, "bundles/custom_ultralight_unet3d/models/model.pt")
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserInputError
from .utils import atomic_path

__all__ = [
    "MODEL_CARD_FORMAT",
    "ModelCard",
    "model_card_path",
    "read_model_card",
    "write_model_card",
    "load_state_dict",
    "load_weights",
]

#: ``format`` value of a model card; bump the suffix when a field changes meaning.
MODEL_CARD_FORMAT = "ultralight3d.model/1"
_STATE_KEYS = ("model", "state_dict", "network")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class ModelCard:
    """What a trained model is: enough to rebuild the network and to pre- and post-process its input and output.

    Attributes:
        model_name: registry name for :func:`ultralight3d.create_model` (e.g. ``"ultralight_unet3d_s"``).
        network_kwargs: the other keyword arguments of ``create_model`` (``spatial_dims``, ``in_channels``,
            ``out_channels``, width overrides ...), so ``create_model(model_name, **network_kwargs)`` rebuilds it.
        in_channels: number of input channels.
        out_channels: number of output classes, background included.
        channel_names: one name per input channel, in order (``["T2", "ADC"]``).
        labels: class table, background included: ``[{"value": 0, "name": "background", "color": [r, g, b, a]},
            ...]``; an entry may carry terminology keys (kept as given).
        protocol: name of the dataset protocol (``transforms/<protocol>.json``) that pre-processes the input.
        transform_params: protocol overrides used in training (``get_pipeline(protocol, ..., **transform_params)``).
        patch_size: training patch (and sliding-window ROI) size, voxels.
        spacing: target spacing of the protocol in mm, or ``None`` when the input grid is kept.
        datalist: datalist file the model was trained from.
        fold: validation fold (``-1``: trained on all cases).
        iteration: training iteration of these weights.
        val_mean_dice: validation mean Dice (background excluded) of these weights, ``None`` when not validated.
        version: ultralight3d version that wrote the card.
        created: ISO 8601 time the card was written.
        extra: anything else (kept as given).
    """

    model_name: str
    network_kwargs: dict[str, Any]
    in_channels: int
    out_channels: int
    channel_names: list[str] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    protocol: str | None = None
    transform_params: dict[str, Any] = field(default_factory=dict)
    patch_size: list[int] | None = None
    spacing: list[float] | None = None
    datalist: str | None = None
    fold: int | None = None
    iteration: int | None = None
    val_mean_dice: float | None = None
    version: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = MODEL_CARD_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike = "model card") -> ModelCard:
        """Build a card from its JSON form; unknown keys go to :attr:`extra`.

        Raises:
            UserInputError: a required key is missing or the format is not one this version reads.
        """
        fmt = str(data.get("format", ""))
        if not fmt.startswith(MODEL_CARD_FORMAT.rsplit("/", 1)[0] + "/"):
            raise UserInputError(
                f"{source} is not an ultralight3d model card (format {fmt!r}); remove it or "
                "pass --variant/--num_classes explicitly"
            )
        missing = [k for k in ("model_name", "network_kwargs", "in_channels", "out_channels") if k not in data]
        if missing:
            raise UserInputError(f"{source} lacks {', '.join(missing)}; re-train or remove the card")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**kwargs, extra=extra)

    @property
    def class_names(self) -> dict[int, str]:
        """Foreground ``{value: name}``."""
        return {int(e["value"]): str(e["name"]) for e in self.labels if int(e["value"]) > 0}


def model_card_path(checkpoint: str | os.PathLike) -> Path:
    """The card of ``checkpoint``: the same path with ``.json`` (``models/model.pt`` -> ``models/model.json``)."""
    return Path(checkpoint).with_suffix(".json")


def read_model_card(checkpoint: str | os.PathLike) -> ModelCard | None:
    """The model card beside ``checkpoint``, or ``None`` when there is none.

    Raises:
        UserInputError: the card exists but is not valid JSON or not a model card.
    """
    path = model_card_path(checkpoint)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserInputError(f"model card {path} cannot be read ({err}); remove it or re-train") from err
    if not isinstance(data, dict):
        raise UserInputError(f"model card {path} is not a JSON object; remove it or re-train")
    return ModelCard.from_dict(data, source=path)


def write_model_card(checkpoint: str | os.PathLike, card: ModelCard, overwrite: bool = True) -> Path:
    """Write ``card`` beside ``checkpoint`` atomically; fills :attr:`ModelCard.version` and ``created``."""
    from . import __version__

    card.version = card.version or __version__
    card.created = card.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = model_card_path(checkpoint)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the network weights of a checkpoint written by training (rules in the module docstring).

    Raises:
        UserInputError: the file is missing or unreadable, holds no state dict, or has non-finite weights.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"checkpoint {path} not found; train the bundle first (it writes models/model.pt) or give the weights: "
            "--checkpoint PATH (ultralight3d predict/export/evaluate) or --ckpt_path PATH (python -m monai.bundle run)"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means the same thing to the user
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")[:160]
        raise UserInputError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {first}); pass a .pt file "
            "written by training (weights only: a pickled module or optimizer object is refused)"
        ) from err
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserInputError(
            f"checkpoint {path} is not a model state dict (nor a dict holding one under 'model'); "
            "pass the model.pt written by training"
        )
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserInputError(
            f"checkpoint {path} has non-finite weights in {len(bad)} of {len(obj)} tensors "
            f"(first: {bad[0]}); training diverged: use an earlier checkpoint or re-train"
        )
    return obj


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights of ``path`` into ``model`` (strict) and return ``model``.

    Raises:
        UserInputError: as :func:`load_state_dict`, or the weights do not fit the network (one line, with the first
            mismatch).
    """
    state = load_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0])[:300] if lines else type(err).__name__
        raise UserInputError(
            f"checkpoint {path} does not fit the network ({detail}); use the checkpoint trained with "
            "this bundle, or the variant/classes recorded in its model card"
        ) from err
    return model
