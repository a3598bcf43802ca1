"""``ultralight3d export``: write TorchScript and ONNX versions of a trained bundle (or a registered model) and check
that they give the same logits as PyTorch.

Examples::

    ultralight3d export --bundle bundles/feta_ultralight_unet3d            # models/model.onnx + models/model.ts
    ultralight3d export --bundle bundles/feta_ultralight_unet3d --format onnx --checkpoint runs/x/model.pt
    ultralight3d export --model ultralight_unet3d_s --out-channels 8 --checkpoint model.pt --output-dir out/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained bundle/model to ONNX and TorchScript (with a parity check)",
        description="Export a trained bundle (or a registered model + checkpoint) to ONNX (dynamic spatial size, for "
        "`predict --engine onnxruntime`) and TorchScript, then check the exported logits against PyTorch.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path, help="bundle folder (uses configs/inference.json and models/model.pt)")
    src.add_argument("--model", help="registered model name (see `ultralight3d profile`), e.g. ultralight_unet3d_s")
    p.add_argument("--checkpoint", type=Path, help="weights (plain state dict or {'model': ...}); default "
                   "<bundle>/models/model.pt; required with --model unless --random-weights")
    p.add_argument("--random-weights", action="store_true", help="with --model: export untrained weights (testing)")
    p.add_argument("--in-channels", type=int, default=1, help="with --model: input channels (default 1)")
    p.add_argument("--out-channels", type=int, default=2, help="with --model: output classes incl. background")
    p.add_argument("--config-file", nargs="+", help="with --bundle: config files to merge instead of the default")
    p.add_argument("--format", nargs="+", choices=["onnx", "torchscript"], default=["onnx", "torchscript"])
    p.add_argument("--output-dir", type=Path, help="where to write model.onnx / model.ts (default <bundle>/models)")
    p.add_argument("--size", type=int, nargs="+", default=[96, 96, 96], help="example spatial size (default 96 96 96)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--atol", type=float, default=1e-3, help="max allowed |logit difference| (default 1e-3)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check")
    p.add_argument("--overwrite", action="store_true", help="replace existing exported files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserInputError
    from ..export import OnnxRuntimeModel, _load_weights, check_parity, export_bundle, export_onnx, export_torchscript

    size = list(args.size) * 3 if len(args.size) == 1 else list(args.size)
    if args.bundle is not None:
        result = export_bundle(
            args.bundle,
            formats=args.format,
            checkpoint=args.checkpoint,
            output_dir=args.output_dir,
            example_size=size,
            config_files=args.config_file,
            opset=args.opset,
            parity=not args.no_parity,
            atol=args.atol,
            overwrite=args.overwrite,
        )
    else:
        import torch

        from ..registry import create_model, list_models

        if args.model not in list_models():
            raise UserInputError(f"unknown model '{args.model}'; choose one of: {', '.join(list_models())}")
        if args.checkpoint is None and not args.random_weights:
            raise UserInputError("--model needs --checkpoint PATH (or --random-weights to export an untrained model)")
        if args.output_dir is None:
            raise UserInputError("--model needs --output-dir DIR for model.onnx / model.ts")
        model = create_model(args.model, in_channels=args.in_channels, out_channels=args.out_channels)
        if args.checkpoint is not None:
            _load_weights(model, args.checkpoint)
        model.eval()
        result = {"parity": {}}
        if "onnx" in args.format:
            result["onnx"] = export_onnx(model, args.output_dir / "model.onnx", size, opset=args.opset,
                                         overwrite=args.overwrite)
            if not args.no_parity:
                result["parity"]["onnx"] = check_parity(model, OnnxRuntimeModel(result["onnx"]), size, atol=args.atol)
        if "torchscript" in args.format:
            result["torchscript"] = export_torchscript(model, args.output_dir / "model.ts", size,
                                                       overwrite=args.overwrite)
            if not args.no_parity:
                result["parity"]["torchscript"] = check_parity(model, torch.jit.load(str(result["torchscript"])), size,
                                                               atol=args.atol)
    failed = False
    for fmt in ("onnx", "torchscript"):
        if fmt in result:
            print(f"{fmt:12s} {result[fmt]}")
    for fmt, res in result["parity"].items():
        status = "OK" if res.passed else "FAILED"
        print(f"parity {fmt:12s} max|diff| {res.max_abs_diff:.2e}  mean|diff| {res.mean_abs_diff:.2e}  "
              f"argmax agreement {res.argmax_agreement:.4f}  on {list(res.shape)}  {status} (atol {res.atol:g})")
        failed |= not res.passed
    return 1 if failed else 0
