"""Bundles for inference: the one loader of a bundle's configs (:func:`load_bundle`), and the ``configs/inference.json``
template every bundle ships (:data:`INFERENCE_TEMPLATE`).

:func:`load_bundle` is used by ``predict`` (:meth:`Predictor.from_bundle`), ``export`` and ``evaluate``: it merges the
config files, applies ``{id: value}`` overrides, finds the weights and their model card (``models/model.json``,
:mod:`ultralight3d.checkpoint`), and, when a card is present, takes the network, channels, class table, protocol and
patch size from the card (an override contradicting the card is one clear error). Without a card the bundle config
decides, as before.

The template follows the model-zoo conventions, so ``python -m monai.bundle run --config_file
configs/inference.json`` is the documented way to run a bundle and tools that drive bundles by their standard ids
(MONAI Label's ``BundleInferTask``, model-zoo scripts) can use it:

* ``imports``, ``bundle_root``, ``device``, ``ckpt_path`` (default ``models/model.pt``), ``dataset_dir``,
  ``output_dir``; ``model_card`` (the card beside ``ckpt_path``), whose facts become the defaults of ``protocol``,
  ``transform_params``, ``in_channels``, ``num_classes``, ``channels``, ``model_name`` and ``roi_size``
  (:func:`card_default`);
* ``network_def`` (from the card when present) and ``network`` (on ``device``);
* ``preprocessing``: a ``Compose`` of ``loader`` (:class:`~ultralight3d.inference.workflow.LoadCased`, predict's
  reader) followed by the transforms of :func:`ultralight3d.inference.build_preprocessing`, the one pipeline predict
  uses too (its ``predictor`` gets ``strip_loaders(@preprocessing)``);
* ``datalist`` (the cases of ``dataset_dir``, nnU-Net channel files grouped), ``dataset``, ``dataloader``;
* ``inferer``: MONAI's ``SlidingWindowInferer`` with the roi size, overlap and Gaussian blending of predict;
* ``postprocessing``: softmax, argmax, ``Invertd`` back onto the input grid, the protocol's
  :class:`~ultralight3d.inference.PostprocessLabelsd` (``postprocessing_rules``) and ``writer``
  (:class:`~ultralight3d.inference.workflow.WritePredictiond`, the files predict writes);
* ``handlers``: MONAI's ``CheckpointLoader`` (``load_path: @ckpt_path``, ``load_dict: {model: @network}``), then the
  CPU fast path (:class:`~ultralight3d.inference.workflow.OptimizeForInference`) and ``StatsHandler``;
* ``evaluator``: MONAI's ``SupervisedEvaluator``; ``initialize`` checks settings, weights (one line naming
  ``--ckpt_path``), threads and outputs before anything is computed; ``run`` is ``$@evaluator.run()``;
* ``predictor``: the :class:`ultralight3d.inference.Predictor` that ``ultralight3d predict --bundle`` builds from the
  same ids (``network_def``, ``preprocessing``, ``roi_size``, ``overlap`` ...).

Run it like any model-zoo bundle::

    python -m monai.bundle run --config_file bundles/feta_ultralight_unet3d/configs/inference.json \\
        --dataset_dir scans/ --output_dir out/

Example::

    >>> bundle = load_bundle("bundles/custom_ultralight_unet3d", checkpoint="runs/r1/model.pt")
    >>> bundle.model_name, bundle.num_classes, bundle.protocol     # from runs/r1/model.json when it exists
    ('ultralight_unet3d_s', 5, 'generic')
    >>> net = bundle.network                                        # weights loaded, eval mode, CPU
    >>> predictor = bundle.build_predictor()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from ..checkpoint import ModelCard, load_weights, model_card_path, read_model_card
from ..errors import UserInputError
from ..labels import LabelTable, read_label_table

if TYPE_CHECKING:
    from monai.bundle import ConfigParser

    from .predictor import Predictor

__all__ = [
    "CARD_FIELDS",
    "INFERENCE_TEMPLATE",
    "LoadedBundle",
    "card_default",
    "label_on_input_grid",
    "load_bundle",
    "code_expressions",
    "is_trusted_location",
]

logger = logging.getLogger("ultralight3d.inference")

#: bundle id -> model-card field that sets its default when ``ckpt_path`` has a card (``models/model.json``).
CARD_FIELDS: dict[str, str] = {
    "protocol": "protocol",
    "transform_params": "transform_params",
    "in_channels": "in_channels",
    "num_classes": "out_channels",
    "channels": "channel_names",
    "model_name": "model_name",
    "roi_size": "patch_size",
}

_WORKFLOW = "ultralight3d.inference.workflow"


def card_default(bundle_id: str, value: Any) -> str:
    """The config value of a card-described id: the model card's fact when ``ckpt_path`` has a card, else
    ``value`` (a JSON value, or a ``$`` expression); a command-line override replaces it and so wins over both.

    Example::

        >>> card_default("roi_size", [64, 64, 64])
        "$ultralight3d.inference.workflow.card_value(@model_card, 'patch_size', [64, 64, 64])"
    """
    field = CARD_FIELDS[bundle_id]
    expr = value[1:] if isinstance(value, str) and value.startswith("$") else repr(value)
    return f"${_WORKFLOW}.card_value(@model_card, {field!r}, {expr})"


def label_on_input_grid(preprocessing: str) -> list[dict[str, Any]]:
    """The config transforms that turn the network's ``pred`` logits into a label map on the input's grid: softmax,
    argmax (:class:`~ultralight3d.transforms.ChannelArgmaxd`, MONAI's ``AsDiscreted(argmax=True)`` without its
    strided ``torch.argmax``), then the inverse of ``preprocessing`` (a config reference such as
    ``"@preprocessing"``) with nearest interpolation. Shared by ``inference.json`` and ``evaluate.json``
    (``tools/generate_bundles.py``)."""
    return [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "ultralight3d.transforms.ChannelArgmaxd", "keys": "pred"},
        {
            "_target_": "Invertd",
            "keys": "pred",
            "transform": preprocessing,
            "orig_keys": "image",
            "nearest_interp": True,
            "to_tensor": True,
        },
    ]


INFERENCE_TEMPLATE: dict[str, Any] = {
    "imports": [
        "$import os",
        "$import torch",
        "$import ultralight3d",
        "$import ultralight3d.inference",
        "$import ultralight3d.inference.predictor",
        "$import ultralight3d.inference.preprocessing",
        f"$import {_WORKFLOW}",
        "$import ultralight3d.bundle",
        "$import ultralight3d.transforms",
    ],
    "bundle_root": "$ultralight3d.bundle.find_bundle_root()",
    "device": "$ultralight3d.bundle.select_device()",
    "stitch_device": "auto",
    "threads": None,
    "ckpt_path": "$@bundle_root + '/models/model.pt'",
    "model_card": f"${_WORKFLOW}.read_card(@ckpt_path)",
    "onnx_path": "$@bundle_root + '/models/model.onnx'",
    "labels_file": "$@bundle_root + '/models/labels.csv'",
    "engine": "auto",
    "precision": "auto",
    "dataset_dir": "$@bundle_root + '/data'",
    "output_dir": "$@bundle_root + '/eval'",
    "overwrite": False,
    "seg_nrrd": True,
    "dicom_seg": True,
    "per_class": False,
    "roi_subset": None,
    "protocol": card_default("protocol", "generic"),
    "transform_params": card_default("transform_params", {}),
    "in_channels": card_default("in_channels", 1),
    "num_classes": card_default("num_classes", 2),
    "channels": card_default(
        "channels", "$ultralight3d.inference.preprocessing.channel_names(@protocol, @in_channels)"
    ),
    "labels": f"${_WORKFLOW}.label_table(@model_card, @labels_file, @protocol)",
    "model_name": card_default("model_name", "ultralight_unet3d_base"),
    "network_def": {
        "_target_": f"{_WORKFLOW}.create_network",
        "card": "@model_card",
        "model_name": "@model_name",
        "spatial_dims": 3,
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
    },
    "network": "$@network_def.to(@device)",
    "datalist": f"${_WORKFLOW}.find_inputs(@dataset_dir, @channels)",
    "loader": {"_target_": f"{_WORKFLOW}.LoadCased", "keys": "image", "channels": "@channels"},
    "preprocessing": {
        "_target_": "Compose",
        "transforms": (
            "$[@loader] + list(ultralight3d.inference.preprocessing.build_preprocessing(@protocol, "
            "dict(@transform_params, in_channels=@in_channels)).transforms)"
        ),
    },
    "dataset": {
        "_target_": "Dataset",
        "data": f"${_WORKFLOW}.data_items(@datalist, @channels)",
        "transform": "@preprocessing",
    },
    "dataloader": {
        "_target_": "DataLoader",
        "dataset": "@dataset",
        "batch_size": 1,
        "shuffle": False,
        "num_workers": 0,
    },
    "roi_size": card_default("roi_size", [96, 96, 96]),
    "sw_batch_size": 2,
    "overlap": 0.5,
    "tta": False,
    "amp": True,
    "optimize": True,
    "progress": True,
    "inferer": {
        "_target_": "SlidingWindowInferer",
        "roi_size": "@roi_size",
        "sw_batch_size": "@sw_batch_size",
        "overlap": "@overlap",
        "mode": "gaussian",
        "sw_device": "@device",
        "progress": "@progress",
    },
    "postprocessing_rules": f"${_WORKFLOW}.postprocessing_rules(@protocol, @labels, @num_classes)",
    "writer": {
        "_target_": f"{_WORKFLOW}.WritePredictiond",
        "keys": "pred",
        "output_dir": "@output_dir",
        "labels": "@labels",
        "num_classes": "@num_classes",
        "seg_nrrd": "@seg_nrrd",
        "dicom_seg": "@dicom_seg",
        "per_class": "@per_class",
        "roi_subset": "@roi_subset",
        "overwrite": "@overwrite",
        "model_name": "@model_name",
        "run_info": {
            "checkpoints": "$[str(@ckpt_path)]",
            "roi_size": "@roi_size",
            "overlap": "@overlap",
            "sw_batch_size": "@sw_batch_size",
            "tta": False,
            "amp": "@amp",
            "device": "$str(@device)",
            "protocol": "@protocol",
        },
    },
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            *label_on_input_grid("@preprocessing"),
            {
                "_target_": "ultralight3d.inference.postprocessing.PostprocessLabelsd",
                "keys": "pred",
                "rules": "@postprocessing_rules",
            },
            "@writer",
        ],
    },
    "handlers": [
        {"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"}},
        {"_target_": f"{_WORKFLOW}.OptimizeForInference", "enabled": "@optimize", "device": "@device"},
        {"_target_": "StatsHandler", "iteration_log": False},
    ],
    "evaluator": {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@dataloader",
        "network": "@network",
        "inferer": "@inferer",
        "postprocessing": "@postprocessing",
        "val_handlers": "@handlers",
        "amp": f"${_WORKFLOW}.use_amp(@amp, @device)",
    },
    "predictor": {
        "_target_": "ultralight3d.inference.Predictor",
        "model": "$@network_def if @engine != 'onnxruntime' else @onnx_path",
        "checkpoint": "$@ckpt_path if @engine != 'onnxruntime' else None",
        "engine": "@engine",
        "precision": "@precision",
        "preprocessing": "$ultralight3d.inference.preprocessing.strip_loaders(@preprocessing)",
        "labels": "@labels_file",
        "channels": "@channels",
        "roi_size": "@roi_size",
        "sw_batch_size": "@sw_batch_size",
        "overlap": "@overlap",
        "mode": "gaussian",
        "device": "@device",
        "stitch_device": "@stitch_device",
        "amp": "@amp",
        "optimize": "@optimize",
        "tta": "@tta",
        "name": "@model_name",
        "progress": "@progress",
        "protocol": "@protocol",
    },
    "initialize": [
        f"${_WORKFLOW}.check_settings(@tta, @engine)",
        f"${_WORKFLOW}.check_weights(@ckpt_path, @network_def)",
        "$ultralight3d.inference.predictor.set_threads(@threads)",
        "$@writer.check_outputs(@dataset#data)",
    ],
    "run": ["$@evaluator.run()"],
    "finalize": [],
}


# ---------------------------------------------------------------------------------------------------- bundle loader
#: override ids that name what the model *is*; with a model card present they must agree with it.
_CARD_IDS = ("variant", "model_name", "in_channels", "num_classes", "protocol")


@dataclass
class LoadedBundle:
    """A bundle's configs merged with overrides and its model card: what predict, export and evaluate need.

    Attributes:
        bundle_dir: the bundle folder (absolute).
        config_files: the merged config files, in order.
        parser: the MONAI ``ConfigParser`` with every override (and the card's values) applied.
        checkpoint: the torch weights (``ckpt_path``), None when the config sets none.
        onnx_path: the ONNX model (``onnx_path``), None when the config has none.
        engine: the ``engine`` id (``"auto"``, ``"torch"``, ``"openvino"`` or ``"onnxruntime"``).
        card: the model card of the weights, None when there is none.
        card_path: where the card was read from.
        model_name: registry name of the network.
        in_channels: input channels.
        num_classes: output classes incl. background.
        protocol: the dataset protocol (``transforms/<protocol>.json``).
        transform_params: protocol overrides (``get_pipeline(protocol, ..., **transform_params)``).
        labels: the class table (card, else ``labels_file``), None when neither exists.
        roi_size: sliding-window ROI (the card's patch size unless overridden), None when the config has none.
    """

    bundle_dir: Path
    config_files: list[Path]
    parser: ConfigParser
    checkpoint: Path | None
    onnx_path: Path | None
    engine: str
    card: ModelCard | None
    card_path: Path | None
    model_name: str | None
    in_channels: int | None
    num_classes: int | None
    protocol: str | None
    transform_params: dict[str, Any] = field(default_factory=dict)
    labels: LabelTable | None = None
    roi_size: tuple[int, ...] | None = None
    _network: nn.Module | None = field(default=None, repr=False)
    _card_labels: bool = field(default=False, repr=False)

    @property
    def source(self) -> Path:
        """The last config file (named in error messages)."""
        return self.config_files[-1]

    @property
    def network(self) -> nn.Module:
        """``network_def`` with the weights of :attr:`checkpoint` loaded, in eval mode on the CPU (built once)."""
        if self._network is None:
            self._network = self.build_network()
        return self._network

    def build_network(self, weights: bool = True) -> nn.Module:
        """A new instance of ``network_def`` (eval mode, CPU), with the weights of :attr:`checkpoint` when asked.

        Raises:
            UserInputError: no ``network_def``, it does not build, no checkpoint, or weights that do not fit.
        """
        if "network_def" not in self.parser:
            raise UserInputError(f"{self.source} has no 'network_def'; this needs the bundle's network definition")
        model = _parse(self.parser, "network_def", self.source)
        if not isinstance(model, nn.Module):
            raise UserInputError(f"network_def in {self.source} did not create a torch module")
        if weights:
            if self.checkpoint is None:
                raise UserInputError(
                    f"{self.source} sets no ckpt_path; pass --checkpoint PATH (or --ckpt_path PATH to monai.bundle run)"
                )
            load_weights(model, self.checkpoint)
        return model.cpu().eval()

    def build_predictor(self) -> Predictor:
        """The bundle's ``predictor`` id (:class:`ultralight3d.inference.Predictor`), weights loaded, with the
        facts of the bundle's protocol (class terminology, declared post-processing: :meth:`Predictor.use_protocol`).

        Raises:
            UserInputError: no ``predictor`` id, or building it failed (one line).
        """
        if "predictor" not in self.parser:
            raise UserInputError(f"{self.source} has no 'predictor' id; regenerate it from the ultralight3d template")
        predictor = _parse(self.parser, "predictor", self.source)
        if self._card_labels and self.labels is not None:
            predictor.labels = self.labels
        weights = self.onnx_path if self.engine == "onnxruntime" else self.checkpoint
        predictor.checkpoints = [str(weights)] if weights is not None else []
        if self.protocol:
            from .predictor import _preprocessing_key

            predictor.preprocessing_key = _preprocessing_key(self.protocol, self.transform_params)
            try:
                predictor.use_protocol(self.protocol)  # class terminology + declared post-processing
            except UserInputError as err:
                raise UserInputError(f"{self.source}: protocol {self.protocol!r}: {err}") from err
        return predictor


# ---------------------------------------------------------------------------------------------------- trust
_WARNED: set[str] = set()


def code_expressions(config: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(id, expression)`` of every ``$`` Python expression in a parsed bundle config (nested dicts and lists)."""
    if isinstance(config, str):
        if config.startswith("$"):
            yield path, config
    elif isinstance(config, Mapping):
        for key, value in config.items():
            yield from code_expressions(value, f"{path}#{key}" if path else str(key))
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            yield from code_expressions(value, f"{path}#{i}")


def is_trusted_location(path: str | os.PathLike) -> bool:
    """True for files inside the installed ``ultralight3d`` package or, in a source checkout, its repository (the
    bundles shipped with ultralight3d)."""
    package = Path(__file__).resolve().parents[1]
    roots = [package]
    if (package.parent / "pyproject.toml").is_file() and (package.parent / "bundles").is_dir():
        roots.append(package.parent)
    p = Path(path).resolve()
    return any(p == r or r in p.parents for r in roots)


def _warn_code(bundle: Path, files: Sequence[Path], config: Any) -> None:
    """Warn once per bundle when configs from outside the package hold ``$`` expressions: they run as Python."""
    if all(is_trusted_location(f) for f in files):
        return
    found = list(code_expressions(config))
    key = str(bundle)
    if not found or key in _WARNED:
        return
    _WARNED.add(key)
    first_id, first = found[0]
    logger.warning(
        "bundle %s is not part of ultralight3d and its configs hold %d Python expression(s) (e.g. %s = %r) that "
        "run with your permissions when it loads; use only bundles from sources you trust",
        bundle,
        len(found),
        first_id,
        first[:80],
    )


def _innermost_user_error(err: BaseException) -> UserInputError | None:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, UserInputError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _parse(parser: ConfigParser, key: str, source: Path) -> Any:
    """``parser.get_parsed_content(key)``; errors raised while instantiating come back as one line."""
    try:
        return parser.get_parsed_content(key)
    except Exception as err:  # MONAI wraps errors raised while instantiating: surface the real one
        user = _innermost_user_error(err)
        if user is not None:
            raise UserInputError(str(user)) from err
        root: BaseException = err
        while (root.__cause__ or root.__context__) is not None:
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        first = (str(root).strip().splitlines() or [""])[0][:300]
        raise UserInputError(f"cannot build '{key}' of {source}: {type(root).__name__}: {first}") from err


def _optional(parser: ConfigParser, key: str, source: Path) -> Any:
    return _parse(parser, key, source) if key in parser else None


def _default_config_files(bundle: Path) -> list[Path]:
    found = [bundle / "configs" / n for n in ("inference.json", "train.json") if (bundle / "configs" / n).is_file()]
    if not found:
        raise UserInputError(
            f"{bundle / 'configs' / 'inference.json'} not found; --bundle must be a bundle folder "
            "holding configs/inference.json (e.g. bundles/prostate_ultralight_unet3d)"
        )
    return found[:1]


def _check_card(
    card: ModelCard, card_path: Path, overrides: Mapping[str, Any], parser: ConfigParser, source: Path
) -> None:
    """An override naming what the model is must agree with its card (one line naming both)."""
    hint = "pass the matching checkpoint"
    if "variant" in overrides or "model_name" in overrides:
        key = "variant" if "variant" in overrides else "model_name"
        want = _optional(parser, "model_name", source)
        if want != card.model_name:
            raise UserInputError(
                f"--{key} {overrides[key]} but {card_path} says {card.model_name}; drop --{key} or {hint}"
            )
    checks = {"in_channels": card.in_channels, "num_classes": card.out_channels, "protocol": card.protocol}
    for key, have in checks.items():
        if key in overrides and have is not None and str(overrides[key]) != str(have):
            raise UserInputError(f"--{key} {overrides[key]} but {card_path} says {key} {have}; drop --{key} or {hint}")


def _apply_card(parser: ConfigParser, card: ModelCard, overrides: Mapping[str, Any]) -> None:
    """Put the card's facts into the config so every id that refers to them (``@model_name`` ...) follows."""
    values: dict[str, Any] = {
        "model_name": card.model_name,
        "in_channels": int(card.in_channels),
        "num_classes": int(card.out_channels),
    }
    if card.protocol:
        values["protocol"] = card.protocol
    if card.transform_params:
        values["transform_params"] = dict(card.transform_params)
    if card.patch_size:
        values["roi_size"] = [int(s) for s in card.patch_size]
    if card.channel_names:
        values["channels"] = [str(c) for c in card.channel_names]
    if card.labels:
        values["labels_file"] = None  # the card's table is set on the predictor once it is built
    for key, value in values.items():
        if key in parser and key not in overrides:
            parser[key] = value
    if "network_def" in parser and not any(k.split("#")[0] == "network_def" for k in overrides):
        kwargs = {"in_channels": int(card.in_channels), "out_channels": int(card.out_channels), **card.network_kwargs}
        parser["network_def"] = {"_target_": "ultralight3d.create_model", "model_name": card.model_name, **kwargs}


def load_bundle(
    bundle_dir: str | os.PathLike,
    config_files: Sequence[str | os.PathLike] | None = None,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> LoadedBundle:
    """Read a bundle's configs, apply overrides, find its weights and model card.

    Args:
        bundle_dir: bundle folder (holding ``configs/`` and ``models/``).
        config_files: config files to merge (in order); default ``configs/inference.json``, else
            ``configs/train.json``.
        overrides: ``{id: value}`` set after the files (``"num_classes"``, ``"overlap"``, ``"inferer#mode"`` ...);
            None values are skipped, unknown ids raise. ``variant``, ``model_name``, ``in_channels``,
            ``num_classes`` and ``protocol`` must agree with the model card when there is one.
        checkpoint: weights instead of ``models/model.pt``; a ``.onnx`` file sets ``onnx_path`` (and the
            ``onnxruntime`` engine unless ``overrides`` name another).

    Returns:
        a :class:`LoadedBundle`; its network is built on first use.

    A bundle whose configs lie outside the ultralight3d package (and repository) and hold ``$`` expressions gets
    one warning per process: those expressions are Python code and run while the bundle loads.

    Raises:
        UserInputError: missing bundle or config, unknown override id, unreadable model card, an override that
            contradicts the card.
    """
    from monai.bundle import ConfigParser

    bundle = Path(bundle_dir).resolve()
    files = [Path(f) for f in config_files] if config_files else _default_config_files(bundle)
    for f in files:
        if not f.is_file():
            raise UserInputError(f"config file {f} not found; pass existing files to --config-file")
    source = files[-1]
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    _warn_code(bundle, files, parser.get())
    parser["bundle_root"] = str(bundle)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    settable = [str(k) for k in parser.get() if not str(k).startswith("_")]
    for key, value in given.items():
        if key.split("#")[0] not in parser.get():
            raise UserInputError(f"{source} has no id '{key}'; ids that can be set: {', '.join(settable)}")
        parser[key] = value
    if checkpoint is not None:
        ckpt = Path(checkpoint).resolve()
        if ckpt.suffix.lower() == ".onnx":
            parser["onnx_path"] = str(ckpt)
            if "engine" in parser and "engine" not in given:
                parser["engine"] = "onnxruntime"
        else:
            parser["ckpt_path"] = str(ckpt)

    engine = str(_optional(parser, "engine", source) or "torch")
    ckpt_value = _optional(parser, "ckpt_path", source)
    onnx_value = _optional(parser, "onnx_path", source)
    ckpt_path = Path(ckpt_value) if ckpt_value else None
    onnx_path = Path(onnx_value) if onnx_value else None
    weights = onnx_path if engine == "onnxruntime" else ckpt_path
    card = read_model_card(weights) if weights is not None else None
    card_path = model_card_path(weights) if card is not None and weights is not None else None
    hide_card = "model_card" in parser and "model_card" not in given
    if hide_card:  # ids default to the card's facts (card_default): compare overrides with the bundle's own values
        parser["model_card"] = None
    if card is not None and card_path is not None:
        _check_card(card, card_path, given, parser, source)
        _apply_card(parser, card, given)
    if hide_card:  # the card of these weights (ckpt_path may be an ONNX file's card, or a --checkpoint)
        parser["model_card"] = card
        if card is not None and isinstance(parser.get("network_def"), dict) and "card" in parser["network_def"]:
            parser["network_def#card"] = None  # network_def was overridden by id: build it as given

    labels: LabelTable | None = None
    card_labels = bool(card is not None and card.labels and "labels_file" not in given)
    if card_labels and card is not None:
        labels = LabelTable.from_records(card.labels, source=str(card_path))
    else:
        labels_file = _optional(parser, "labels_file", source)
        if labels_file and Path(labels_file).is_file():
            labels = read_label_table(labels_file)
    roi = _optional(parser, "roi_size", source)
    in_ch, n_cls = _optional(parser, "in_channels", source), _optional(parser, "num_classes", source)
    model_name = _optional(parser, "model_name", source)
    return LoadedBundle(
        bundle_dir=bundle,
        config_files=files,
        parser=parser,
        checkpoint=ckpt_path,
        onnx_path=onnx_path,
        engine=engine,
        card=card,
        card_path=card_path,
        model_name=str(model_name) if model_name is not None else None,
        in_channels=int(in_ch) if in_ch is not None else None,
        num_classes=int(n_cls) if n_cls is not None else None,
        protocol=_optional(parser, "protocol", source),
        transform_params=dict(_optional(parser, "transform_params", source) or {}),
        labels=labels,
        roi_size=tuple(int(r) for r in roi) if roi is not None else None,
        _card_labels=card_labels,
    )
