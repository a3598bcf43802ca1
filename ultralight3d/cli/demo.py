"""``ultralight3d demo``: train, segment and evaluate on built-in synthetic CT phantoms, on the CPU, in minutes."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the ``demo`` subcommand."""
    from ..demo import run_demo

    res = run_demo(
        args.output,
        iterations=args.iterations,
        num_cases=args.cases,
        seed=args.seed,
        variant=args.variant,
        overwrite=args.overwrite,
        bundles_dir=args.bundles,
        num_threads=args.threads,
    )
    f = res.files
    print(
        f"Held-out case: mean Dice {res.mean_dice:.3f} over liver, kidney, spleen "
        f"({res.timings['total'] / 60:.1f} min). Segmentation: {f['segmentation']}; Slicer: {f['seg_nrrd']}; "
        f"overlay: {f['overlay']}; metrics: {f['metrics_md']}; report: {f['report']}"
    )
    print(f"Demo finished: everything is in {res.output_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ultralight3d demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="first run: train a small UltraLightUNet3D on synthetic CT phantoms, segment and evaluate (CPU)",
        description="Generate a deterministic synthetic abdominal CT-like data set (liver, kidneys, spleen; no "
        "download), train the generic bundle bundles/custom_ultralight_unet3d (UltraLightUNet3D-S) with MONAI's "
        "bundle runner, segment the held-out case, evaluate it and write Slicer-ready outputs, an overlay PNG and "
        "report.md.",
    )
    parser.add_argument(
        "-o", "--output", default="ultralight3d_demo", help="output folder (default ./ultralight3d_demo)"
    )
    parser.add_argument(
        "--iterations", type=int, default=1500, help="training iterations (default 1500; ~5 min on 2 CPU cores)"
    )
    parser.add_argument("--cases", type=int, default=8, help="training phantoms (default 8; one more is held out)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    parser.add_argument(
        "--variant", default="s", choices=["t", "s", "base", "m", "l"], help="UltraLightUNet3D variant (default s)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    parser.add_argument(
        "--bundles", default=None, help="folder holding the bundles (default: the repository's bundles/)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of a previous demo")
    parser.set_defaults(func=run)
