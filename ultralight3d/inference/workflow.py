"""The model-zoo inference workflow of every bundle's ``configs/inference.json``.

``python -m monai.bundle run --config_file configs/inference.json`` runs a MONAI ``SupervisedEvaluator`` built from
the standard ids (``network_def``, ``preprocessing``, ``dataset``, ``dataloader``, ``inferer``, ``postprocessing``,
``handlers``, ``evaluator``); this module holds the ultralight3d pieces those ids are made of. Each piece calls the
same functions as ``ultralight3d predict`` (:class:`ultralight3d.inference.Predictor`), so both give the same label
map, voxel for voxel, in the input's exact geometry:

* cases: :func:`find_inputs` / :func:`data_items` find and name them with :func:`ultralight3d.io.discover_cases`
  (every image suffix of :mod:`ultralight3d.io.files`, nnU-Net ``_0000`` channel files grouped, DICOM series);
* reading: :class:`LoadCased` reads a case with :func:`ultralight3d.io.load_case` (the predictor's reader) and starts
  ``preprocessing``; the rest of ``preprocessing`` is :func:`ultralight3d.inference.build_preprocessing`, the one
  definition the predictor gets too (``strip_loaders(@preprocessing)``);
* network: :func:`create_network` builds it from the model card beside ``ckpt_path`` when there is one (as
  :func:`ultralight3d.inference.load_bundle` does for predict), :func:`check_weights` refuses missing or unfitting
  weights in one line before MONAI's ``CheckpointLoader`` loads them, and :class:`OptimizeForInference` swaps in the
  CPU fast path (:func:`ultralight3d.networks.optimize.optimize_for_inference`) as the predictor does;
* post-processing: softmax, argmax and ``Invertd`` (nearest) as in :meth:`Predictor.predict_image`, then
  :class:`~ultralight3d.inference.PostprocessLabelsd` with :func:`postprocessing_rules` (the rules the predictor
  takes from the protocol and its class table);
* writing: :class:`WritePredictiond` writes what predict writes (``<case>_seg.nii.gz``, ``<case>.seg.nrrd``,
  DICOM-SEG for DICOM input, ``labels.csv``/``.ctbl``, ``records/<case>.json``, ``summary.json``/``.csv``) with the
  writers of :mod:`ultralight3d.inference.outputs`. It is a ``SaveImaged``, so tools that drop savers from a
  bundle's ``postprocessing`` (MONAI Label's ``BundleInferTask``) drop it too.

Tools that drive a bundle by its ids take ``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing``
from the config and run them on their own data dicts: :class:`LoadCased` lets an already loaded image through, as
MONAI Label's ``LoadImageTensord`` does.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, SaveImaged

from ..checkpoint import ModelCard, load_state_dict, read_model_card
from ..errors import UserInputError
from ..io.cases import CaseSpec, discover_cases, load_case
from ..io.files import list_image_files, split_channel, strip_image_suffix
from ..io.volume import ImageData
from ..labels import LabelTable, read_label_table
from .postprocessing import Rules, rules_from_protocol

__all__ = [
    "read_card",
    "card_value",
    "create_network",
    "label_table",
    "postprocessing_rules",
    "find_inputs",
    "data_items",
    "image_to_metatensor",
    "LoadCased",
    "WritePredictiond",
    "OptimizeForInference",
    "check_settings",
    "check_weights",
    "use_amp",
]

logger = logging.getLogger("ultralight3d.inference")

#: data keys :class:`LoadCased` adds beside the image (plain strings and floats, so they survive batching).
CASE_KEY = "case"
INPUTS_KEY = "case_inputs"
DICOM_KEY = "case_dicom_files"
START_KEY = "case_start"
READ_KEY = "case_read_s"


# ------------------------------------------------------------------------------------------------- model card
def read_card(ckpt_path: str | os.PathLike | None) -> ModelCard | None:
    """The model card beside ``ckpt_path`` (``model.pt`` -> ``model.json``), None without weights path or card.

    Raises:
        UserInputError: the card exists but cannot be read.
    """
    if ckpt_path is None or not str(ckpt_path):
        return None
    return read_model_card(ckpt_path)


def card_value(card: ModelCard | None, field: str, default: Any) -> Any:
    """``card.<field>`` when the card has it (not empty), else ``default`` (the bundle's own value).

    The model card describes the weights, so its facts win over the bundle's defaults; a bundle id given on the
    command line replaces the whole expression and so wins over both. A card that disagrees with the default is
    logged once per id.
    """
    if card is None:
        return default
    value = getattr(card, field, None)
    if value is None or (isinstance(value, (str, list, tuple, dict)) and not value):
        return default
    if isinstance(value, tuple):
        value = list(value)
    if value != default:
        logger.info("%s from the model card: %r (the bundle's default is %r)", field, value, default)
    return value


def create_network(card: ModelCard | None, model_name: str, **kwargs: Any) -> nn.Module:
    """``network_def``: the network the card describes (``create_model(card.model_name, **card.network_kwargs)``),
    or without a card :func:`ultralight3d.bundle.create_network` ``(model_name, **kwargs)``.

    Raises:
        UserInputError: unknown model name.
    """
    from ..bundle.network import create_network as build

    if card is not None:
        return build(card.model_name, **card.network_kwargs)
    return build(model_name, **kwargs)


def label_table(
    card: ModelCard | None, labels_file: str | os.PathLike | None, protocol: str | Mapping[str, Any] | None = None
) -> LabelTable | None:
    """The class table of the weights: the card's, else ``labels_file`` when it exists, else None; with the
    protocol's terminology added where a class has none (as :meth:`Predictor.use_protocol` does)."""
    table: LabelTable | None = None
    if card is not None and card.labels:
        table = LabelTable.from_records(card.labels, source=f"model card of {card.model_name}")
    elif labels_file and Path(labels_file).is_file():
        table = read_label_table(labels_file)
    if table is not None and protocol:
        table = table.with_terminology(LabelTable.from_protocol(protocol))
    return table


def postprocessing_rules(
    protocol: str | Mapping[str, Any] | None, labels: LabelTable | None, num_classes: int
) -> Rules:
    """The post-processing rules predict applies: the protocol's ``postprocessing`` table, kept only for classes
    whose name agrees with the class table, and only for values the table has (``Predictor.rules_for``)."""
    table = labels if labels is not None else LabelTable.generic(int(num_classes))
    rules = rules_from_protocol(protocol, labels) if protocol else {}
    return {v: r for v, r in rules.items() if v in table.values}


# ------------------------------------------------------------------------------------------------------ cases
def _dataset_dir_error(root: Path) -> UserInputError:
    return UserInputError(
        f"--dataset_dir {root} holds no images (NIfTI .nii/.nii.gz, NRRD, MHA/MHD, nnU-Net <case>_0000 channel "
        "files or DICOM series); pass --dataset_dir FOLDER with the scans to segment (or FOLDER/imagesTs)"
    )


def find_inputs(
    dataset_dir: str | os.PathLike, channels: Sequence[str] = ("image",), subfolder: str = "imagesTs"
) -> list[Any]:
    """Default ``datalist``: the cases of ``dataset_dir/imagesTs`` if that folder exists, else of ``dataset_dir``,
    found as ``ultralight3d predict -i`` finds them (:func:`ultralight3d.io.discover_cases`).

    Returns:
        one entry per case: a file path, a list of paths (one per channel: nnU-Net ``<case>_0000``, ``_0001`` ...
        grouped), or a :class:`~ultralight3d.io.CaseSpec` for a DICOM study.

    Raises:
        UserInputError: ``dataset_dir`` is missing or holds no images, or a case misses a channel file (one line
            naming ``--dataset_dir``).
    """
    root = Path(dataset_dir)
    if not root.exists():
        raise UserInputError(
            f"--dataset_dir {root} does not exist; pass --dataset_dir FOLDER holding the scans to segment"
        )
    if (root / subfolder).is_dir():
        root = root / subfolder
    try:
        specs = discover_cases(root, list(channels))
    except UserInputError as err:
        if root.is_dir() and not list_image_files(root):  # no image files and no DICOM series
            raise _dataset_dir_error(root) from err
        raise UserInputError(f"--dataset_dir: {err}") from err
    bad = [s for s in specs if s.error]
    if bad:
        raise UserInputError(f"--dataset_dir: {bad[0].error}")
    return [_entry(s) for s in specs]


def _entry(spec: CaseSpec) -> Any:
    if spec.is_dicom:
        return spec
    paths = [str(p) for p in spec.sources]
    return paths[0] if len(paths) == 1 else paths


def _spec(value: Any, channels: Sequence[str], case: str | None = None) -> CaseSpec:
    """One case from a ``datalist`` entry (path, list of channel paths or :class:`CaseSpec`), named ``case`` when
    given."""
    if isinstance(value, CaseSpec):
        return CaseSpec(str(case), value.sources, value.error) if case else value
    if isinstance(value, (str, os.PathLike)):
        specs = discover_cases(value, list(channels))
        if len(specs) != 1:
            raise UserInputError(
                f"{value} holds {len(specs)} cases; give it as --dataset_dir, or list its cases one by one in "
                "--datalist"
            )
        spec = specs[0]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
        stem = split_channel(strip_image_suffix(value[0]))[0]
        spec = CaseSpec(stem, [Path(v) for v in value])
    else:
        raise UserInputError(
            f"datalist entry {value!r} is not an image path or a list of paths (one per channel); fix --datalist"
        )
    if case:
        spec.case_id = str(case)
    return spec


def data_items(datalist: Any, channels: Sequence[str] = ("image",)) -> list[dict[str, Any]]:
    """``dataset#data``: ``[{"image": entry, "case": case id}]``, one per case of ``datalist`` (entries as
    :func:`find_inputs` gives them, or any file or folder predict accepts), with predict's unique case ids
    (``<name>``, ``<name>_2`` for a repeated name).

    Raises:
        UserInputError: an empty datalist, or an entry that is not a case (one line naming ``--datalist``).
    """
    entries = [datalist] if isinstance(datalist, (str, os.PathLike, CaseSpec)) else list(datalist or [])
    if not entries:
        raise UserInputError(
            "the bundle's datalist is empty; pass --dataset_dir FOLDER with images (or FOLDER/imagesTs) or "
            "--datalist \"['scan.nii.gz']\""
        )
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for entry in entries:
        try:
            if isinstance(entry, (str, os.PathLike)) and Path(entry).is_dir():
                specs = [s for s in discover_cases(entry, list(channels))]
                values = [_entry(s) for s in specs]
            else:
                specs, values = [_spec(entry, channels)], [entry]
        except UserInputError as err:
            raise UserInputError(f"--datalist: {err}") from err
        for spec, value in zip(specs, values):
            if spec.error:
                raise UserInputError(f"--datalist: {spec.error}")
            case = spec.case_id
            if case in seen:
                seen[case] += 1
                case = f"{case}_{seen[case]}"
            else:
                seen[case] = 1
            items.append({"image": value, CASE_KEY: case})
    return items


def image_to_metatensor(image: ImageData) -> MetaTensor:
    """The image as the predictor hands it to its preprocessing: ``MetaTensor (C, X, Y, Z)`` with the file's exact
    affine; its meta also keeps that affine (``original_affine``) and ``spatial_shape`` for the writer."""
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(image.array)),
        affine=torch.as_tensor(image.affine),
        meta={
            "filename_or_obj": image.source,
            "original_affine": np.asarray(image.affine, dtype=np.float64).copy(),
            "spatial_shape": np.asarray(image.spatial_shape, dtype=np.int64),
        },
    )


class LoadCased(MapTransform):
    """The loader at the head of ``preprocessing``: read one case as ``ultralight3d predict`` reads it.

    ``data[key]`` is a file (NIfTI/NRRD/MHA/MHD), a DICOM folder, a list of files (one per channel, the others
    resampled onto the first one's grid) or a :class:`~ultralight3d.io.CaseSpec`; it becomes a ``MetaTensor
    (C, X, Y, Z)`` with the file's exact affine (:func:`image_to_metatensor`). Also sets ``case`` (unless given),
    ``case_inputs``, ``case_dicom_files`` (newline-separated, empty for files) and timing keys. An image that is
    already a tensor passes unchanged (a tool that loads images itself, as MONAI Label does).

    Args:
        keys: image keys (default ``"image"``).
        channels: the bundle's channel names, in network order (their count is the input channel count).
        allow_missing_keys: skip absent keys.

    Raises:
        UserInputError: an unreadable or ill-formed image (one line naming the file, ``--dataset_dir`` and the fix).
    """

    def __init__(
        self, keys: KeysCollection = "image", channels: Sequence[str] = ("image",), allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = [str(c) for c in channels]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], torch.Tensor):
                continue
            start = time.time()
            try:
                spec = _spec(d[key], self.channels, d.get(CASE_KEY))
                image = load_case(spec, self.channels)
            except UserInputError as err:
                raise UserInputError(
                    f"{err} (an input of --dataset_dir/--datalist: fix or remove that file, or point --dataset_dir "
                    "at another folder)"
                ) from err
            d[key] = image_to_metatensor(image)
            d[CASE_KEY] = str(d.get(CASE_KEY) or spec.case_id)
            d[INPUTS_KEY] = spec.describe()
            d[DICOM_KEY] = "\n".join(str(f) for f in image.meta.get("dicom_files") or [])
            d[START_KEY] = start
            d[READ_KEY] = time.time() - start
        return d


# ----------------------------------------------------------------------------------------------------- writer
class WritePredictiond(SaveImaged):
    """The last step of ``postprocessing``: write a case's label map as ``ultralight3d predict`` does.

    Per case: ``<case>_seg.nii.gz`` (uint8, the input's exact affine in qform and sform), ``<case>.seg.nrrd`` (Slicer
    segments with names, colours and terminology), ``<case>_seg.dcm`` (DICOM-SEG, DICOM input only), with
    ``per_class`` ``<case>_classes/<class>_seg.nii.gz``, and the record ``records/<case>.json``; per folder
    ``labels.csv``/``labels.ctbl`` and ``summary.json``/``summary.csv`` rebuilt from every record in it. The label
    map is expected on the input grid (after ``Invertd``), shape ``(1, X, Y, Z)``.

    A ``SaveImaged`` subclass only so that tools which drop savers from a bundle's ``postprocessing`` (MONAI Label)
    drop this one too; MONAI's own saving is not used.

    Args:
        keys: label-map keys (default ``"pred"``).
        output_dir: output folder (created when needed).
        labels: class table (names, colours, terminology); None: ``label_1`` … up to ``num_classes``.
        num_classes: output classes incl. background (for the generic table).
        image_key: the key of the (preprocessed) image whose meta holds the input's affine and shape.
        seg_nrrd: also write ``<case>.seg.nrrd``.
        dicom_seg: also write a DICOM-SEG for DICOM input.
        per_class: also one binary mask per class.
        roi_subset: only these classes (names or values) in every output; the others become background.
        overwrite: replace existing outputs (otherwise :meth:`check_outputs` refuses them before any compute).
        model_name: model name in the DICOM-SEG, records and summary.
        run_info: more run settings for ``summary.json`` (roi size, overlap, checkpoint ...).
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_dir: str | os.PathLike = "eval",
        labels: LabelTable | None = None,
        num_classes: int = 2,
        image_key: str = "image",
        seg_nrrd: Any = True,
        dicom_seg: Any = True,
        per_class: Any = False,
        roi_subset: Sequence[str | int] | str | int | None = None,
        overwrite: Any = False,
        model_name: str = "ultralight3d",
        run_info: Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        from ..bundle.settings import as_bool

        super().__init__(keys, output_dir=str(output_dir), allow_missing_keys=allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.table = labels if labels is not None else LabelTable.generic(int(num_classes))
        self.image_key = image_key
        self.seg_nrrd = as_bool(seg_nrrd, "seg_nrrd")
        self.dicom_seg = as_bool(dicom_seg, "dicom_seg")
        self.per_class = as_bool(per_class, "per_class")
        self.overwrite = as_bool(overwrite, "overwrite")
        subset = [roi_subset] if isinstance(roi_subset, (str, int)) else list(roi_subset or [])
        self.subset: list[int] | None = self.table.resolve(subset, "--roi_subset") if subset else None
        self.model_name = str(model_name)
        self.run_info = dict(run_info or {})

    # -------------------------------------------------------------- planning
    def planned(self, case: str, dicom: bool = False) -> dict[str, Path]:
        """The files of one case (keys as in a record's ``outputs``); per-class masks are named by their folder."""
        out = self.output_dir
        paths = {"nifti": out / f"{case}_seg.nii.gz"}
        if self.seg_nrrd:
            paths["seg_nrrd"] = out / f"{case}.seg.nrrd"
        if self.dicom_seg and dicom:
            paths["dicom_seg"] = out / f"{case}_seg.dcm"
        if self.per_class:
            paths["classes"] = out / f"{case}_classes"
        return paths

    def check_outputs(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Refuse up front (before any compute) an output folder that is a file or cannot be written, outputs of
        these cases that exist already, or a ``labels.csv`` with other classes, unless ``overwrite``.

        Args:
            items: ``dataset#data`` (:func:`data_items`).

        Raises:
            UserInputError: one line naming ``--output_dir`` / ``--overwrite``.
        """
        from ..labels import label_csv_text
        from ..utils import check_writable

        out = self.output_dir
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--output_dir {out} is a file; pass --output_dir FOLDER")
        check_writable(out / "summary.json", overwrite=True)
        if self.overwrite:
            return
        existing = [
            p
            for item in items
            for p in self.planned(str(item[CASE_KEY]), isinstance(item["image"], CaseSpec)).values()
            if p.exists()
        ]
        if existing:
            names = ", ".join(str(p) for p in existing[:3]) + (" …" if len(existing) > 3 else "")
            raise UserInputError(
                f"{len(existing)} output file(s) already exist ({names}); pass --overwrite True to replace them, or "
                "another --output_dir"
            )
        csv = out / "labels.csv"
        if csv.is_file() and csv.read_text(encoding="utf-8") != label_csv_text(self.table):
            raise UserInputError(
                f"{csv} already exists with another class table; pass --overwrite True or another --output_dir"
            )

    # -------------------------------------------------------------- writing
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.write_case(d, key)
        return d

    def write_case(self, d: Mapping[Hashable, Any], key: Hashable) -> dict[str, str]:
        """Write the outputs and the record of the case in ``d`` (label map ``d[key]``); returns its files."""
        from . import outputs, records

        t0 = time.time()
        image = d[self.image_key]
        meta = dict(getattr(image, "meta", {}) or {})
        affine = _as_numpy(meta.get("original_affine", getattr(image, "affine", None)))
        if affine is None:
            raise UserInputError(f"data[{self.image_key!r}] has no affine; load the image with LoadCased")
        pred = d[key]
        arr = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
        lab = np.rint(arr[0] if arr.ndim == 4 else arr).astype(np.int64)
        shape = meta.get("spatial_shape")
        if shape is not None and tuple(int(s) for s in _as_numpy(shape).ravel()) != lab.shape:
            raise RuntimeError(
                f"the label map has shape {lab.shape}, the input {tuple(_as_numpy(shape).ravel())}: put Invertd "
                "before WritePredictiond in postprocessing"
            )
        label = lab.astype(outputs.label_dtype(int(lab.max()) if lab.size else 0))
        case = str(d.get(CASE_KEY) or strip_image_suffix(str(meta.get("filename_or_obj", "case"))))
        dicom_files = [f for f in str(d.get(DICOM_KEY) or "").split("\n") if f]
        table = self.table
        if self.subset:
            table = table.subset(self.subset)
            label = np.where(np.isin(label, self.subset), label, 0).astype(label.dtype)
        planned = self.planned(case, bool(dicom_files))
        files: dict[str, str] = {}
        files["nifti"] = str(outputs.write_nifti_label(label, affine, planned["nifti"], self.overwrite))
        if self.seg_nrrd:
            files["seg_nrrd"] = str(outputs.write_seg_nrrd(label, affine, table, planned["seg_nrrd"], self.overwrite))
        if "dicom_seg" in planned:
            files["dicom_seg"] = str(
                outputs.write_dicom_seg(
                    label, dicom_files, table, planned["dicom_seg"], self.overwrite, model_name=self.model_name
                )
            )
        if self.per_class:
            outputs.write_class_masks(label, affine, table, planned["classes"], self.overwrite)
            files["classes"] = str(planned["classes"])
        volumes = {str(k): v for k, v in outputs.label_volumes_ml(label, affine, table.values).items()}
        start = _as_float(d.get(START_KEY))
        timings = {"read": _as_float(d.get(READ_KEY)), "write": time.time() - t0}
        total = time.time() - start if start else sum(timings.values())
        outputs.write_color_tables(self.table, self.output_dir, overwrite=self.overwrite)
        records.write_record(
            self.output_dir,
            {
                "case": case,
                "status": "ok",
                "time_s": round(total, 3),
                "timings_s": {k: round(v, 4) for k, v in timings.items()},
                "volume_ml": volumes,
                "inputs": str(d.get(INPUTS_KEY) or meta.get("filename_or_obj", "")),
                "outputs": files,
                "roi_subset": self.subset,
                "model": self.model_name,
                "ensemble_size": 1,
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )
        with records.summary_lock(self.output_dir):
            recs = records.read_records(self.output_dir)
            info = {"model": self.model_name, "engine": "torch", "ensemble_size": 1, **self.run_info}
            info.update(threads=torch.get_num_threads(), runner="monai.bundle")
            info.update(n_cases=len(recs), n_failed=sum(r.get("status") != "ok" for r in recs))
            outputs.write_summary(recs, self.table, self.output_dir, overwrite=True, extra=info)
        logger.info("%s: %s (%.1f s)", case, ", ".join(Path(f).name for f in files.values()), total)
        return files


def _as_numpy(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def _as_float(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0])
    return float(value)


# ---------------------------------------------------------------------------------------------------- network
class OptimizeForInference:
    """Evaluator handler: after ``CheckpointLoader`` (``Events.STARTED``, listed after it), run the evaluator on
    :func:`~ultralight3d.networks.optimize.optimize_for_inference` of the loaded network when it runs on the CPU,
    the fast path ``ultralight3d predict`` uses (``--plain`` / ``optimize: false`` turns both off). The loaded
    network itself is left as it is (the fast copy is made again at every run).

    Args:
        enabled: the bundle's ``optimize`` (bool, or ``"true"``/``"false"``).
        device: the bundle's ``device``; nothing is done for a GPU.
    """

    def __init__(self, enabled: Any = True, device: str | torch.device | None = "cpu") -> None:
        from ..bundle.settings import as_bool

        self.enabled = as_bool(enabled, "optimize")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._plain: nn.Module | None = None

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Any) -> None:
        if self._plain is None:  # the evaluator sets its network after attaching the handlers
            self._plain = engine.network
        if not self.enabled or self.device.type != "cpu":
            return
        from ..networks.optimize import optimize_for_inference

        engine.network = optimize_for_inference(self._plain)


def check_settings(tta: Any = False, engine: str = "auto") -> None:
    """``initialize`` check: settings that only ``ultralight3d predict`` implements.

    Raises:
        UserInputError: ``tta`` on, or an engine other than torch/auto (the MONAI runner runs the torch network;
            one line with the command that does it).
    """
    from ..bundle.settings import as_bool

    if as_bool(tta, "tta"):
        raise UserInputError(
            "--tta: flip test-time augmentation is run by `ultralight3d predict --bundle DIR --tta`; "
            "python -m monai.bundle run runs the plain sliding window: drop --tta"
        )
    if str(engine) not in ("auto", "torch"):
        raise UserInputError(
            f"--engine {engine}: OpenVINO and ONNX Runtime are run by `ultralight3d predict --bundle DIR --engine "
            f"{engine}`; "
            "python -m monai.bundle run runs the torch weights of --ckpt_path: drop --engine"
        )


def check_weights(ckpt_path: str | os.PathLike | None, network: nn.Module) -> None:
    """``initialize`` check: the weights MONAI's ``CheckpointLoader`` will load exist and fit ``network_def``
    (same keys, same shapes), with one line naming ``--ckpt_path`` and the fix otherwise.

    Raises:
        UserInputError: no ``ckpt_path``, a missing or unreadable file, non-finite weights, or weights of another
            network.
    """
    if ckpt_path is None or not str(ckpt_path):
        raise UserInputError(
            "--ckpt_path is not set; pass --ckpt_path PATH/model.pt (the weights written by training this bundle)"
        )
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserInputError(
            f"--ckpt_path {path} not found: there are no trained weights there; train the bundle first (it writes "
            "models/model.pt) or pass --ckpt_path PATH/model.pt"
        )
    try:
        state = load_state_dict(path)
    except UserInputError as err:
        raise UserInputError(f"--ckpt_path: {err}") from err
    want = network.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or shapes:
        if shapes:
            k = shapes[0]
            detail = f"{k}: {tuple(state[k].shape)} in the file, {tuple(want[k].shape)} in the network"
        else:
            detail = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
        raise UserInputError(
            f"--ckpt_path {path} does not fit network_def ({detail}); pass the weights trained with this bundle "
            "(their model.json beside them sets the network)"
        )


def use_amp(amp: Any, device: str | torch.device) -> bool:
    """The evaluator's ``amp``: float16 autocast only on CUDA, as the predictor does."""
    from ..bundle.settings import as_bool

    return as_bool(amp, "amp") and torch.device(device).type == "cuda"
