"""Benchmark: parameters, FLOPs, CPU latency and peak memory of every network, beside the papers and MONAI peers.

Writes ``benchmarks/results/profile.md`` (+ ``.json``). Run from the repository root::

    python benchmarks/profile_networks.py            # all models and peers, 96³, takes a few minutes on 2 cores
    python benchmarks/profile_networks.py --quick    # counts only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ultralight3d.profile import PEERS, format_table, profile_models, write_report

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="parameters and FLOPs only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "profile.md"))
    args = ap.parse_args()
    rows = profile_models(None, list(PEERS), threads=args.threads, repeats=args.repeats, latency=not args.quick)
    print(format_table(rows))
    print(f"\nwritten to {write_report(rows, args.output, threads=args.threads)}")
