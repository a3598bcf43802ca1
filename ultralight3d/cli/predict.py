"""``ultralight3d predict``: segment NIfTI/NRRD/MHA files, folders or DICOM series with a bundle or a trained model.

Example::

    ultralight3d predict -i scans/ -o out/ --bundle bundles/feta_ultralight_unet3d
    ultralight3d predict -i scans/ -o out/ --checkpoint runs/r1/model.pt        # model.json beside it describes it
    ultralight3d predict -i ProstateX-0001/ -o out/ --bundle bundles/prostate_ultralight_unet3d \\
        --channel T2=1.3.6.1.4...17541 ADC=1.3.6.1.4...33954
    ultralight3d predict -i scans/ -o out/ --bundle bundles/synapse_ultralight_unet3d \\
        --checkpoint fold0/model.pt fold1/model.pt --roi-subset liver spleen --per-class --statistics --continue
"""

from __future__ import annotations

import argparse
import json
import os
import re

from ..inference.engine_names import ENGINES, PRECISIONS
from . import fraction, positive_float, positive_int, variant_name

__all__ = ["register", "run_predict"]

#: device strings ``--device`` accepts (checked without importing torch, which must be imported only after the
#: thread settings of :func:`run_predict`)
_DEVICE_RE = re.compile(r"(cpu|cuda|mps|xpu)(:\d+)?")


def _device(text: str) -> str:
    """argparse ``type=``: ``auto`` or a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``xpu``)."""
    if text != "auto" and not _DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment NIfTI/NRRD/MHA files, folders or DICOM series with a bundle or a trained model",
        description="Segment 3D scans with a bundle's network (or a checkpoint whose model card, model.json, "
        "describes it; several checkpoints: an ensemble). Writes <case>_seg.nii.gz (uint8, the input's exact affine), "
        "<case>.seg.nrrd (Slicer segments with names, colours and SNOMED CT terminology), labels.csv/.ctbl, a "
        "DICOM-SEG for DICOM input, optionally per-class masks and statistics, a record per case in records/ and "
        "summary.json/.csv rebuilt from all records (several runs may share one output folder: a case another run "
        "is computing is refused, not computed twice). The protocol's per-class post-processing is applied. Exit "
        "code 0 only when every case succeeded (or had finished before, with --continue).",
    )
    p.add_argument(
        "-i",
        "--input",
        required=True,
        help="image file (.nii/.nii.gz/.nrrd/.mha/.mhd), folder of them (multi-channel: "
        "<case>_0000.nii.gz, <case>_0001.nii.gz …) or a DICOM folder (with --channel: the folder "
        "searched for SeriesInstanceUIDs)",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    p.add_argument(
        "--bundle",
        help="bundle folder, e.g. bundles/prostate_ultralight_unet3d (optional when --checkpoint has a model card)",
    )
    p.add_argument(
        "--checkpoint",
        nargs="+",
        action="extend",
        metavar="CKPT",
        help="weights to use instead of <bundle>/models/model.pt (or an exported "
        "model.onnx); its model card model.json, when present, defines the network. Several (e.g. one per fold): "
        "an ensemble averaging their softmax; each must describe the same classes",
    )
    p.add_argument(
        "--variant",
        type=variant_name,
        help="UltraLightUNet3D variant the checkpoint was trained with (t, s, base, m, l); not needed when "
        "the checkpoint has a model card",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="ID=VALUE",
        dest="set_ids",
        help="set any id of the bundle's inference.json (VALUE parsed as JSON when it can be), e.g. "
        "--set num_classes=4 'transform_params={\"spacing\": [1, 1, 1]}'",
    )
    p.add_argument(
        "--channel",
        nargs="+",
        metavar="NAME=SOURCE",
        help="one source per bundle channel: a file, a DICOM folder or a SeriesInstanceUID found under -i "
        "(e.g. --channel T2=… ADC=…); other channels are resampled onto the first one's grid",
    )
    p.add_argument("--series", action="append", metavar="UID", help="only this DICOM SeriesInstanceUID (repeatable)")
    p.add_argument("--device", type=_device, default=None, help="network device: auto (default), cpu, cuda, cuda:1")
    p.add_argument(
        "--stitch-device",
        type=_device,
        default=None,
        help="where windows are stitched: auto (CPU when the volume is too large for the GPU), cpu, cuda",
    )
    p.add_argument("--overlap", type=fraction, default=None, help="sliding-window overlap in [0, 1) (default 0.5)")
    p.add_argument(
        "--sw-batch-size", type=positive_int, default=None, help="windows per forward pass, >= 1 (bundle default)"
    )
    p.add_argument(
        "--roi-size",
        type=positive_int,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="sliding-window size (default: the model card's patch size, else the bundle's)",
    )
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (8 passes, slower)")
    p.add_argument("--no-amp", action="store_true", help="disable float16 autocast on CUDA")
    p.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=None,
        help="what runs the network: auto (default: OpenVINO on the CPU when installed, else torch), torch, openvino "
        "(the network is exported to ONNX once and cached in ~/.cache/ultralight3d or $ULTRALIGHT3D_CACHE), or "
        "onnxruntime (uses <bundle>/models/model.onnx or --checkpoint X.onnx)",
    )
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default=None,
        help="CPU arithmetic: auto (default: bf16 where OpenVINO runs on a CPU with bfloat16 arithmetic, "
        "AVX512_BF16/AMX, else fp32; each case's record names what ran), fp32 (the plain path's logits to float32 "
        "rounding) or bf16 (bfloat16 where the CPU has it: faster, logits differ by ~1e-3)",
    )
    p.add_argument(
        "--crop-foreground",
        action="store_true",
        help="run the sliding window only over the foreground's bounding box (CT: the body, not the air around it; "
        "background outside); less work, and the labels can differ near the box's edge",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="run the plain network modules instead of the CPU fast path (same logits, slower)",
    )
    p.add_argument("--probabilities", action="store_true", help="also write <case>_probs.nii.gz (float32, 4D)")
    p.add_argument("--no-seg-nrrd", action="store_true", help="skip <case>.seg.nrrd")
    p.add_argument("--no-dicom-seg", action="store_true", help="skip the DICOM-SEG for DICOM input")
    p.add_argument("--preview", action="store_true", help="also write a 3-plane overlay PNG per case")
    p.add_argument(
        "--per-class",
        action="store_true",
        help="also write one binary mask per class, <case>_classes/<class>_seg.nii.gz (loads in 3D Slicer as a label "
        "map)",
    )
    p.add_argument(
        "--roi-subset",
        nargs="+",
        metavar="CLASS",
        help="only these classes (names such as 'left kidney' or left_kidney, or label values) in every output; the "
        "others become background",
    )
    p.add_argument(
        "--statistics",
        action="store_true",
        help="also write <case>_statistics.json/.csv: per class voxel count, volume (ml) and mean/std/median/5th/95th "
        "percentile of each input channel, on the input grid",
    )
    post = p.add_argument_group(
        "post-processing",
        "by default the rules the model's protocol declares per class (transforms/<protocol>.json 'postprocessing'); "
        "--largest-component and --min-volume-ml replace them",
    )
    post.add_argument(
        "--largest-component",
        nargs="*",
        metavar="CLASS",
        default=None,
        help="keep only the largest connected component of these classes (names or values; none given: every class)",
    )
    post.add_argument(
        "--min-volume-ml",
        type=positive_float,
        default=None,
        metavar="ML",
        help="remove connected components smaller than ML millilitres in every class",
    )
    post.add_argument(
        "--no-postprocessing", action="store_true", help="no post-processing at all (the raw argmax of the network)"
    )
    run = p.add_mutually_exclusive_group()
    run.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    run.add_argument(
        "--continue",
        dest="continue_prediction",
        action="store_true",
        help="skip cases whose outputs are complete (their record in <output>/records says ok and every file "
        "exists); compute the others, replacing partial outputs",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for the network (torch intra-op threads). Default: the physical cores this process may "
        "use, less those other processes kept busy while predict started (a thread sharing its core makes every "
        "operation wait for it). Idle threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE unless "
        "OMP_WAIT_POLICY or GOMP_SPINCOUNT is set)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_predict)


def _parse_set(items: list[str]) -> dict:
    from ..errors import UserInputError

    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserInputError(f"--set {item!r} must look like ID=VALUE (e.g. num_classes=4)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _check_args(args: argparse.Namespace) -> None:
    """Combinations argparse cannot express, as one-line errors before anything is built."""
    from ..errors import UserInputError

    if args.no_postprocessing and (args.largest_component is not None or args.min_volume_ml is not None):
        raise UserInputError(
            "--no-postprocessing cannot be combined with --largest-component or --min-volume-ml; drop one of them"
        )
    for option, values in (("--roi-subset", args.roi_subset), ("--largest-component", args.largest_component)):
        blank = [v for v in values or [] if not str(v).strip()]
        if blank:
            raise UserInputError(f"{option}: empty class name; give class names or label values")
    checkpoints = list(args.checkpoint or [])
    if len(set(checkpoints)) != len(checkpoints):
        raise UserInputError("--checkpoint: the same file is given twice; an ensemble needs different checkpoints")
    if checkpoints and args.engine == "onnxruntime" and not all(str(c).lower().endswith(".onnx") for c in checkpoints):
        raise UserInputError("--engine onnxruntime needs --checkpoint model.onnx files (see `ultralight3d export`)")


def run_predict(args: argparse.Namespace) -> int:
    """Build the predictor (bundle + overrides, or checkpoint(s) + model card), run it, return 0 when all cases
    succeeded.

    The thread policy (:mod:`ultralight3d.inference.threads`) needs two things before torch is imported: a CPU
    sample (the other processes' load is measured over the imports) and the OpenMP environment."""
    from ..inference.threads import cpu_sample, set_threads, thread_environment

    started = cpu_sample()
    _check_args(args)  # one-line argument errors before the heavy imports
    os.environ.update(thread_environment())
    from ..inference.startup import import_monai_lean

    import_monai_lean()  # MONAI without the optional packages predict never uses (startup.LEAN_SKIPPED): -3 s
    from ..errors import UserInputError
    from ..inference.predictor import Predictor
    from ..io.cases import parse_channel_args

    set_threads(args.threads, since=started)
    checkpoints = list(args.checkpoint or [])
    checkpoint = checkpoints if len(checkpoints) > 1 else (checkpoints[0] if checkpoints else None)
    if args.bundle is None:
        if checkpoint is None:
            raise UserInputError(
                "give --bundle DIR, or --checkpoint model.pt whose model card (model.json beside it) "
                "describes the network"
            )
        if args.set_ids:
            raise UserInputError("--set changes ids of a bundle's inference.json; it needs --bundle DIR")
        kwargs: dict = {
            k: v
            for k, v in {
                "overlap": args.overlap,
                "sw_batch_size": args.sw_batch_size,
                "roi_size": tuple(args.roi_size) if args.roi_size else None,
                "device": args.device,
                "stitch_device": args.stitch_device,
            }.items()
            if v is not None
        }
        kwargs.update(tta=args.tta, amp=not args.no_amp, optimize=not args.plain, progress=not args.quiet)
        kwargs.update({k: v for k, v in (("engine", args.engine), ("precision", args.precision)) if v is not None})
        predictor = Predictor.from_checkpoint(checkpoint, **kwargs)
        if args.variant and predictor.name != f"ultralight_unet3d_{args.variant}":
            raise UserInputError(
                f"--variant {args.variant} but the model card of {checkpoints[0]} says "
                f"{predictor.name}; drop --variant or pass the matching checkpoint"
            )
    else:
        overrides: dict = {
            "overlap": args.overlap,
            "sw_batch_size": args.sw_batch_size,
            "roi_size": list(args.roi_size) if args.roi_size else None,
            "engine": args.engine,
            "precision": args.precision,
            "tta": True if args.tta else None,
            "amp": False if args.no_amp else None,
            "optimize": False if args.plain else None,
            "progress": False if args.quiet else None,
            "variant": args.variant,
            "stitch_device": args.stitch_device,
        }
        overrides.update(_parse_set(args.set_ids))
        if args.device:
            overrides["device"] = f"$torch.device({args.device!r})" if args.device != "auto" else None
        predictor = Predictor.from_bundle(args.bundle, checkpoint=checkpoint, overrides=overrides)
    predictor.crop_foreground = bool(args.crop_foreground)
    if args.no_postprocessing or args.largest_component is not None or args.min_volume_ml is not None:
        largest = None if args.largest_component is None else (args.largest_component or True)
        predictor.set_postprocessing(largest, args.min_volume_ml, enabled=not args.no_postprocessing)
    result = predictor.predict(
        args.input,
        args.output,
        overwrite=args.overwrite,
        channel_sources=parse_channel_args(args.channel),
        series_uids=args.series,
        save_probabilities=args.probabilities,
        seg_nrrd=not args.no_seg_nrrd,
        dicom_seg=not args.no_dicom_seg,
        preview=args.preview,
        per_class=args.per_class,
        statistics=args.statistics,
        roi_subset=args.roi_subset,
        continue_prediction=args.continue_prediction,
    )
    n = len(result.cases)
    extra = [
        f"{k} {label}"
        for k, label in (
            (result.count("skipped"), "skipped (already complete)"),
            (result.count("busy"), "refused (another run is writing them)"),
        )
        if k
    ]
    print(
        f"{result.count('ok')}/{n} case(s) segmented"
        + "".join(f", {e}" for e in extra)
        + f"; outputs in {result.output_dir}"
    )
    from . import request_quick_exit

    request_quick_exit()  # every output is written and closed: the console script may skip the module tear-down
    return 0 if result.ok else 1
