"""The ``ultralight3d`` command: a thin argparse layer over the Python API.

Each module in this package that defines ``register(subparsers)`` adds one subcommand; ``register`` must call
``parser.set_defaults(func=...)`` with a function taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ultralight3d",
        description="Ultra-light 3D segmentation: demo, profile, prepare data, predict, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"ultralight3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ultralight3d`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import UserInputError

    try:
        return int(args.func(args) or 0)
    except UserInputError as err:  # one readable message, no stack trace
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
