"""``ultralight3d export``: write TorchScript and ONNX versions of a trained bundle (or a checkpoint) and check that
they give the same logits as PyTorch.

Examples::

    ultralight3d export --bundle bundles/feta_ultralight_unet3d            # models/model.onnx + models/model.ts
    ultralight3d export --bundle bundles/feta_ultralight_unet3d --format onnx --checkpoint runs/x/model.pt
    ultralight3d export --checkpoint runs/x/model.pt -o out/               # the model card model.json describes it
    ultralight3d export --model ultralight_unet3d_s --out-channels 8 --checkpoint model.pt -o out/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import positive_float, positive_int

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained bundle/model to ONNX and TorchScript (with a parity check)",
        description="Export a trained bundle, or a checkpoint (described by its model card model.json, or by --model "
        "and the channel options), to ONNX (dynamic spatial size, for `predict --engine onnxruntime`) and "
        "TorchScript, then check the exported logits against PyTorch. The model card is copied beside the exports.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--bundle", type=Path, help="bundle folder (uses configs/inference.json and models/model.pt)")
    src.add_argument(
        "--model",
        help="registered model name (see `ultralight3d profile`), e.g. ultralight_unet3d_s; "
        "not needed when the checkpoint has a model card",
    )
    p.add_argument(
        "-i",
        "--checkpoint",
        "--input",
        dest="checkpoint",
        type=Path,
        help="weights (model.pt written by training); default <bundle>/models/model.pt",
    )
    p.add_argument("--random-weights", action="store_true", help="with --model: export untrained weights (testing)")
    p.add_argument(
        "--in-channels",
        type=positive_int,
        default=None,
        help="with --model: input channels (default 1, or the model card's)",
    )
    p.add_argument(
        "--out-channels",
        type=positive_int,
        default=None,
        help="with --model: output classes incl. background (default 2, or the model card's)",
    )
    p.add_argument("--config-file", nargs="+", help="with --bundle: config files to merge instead of the default")
    p.add_argument("--format", nargs="+", choices=["onnx", "torchscript"], default=["onnx", "torchscript"])
    p.add_argument(
        "-o",
        "--output",
        "--output-dir",
        dest="output_dir",
        type=Path,
        help="folder for model.onnx / model.ts (default <bundle>/models)",
    )
    p.add_argument(
        "--size",
        type=positive_int,
        nargs="+",
        default=[96, 96, 96],
        help="example spatial size, 1 or 3 numbers (default 96 96 96)",
    )
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--atol", type=positive_float, default=1e-3, help="max allowed |logit difference| (default 1e-3)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check")
    p.add_argument(
        "--plain-graph",
        action="store_true",
        help="ONNX of the plain modules (default: batch norms and the channel shuffle folded, the graph predict's "
        "OpenVINO engine runs; same logits)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing exported files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserInputError
    from ..export import export_bundle, export_checkpoint

    if args.random_weights and args.checkpoint is not None:
        raise UserInputError("--random-weights exports untrained weights; drop it or drop --checkpoint")
    if len(args.size) not in (1, 3):
        raise UserInputError(f"--size takes 1 or 3 numbers, got {len(args.size)}")
    common = {
        "formats": args.format,
        "example_size": args.size,
        "opset": args.opset,
        "parity": not args.no_parity,
        "atol": args.atol,
        "overwrite": args.overwrite,
        "strict": False,
        "fold": not args.plain_graph,
    }
    if args.bundle is not None:
        result = export_bundle(
            args.bundle, checkpoint=args.checkpoint, output_dir=args.output_dir, config_files=args.config_file, **common
        )
    else:
        if args.checkpoint is None and not args.random_weights:
            raise UserInputError(
                "give --bundle DIR or --checkpoint PATH (or --model NAME --random-weights to export an untrained model)"
            )
        if args.output_dir is None:
            raise UserInputError("without --bundle, pass -o/--output DIR for model.onnx / model.ts")
        result = export_checkpoint(
            args.checkpoint,
            args.output_dir,
            model_name=args.model,
            in_channels=args.in_channels,
            out_channels=args.out_channels,
            **common,
        )
    for fmt in ("onnx", "torchscript", "card"):
        if fmt in result:
            print(f"{fmt:12s} {result[fmt]}")
    failed = False
    for fmt, res in result["parity"].items():
        status = "OK" if res.passed else "FAILED"
        print(
            f"parity {fmt:12s} max|diff| {res.max_abs_diff:.2e}  mean|diff| {res.mean_abs_diff:.2e}  "
            f"argmax agreement {res.argmax_agreement:.4f}  on {list(res.shape)}  {status} (atol {res.atol:g})"
        )
        failed |= not res.passed
    return 1 if failed else 0
