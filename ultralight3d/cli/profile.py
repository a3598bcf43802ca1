"""``ultralight3d profile``: parameters, FLOPs, CPU latency and memory of every variant beside the papers."""

from __future__ import annotations

import argparse
import logging

from . import positive_int

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="parameters, FLOPs, CPU latency and peak memory per network variant, beside the published numbers",
        description="Profile every registered network (and MONAI peers) at 1×C×96³ on this machine's CPU.",
    )
    p.add_argument("--models", default="*", help="shell pattern of registered models (default: all)")
    p.add_argument(
        "--peers",
        default="swin_unetr,unetr,dynunet_nnunet",
        help="comma-separated MONAI peers to measure too ('' for none)",
    )
    p.add_argument("--size", type=positive_int, default=96, help="cubic input size (default 96)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed forward passes per model (median reported)")
    p.add_argument("--no-latency", action="store_true", help="only count parameters and FLOPs (seconds, not minutes)")
    p.add_argument("--plain", action="store_true", help="time the plain modules instead of the CPU fast path")
    p.add_argument("-o", "--output", default=None, help="also write the table (markdown + JSON) to this .md file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..profile import format_table, machine_info, profile_models, write_report
    from ..registry import list_models

    names = list_models(args.models)
    peers = [p for p in args.peers.split(",") if p]
    if not names and not peers:
        from ..errors import UserInputError

        raise UserInputError(f"--models {args.models!r} matches no registered model; known: {', '.join(list_models())}")
    rows = profile_models(
        names,
        peers,
        size=args.size,
        threads=args.threads,
        repeats=args.repeats,
        latency=not args.no_latency,
        optimised=not args.plain,
    )
    info = machine_info(args.threads)
    print(f"\n{info['cpu']}, {info['cores']} cores, {info['threads']} threads, torch {info['torch']}\n")
    print(format_table(rows, args.size))
    if args.output:
        path = write_report(rows, args.output, args.size, args.threads)
        log.info("Profile table written to %s (and %s)", path, path.with_suffix(".json"))
    return 0
