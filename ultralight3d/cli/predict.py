"""``ultralight3d predict``: segment NIfTI/NRRD/MHA files, folders or DICOM series with a bundle.

Example::

    ultralight3d predict -i scans/ -o out/ --bundle bundles/feta_ultralight_unet3d
    ultralight3d predict -i ProstateX-0001/ -o out/ --bundle bundles/prostate_ultralight_unet3d \\
        --channel T2=1.3.6.1.4...17541 ADC=1.3.6.1.4...33954
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register", "run_predict"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment NIfTI/NRRD/MHA files, folders or DICOM series with a bundle",
        description="Segment 3D scans with a bundle's network. Writes <case>_seg.nii.gz (uint8, the input's exact "
                    "affine), <case>.seg.nrrd (Slicer segments with names and colours), labels.csv/.ctbl, a DICOM-SEG "
                    "for DICOM input, and summary.json/.csv (time, volume per label in ml). Exit code 0 only when "
                    "every case succeeded.",
    )
    p.add_argument("-i", "--input", help="image file (.nii/.nii.gz/.nrrd/.mha/.mhd), folder of them "
                   "(multi-channel: <case>_0000.nii.gz, <case>_0001.nii.gz …) or a DICOM folder")
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    p.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/prostate_ultralight_unet3d")
    p.add_argument("--checkpoint", help="weights to use instead of <bundle>/models/model.pt")
    p.add_argument("--variant", help="UltraLightUNet3D variant the checkpoint was trained with (t, s, base, m, l)")
    p.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE", dest="set_ids",
                   help="set any id of the bundle's inference.json (VALUE parsed as JSON when it can be), e.g. "
                        "--set num_classes=4 'transform_params={\"spacing\": [1, 1, 1]}'")
    p.add_argument("--channel", nargs="+", metavar="NAME=SOURCE",
                   help="one source per bundle channel: a file, a DICOM folder or a SeriesInstanceUID found under -i "
                        "(e.g. --channel T2=… ADC=…); other channels are resampled onto the first one's grid")
    p.add_argument("--series", action="append", metavar="UID", help="only this DICOM SeriesInstanceUID (repeatable)")
    p.add_argument("--device", default=None, help="network device: auto (default), cpu, cuda, cuda:1")
    p.add_argument("--stitch-device", default=None,
                   help="where windows are stitched: auto (CPU when the volume is too large for the GPU), cpu, cuda")
    p.add_argument("--overlap", type=float, default=None, help="sliding-window overlap 0-1 (bundle default 0.5)")
    p.add_argument("--sw-batch-size", type=int, default=None, help="windows per forward pass (bundle default)")
    p.add_argument("--roi-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="sliding-window size (bundle default 96 96 96)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (8 passes, slower)")
    p.add_argument("--no-amp", action="store_true", help="disable float16 autocast on CUDA")
    p.add_argument("--engine", choices=["torch", "onnxruntime"], default="torch",
                   help="torch (default) or onnxruntime (uses <bundle>/models/model.onnx or --checkpoint X.onnx)")
    p.add_argument("--plain", action="store_true",
                   help="run the plain network modules instead of the CPU fast path (same logits, slower)")
    p.add_argument("--probabilities", action="store_true", help="also write <case>_probs.nii.gz (float32, 4D)")
    p.add_argument("--no-seg-nrrd", action="store_true", help="skip <case>.seg.nrrd")
    p.add_argument("--no-dicom-seg", action="store_true", help="skip the DICOM-SEG for DICOM input")
    p.add_argument("--preview", action="store_true", help="also write a 3-plane overlay PNG per case")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Build the bundle's predictor with the command-line overrides, run it, return 0 when all cases succeeded."""
    from ..errors import UserInputError
    from ..inference import Predictor
    from ..io import parse_channel_args

    if args.input is None and not args.channel:
        raise UserInputError("give -i FILE_OR_FOLDER, or --channel NAME=SOURCE for each channel of the bundle")
    overrides: dict = {
        "overlap": args.overlap,
        "sw_batch_size": args.sw_batch_size,
        "roi_size": list(args.roi_size) if args.roi_size else None,
        "engine": args.engine,
        "tta": True if args.tta else None,
        "amp": False if args.no_amp else None,
        "optimize": False if args.plain else None,
        "progress": False if args.quiet else None,
    }
    if args.variant:
        overrides["variant"] = args.variant
    for item in args.set_ids:
        if "=" not in item:
            raise UserInputError(f"--set {item!r} must look like ID=VALUE (e.g. num_classes=4)")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    if args.device:
        overrides["device"] = f"$torch.device({args.device!r})" if args.device != "auto" else None
    if args.stitch_device:
        overrides["stitch_device"] = args.stitch_device
    checkpoint = args.checkpoint
    if args.engine == "onnxruntime":
        overrides["onnx_path"] = str(Path(checkpoint).resolve()) if checkpoint else None
        checkpoint = None
    predictor = Predictor.from_bundle(args.bundle, checkpoint=checkpoint, overrides=overrides)
    result = predictor.predict(
        args.input, args.output, overwrite=args.overwrite, channel_sources=parse_channel_args(args.channel),
        series_uids=args.series, save_probabilities=args.probabilities, seg_nrrd=not args.no_seg_nrrd,
        dicom_seg=not args.no_dicom_seg, preview=args.preview)
    failed = [c for c in result.cases if not c.ok]  # each failure was already logged with its message
    print(f"{len(result.cases) - len(failed)}/{len(result.cases)} case(s) segmented; outputs in {result.output_dir}")
    return 0 if result.ok else 1
