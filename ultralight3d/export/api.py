"""Export a trained model: from a bundle (:func:`export_bundle`), from a checkpoint (:func:`export_checkpoint`) or
from a network in memory (:func:`export_model`), to ONNX and/or TorchScript, each checked for parity with PyTorch.

The weights are read by :mod:`ultralight3d.checkpoint` and the bundle by
:func:`ultralight3d.inference.bundle_config.load_bundle`; when a model card (``model.json``) travels with the
weights, it is copied beside the exported files, so ``predict --engine onnxruntime --checkpoint out/model.onnx``
needs no other option.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..checkpoint import ModelCard, load_weights, model_card_path, read_model_card, write_model_card
from ..errors import UserInputError
from ..inference.engines import OnnxRuntimeModel, export_form
from .formats import export_onnx, export_torchscript
from .parity import check_parity

__all__ = ["FORMATS", "export_model", "export_checkpoint", "export_bundle"]

logger = logging.getLogger("ultralight3d.export")

#: export formats and the file each writes into the output folder.
FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}


def _check_formats(formats: Sequence[str]) -> None:
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UserInputError(f"unknown export format(s) {unknown or list(formats)}; choose from {', '.join(FORMATS)}")


def export_model(
    model: nn.Module,
    output_dir: str | os.PathLike,
    formats: Sequence[str] = ("onnx", "torchscript"),
    example_size: Sequence[int] = (96, 96, 96),
    opset: int = 17,
    parity: bool = True,
    atol: float = 1e-3,
    overwrite: bool = False,
    card: ModelCard | None = None,
    strict: bool = True,
    name: str = "model",
    fold: bool = True,
) -> dict[str, Any]:
    """Write ``model`` as ``<output_dir>/model.onnx`` and/or ``model.ts`` and check each against PyTorch.

    Args:
        model: the network (switched to eval mode, CPU).
        output_dir: where to write.
        formats: any of ``"onnx"``, ``"torchscript"``.
        example_size: spatial size for tracing and the parity check (multiples of the network's divisor).
        opset: ONNX opset.
        parity: run :func:`check_parity` on each export.
        atol: parity tolerance.
        overwrite: replace existing files.
        card: the model card of the weights; written as ``<output_dir>/model.json`` (and into the TorchScript
            archive) unless it already lives there.
        strict: raise when a parity check exceeds ``atol`` (False: report it in the result only).
        name: what the error messages call the model.
        fold: ONNX: write the deployment graph (:func:`~ultralight3d.inference.engines.export_form`: batch norms
            folded, the 1x1 depthwise branch as an affine, the channel shuffle folded into the projection weights),
            the graph ``predict --engine openvino`` compiles; the same logits to float32 rounding, and the shuffle's
            transpose was OpenVINO's costliest copy. False: the plain modules' graph. The parity check compares
            either with the plain network.

    Returns:
        ``{"onnx": Path, "torchscript": Path, "card": Path, "parity": {format: ParityResult}}`` (keys for what was
        written).

    Raises:
        UserInputError: unknown format, a size that is not a multiple of the divisor, existing files without
            ``overwrite``, or (``strict``) a failed parity check.
    """
    _check_formats(formats)
    size = [int(s) for s in example_size]
    if len(size) == 1:
        size *= 3
    out_dir = Path(output_dir)
    model = model.cpu().eval()
    result: dict[str, Any] = {"parity": {}}
    extra = {"model.json": json.dumps(card.to_dict())} if card is not None else None
    if "onnx" in formats:
        graph = export_form(model) if fold else model
        path = export_onnx(graph, out_dir / FORMATS["onnx"], size, opset=opset, overwrite=overwrite)
        result["onnx"] = path
        if parity:
            result["parity"]["onnx"] = check_parity(model, OnnxRuntimeModel(path), size, atol=atol)
    if "torchscript" in formats:
        path = export_torchscript(model, out_dir / FORMATS["torchscript"], size, overwrite=overwrite, extra_files=extra)
        result["torchscript"] = path
        if parity:
            result["parity"]["torchscript"] = check_parity(model, torch.jit.load(str(path)), size, atol=atol)
    if card is not None:
        target = model_card_path(out_dir / FORMATS["onnx"])
        if read_model_card(target) != card:
            result["card"] = write_model_card(target, card, overwrite=overwrite)
        else:
            result["card"] = target
    for fmt, res in result["parity"].items():
        logger.info(
            "parity %s vs torch: max |diff| %.2e, argmax agreement %.4f", fmt, res.max_abs_diff, res.argmax_agreement
        )
        if strict and not res.passed:
            raise UserInputError(
                f"{fmt} export of {name} differs from PyTorch by {res.max_abs_diff:.2e} (> {atol}); "
                "do not deploy it - report this with the model name and torch/onnx versions"
            )
    return result


def export_checkpoint(
    checkpoint: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    model_name: str | None = None,
    in_channels: int | None = None,
    out_channels: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Export the weights of ``checkpoint`` (or, with ``checkpoint=None``, random weights of ``model_name``).

    The network is rebuilt from the checkpoint's model card when it has one; ``model_name``, ``in_channels`` and
    ``out_channels`` are then optional and must agree with the card. Without a card ``model_name`` is required
    (channels default to 1 in, 2 out).

    Args:
        checkpoint: ``model.pt`` written by training, or None for untrained weights (testing).
        output_dir: where to write.
        model_name: registry name (:func:`ultralight3d.list_models`).
        in_channels, out_channels: network channels (output classes incl. background).
        kwargs: :func:`export_model` options (``formats``, ``example_size``, ``opset``, ``parity``, ``atol``,
            ``overwrite``, ``strict``, ``fold``).

    Raises:
        UserInputError: unknown model, an option contradicting the card, unreadable or unfitting weights.
    """
    from ..registry import create_model, list_models

    card = read_model_card(checkpoint) if checkpoint is not None else None
    if card is not None:
        where = model_card_path(checkpoint)  # type: ignore[arg-type]
        for flag, given, have in (
            ("--model", model_name, card.model_name),
            ("--in-channels", in_channels, card.in_channels),
            ("--out-channels", out_channels, card.out_channels),
        ):
            if given is not None and str(given) != str(have):
                raise UserInputError(
                    f"{flag} {given} but {where} says {have}; drop {flag} or pass the matching checkpoint"
                )
        model_name = card.model_name
        net_kwargs: dict[str, Any] = {
            "in_channels": card.in_channels,
            "out_channels": card.out_channels,
            **card.network_kwargs,
        }
    else:
        if model_name is None:
            raise UserInputError(
                f"{checkpoint} has no model card (model.json beside it); pass --model NAME "
                "(and --in-channels/--out-channels)"
                if checkpoint is not None
                else "pass --model NAME to export untrained weights"
            )
        net_kwargs = {"in_channels": in_channels or 1, "out_channels": out_channels or 2}
    if model_name not in list_models():
        raise UserInputError(f"unknown model '{model_name}'; choose one of: {', '.join(list_models())}")
    model = create_model(model_name, **net_kwargs)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return export_model(model, output_dir, card=card, name=str(checkpoint or model_name), **kwargs)


def export_bundle(
    bundle_dir: str | os.PathLike,
    formats: Sequence[str] = ("onnx", "torchscript"),
    checkpoint: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    example_size: Sequence[int] = (96, 96, 96),
    config_files: Sequence[str | os.PathLike] | None = None,
    overrides: dict[str, Any] | None = None,
    opset: int = 17,
    parity: bool = True,
    atol: float = 1e-3,
    overwrite: bool = False,
    strict: bool = True,
    fold: bool = True,
) -> dict[str, Any]:
    """Export a trained bundle to ``models/model.onnx`` and/or ``models/model.ts`` and check parity with PyTorch.

    Args:
        bundle_dir: bundle folder.
        formats: any of ``"onnx"``, ``"torchscript"``.
        checkpoint: weights (default ``<bundle>/models/model.pt``); its model card, when present, defines the network.
        output_dir: where to write (default ``<bundle>/models``).
        example_size: spatial size for tracing and the parity check.
        config_files, overrides: see :func:`ultralight3d.inference.bundle_config.load_bundle`.
        opset: ONNX opset.
        parity: run :func:`check_parity` on each export.
        atol: parity tolerance.
        overwrite: replace existing files.
        strict: a failed parity check raises (False: it is only reported).
        fold: the ONNX deployment graph (default) or the plain modules' (see :func:`export_model`).

    Returns:
        as :func:`export_model`.

    Raises:
        UserInputError: bad bundle/checkpoint/format, or (``strict``) a parity check above ``atol``.
    """
    from ..inference.bundle_config import load_bundle

    _check_formats(formats)
    bundle = load_bundle(bundle_dir, config_files, overrides, checkpoint)
    out_dir = Path(output_dir) if output_dir else Path(bundle_dir) / "models"
    return export_model(
        bundle.network,
        out_dir,
        formats,
        example_size,
        opset=opset,
        parity=parity,
        atol=atol,
        overwrite=overwrite,
        card=bundle.card,
        strict=strict,
        name=str(bundle_dir),
        fold=fold,
    )
