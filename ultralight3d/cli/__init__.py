"""The ``ultralight3d`` command: a thin argparse layer over the Python API.

Each module in this package that defines ``register(subparsers)`` adds one subcommand; ``register`` must call
``parser.set_defaults(func=...)`` with a function taking the parsed ``argparse.Namespace`` and returning an exit code.

Conventions every subcommand follows: files read are ``-i/--input`` (older spellings kept as aliases), files written
``-o/--output``; numbers are checked while parsing with the ``type=`` helpers below (:func:`positive_int`,
:func:`non_negative_int`, :func:`positive_float`, :func:`fraction`, :func:`variant_name`), and every error, from
argparse or from the API (:class:`ultralight3d.errors.UserInputError`), is printed as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import logging
import os
import pkgutil
import sys
from typing import NoReturn

__all__ = [
    "build_parser",
    "main",
    "console",
    "request_quick_exit",
    "iter_parsers",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "fraction",
    "variant_name",
    "VARIANTS",
]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``ultralight3d predict: error: ...; see ... -h``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse ``type=``: a number in [0, 1) (sliding-window overlap)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


#: the UltraLightUNet3D variants, registered as ``ultralight_unet3d_<variant>``: a static copy, so that parsing a
#: command line imports no torch (``tests/test_startup.py`` checks it against the registry).
VARIANTS = ("base", "l", "m", "s", "t")


def variant_name(text: str) -> str:
    """argparse ``type=``: an UltraLightUNet3D variant (one of :data:`VARIANTS`)."""
    if text not in VARIANTS:
        raise argparse.ArgumentTypeError(f"unknown variant {text!r}; choose one of {', '.join(VARIANTS)}")
    return text


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="ultralight3d",
        description="Ultra-light 3D segmentation: demo, profile, prepare data, predict, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"ultralight3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def iter_parsers(parser: argparse.ArgumentParser | None = None, prefix: str = ""):
    """Yield ``(command, parser)`` for ``parser`` (default: :func:`build_parser`) and every nested subcommand, e.g.
    ``("", top level)``, ``("predict", ...)``, ``("prepare msd", ...)``."""
    parser = parser or build_parser()
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_parsers(sub, f"{prefix} {name}".strip())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ultralight3d`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse: --help, --version, or a one-line usage error (already printed)
        return stop.code if isinstance(stop.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import UserInputError

    try:
        return int(args.func(args) or 0)
    except UserInputError as err:  # one readable message, no stack trace
        print(f"error: {err}", file=sys.stderr)
        return 2


_quick_exit = False


def request_quick_exit() -> None:
    """Called by a subcommand that has written and closed everything it produces (``predict``: every output is
    written atomically and its record fsynced): when it runs as the console script, :func:`console` ends the
    process right after its ``atexit`` handlers, without the interpreter's module tear-down."""
    global _quick_exit
    _quick_exit = True


def console() -> int:
    """The ``ultralight3d`` console script (and ``python -m ultralight3d``): :func:`main`, then an exit without the
    interpreter's last garbage collection, and for ``predict`` without its module tear-down.

    At exit Python collects reference cycles over every object still alive, and after ``import torch`` (and MONAI)
    there are some hundred thousand: on a 2-core AMD EPYC that pass took ~1 s of the ~1.5 s between a predict's last
    line and the end of the process. ``gc.freeze()`` leaves them out of it (the operating system frees the memory).
    After a subcommand that asked for it (:func:`request_quick_exit`), the ``atexit`` handlers run (logging's flush
    among them), the standard streams are flushed and the process ends with ``os._exit``: the tear-down of some
    2,000 modules and torch's and OpenVINO's C++ objects took another 0.2-0.3 s (2-core EPYC with AVX-512,
    2026-12-07). Other subcommands still run the modules' own clean-up. :func:`main` itself, called in a process
    that goes on (tests, notebooks), changes nothing."""
    global _quick_exit
    _quick_exit = False  # only a request made during this call counts
    code = main()
    gc.freeze()
    if _quick_exit:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
