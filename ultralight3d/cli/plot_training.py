"""``ultralight3d plot-training``: loss and validation-Dice curves of a training run as a PNG."""

from __future__ import annotations

import argparse

from ..errors import UserInputError
from . import positive_int

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the ``plot-training`` subcommand."""
    from ..plots import plot_training_curves

    if (args.run_dir is None) == (args.input is None):
        raise UserInputError("give the run folder once: ultralight3d plot-training RUN_DIR (or -i RUN_DIR)")
    path = plot_training_curves(
        args.input or args.run_dir, args.output, size_px=(args.width, args.height), overwrite=args.overwrite
    )
    print(f"Training curves written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ultralight3d plot-training``."""
    parser = subparsers.add_parser(
        "plot-training",
        help="draw loss and validation Dice curves of a training run (PNG)",
        description="Read a run folder's training_log.csv / validation_log.csv (or its TensorBoard event files) and "
        "draw the training loss and the validation Dice per class into one PNG.",
    )
    parser.add_argument("run_dir", nargs="?", help="run folder written by a bundle's training")
    parser.add_argument("-i", "--input", help="the run folder (same as RUN_DIR)")
    parser.add_argument("-o", "--output", help="PNG path (default: <run_dir>/training_curves.png)")
    parser.add_argument("--width", type=positive_int, default=1200, help="PNG width in pixels (default 1200)")
    parser.add_argument("--height", type=positive_int, default=450, help="PNG height in pixels (default 450)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    parser.set_defaults(func=run)
