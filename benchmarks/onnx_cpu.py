"""CPU sliding-window latency: torch eager vs ONNX Runtime (vs torch.compile when it works), in one run.

Each engine segments the same random volume (default 160x160x96, one channel) with MONAI's sliding-window inference
(ROI 96³, overlap 0.25, sw_batch_size 1); the table reports the median of ``--repeats`` timed runs after one warm-up,
the speed-up over eager and the max |logit difference| against eager. Results are printed and written to
``benchmarks/results/onnx_cpu.md``.

Usage::

    python benchmarks/onnx_cpu.py                      # all UltraLightUNet3D variants (the lead runs this)
    python benchmarks/onnx_cpu.py --models ultralight_unet3d_s uxnet3d --threads 8
    python benchmarks/onnx_cpu.py --quick              # smoke test: T only, 64x64x64 volume, ROI 64³, 1 repeat
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference

from ultralight3d import create_model, list_models
from ultralight3d.export import OnnxRuntimeModel, export_onnx

__all__ = ["main", "time_engine"]

RESULTS = Path(__file__).resolve().parent / "results" / "onnx_cpu.md"


def time_engine(
    engine: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    roi: tuple[int, ...],
    repeats: int,
    overlap: float = 0.25,
) -> tuple[float, torch.Tensor]:
    """Median seconds of ``repeats`` sliding-window runs after one warm-up; also returns the last output."""
    with torch.no_grad():
        out = sliding_window_inference(x, roi, 1, engine, overlap=overlap)  # warm-up (and compile, if any)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = sliding_window_inference(x, roi, 1, engine, overlap=overlap)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list_models("ultralight*"), help="registered model names")
    p.add_argument("--size", type=int, nargs=3, default=[160, 160, 96], help="volume size (default 160 160 96)")
    p.add_argument("--roi", type=int, default=96, help="sliding-window ROI edge (default 96)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per engine (default 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for every engine")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--quick", action="store_true", help="smoke test: T only, 64³ volume, ROI 64, 1 repeat")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"markdown table (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.size, args.roi, args.repeats = ["ultralight_unet3d_t"], [64, 64, 64], 64, 1
        if args.output == RESULTS:
            args.output = Path(tempfile.gettempdir()) / "onnx_cpu_quick.md"
    torch.set_num_threads(args.threads)
    roi = (args.roi,) * 3
    x = torch.randn(1, 1, *args.size, generator=torch.Generator().manual_seed(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            net = create_model(name, in_channels=1, out_channels=2).eval()
            params = sum(p.numel() for p in net.parameters())
            t_eager, ref = time_engine(net, x, roi, args.repeats)
            row = {"model": name, "params": params, "eager": t_eager}
            t0 = time.perf_counter()
            onnx_path = export_onnx(net, Path(tmp) / f"{name}.onnx", example_size=roi)
            row["export_s"] = time.perf_counter() - t0
            t_ort, out = time_engine(OnnxRuntimeModel(onnx_path, num_threads=args.threads), x, roi, args.repeats)
            row["ort"], row["ort_diff"] = t_ort, (out - ref).abs().max().item()
            row["compile"], row["compile_diff"] = None, None
            if not args.no_compile:
                try:
                    t_c, out = time_engine(torch.compile(net), x, roi, args.repeats)
                    row["compile"], row["compile_diff"] = t_c, (out - ref).abs().max().item()
                except Exception as err:  # noqa: BLE001  (report, keep benchmarking the other engines)
                    row["compile_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
                    torch._dynamo.reset()
            rows.append(row)
            print(_fmt_row(row), flush=True)
    table = _table(rows, args)
    print("\n" + table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table + "\n")
    print(f"table written to {args.output}")
    return 0


def _fmt_row(r: dict) -> str:
    comp = f"{r['compile']:.2f} s" if r.get("compile") is not None else r.get("compile_error", "skipped")
    return f"{r['model']}: eager {r['eager']:.2f} s, onnxruntime {r['ort']:.2f} s, torch.compile {comp}"


def _table(rows: list[dict], args: argparse.Namespace) -> str:
    import onnxruntime

    head = (
        f"# CPU sliding-window latency: torch eager vs ONNX Runtime vs torch.compile\n\n"
        f"Volume {'x'.join(map(str, args.size))}, ROI {args.roi}³, overlap 0.25, sw_batch_size 1, batch 1, "
        f"{args.threads} threads, median of {args.repeats} run(s) after a warm-up. "
        f"{platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {sys.version.split()[0]}.\n"
        f"Command: `python benchmarks/onnx_cpu.py {' '.join(sys.argv[1:])}`\n\n"
    )
    lines = [
        "| model | params | eager (s) | ONNX Runtime (s) | speed-up | max abs diff | torch.compile (s) | speed-up "
        "| max abs diff | ONNX export (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("compile") is not None:
            comp = f"{r['compile']:.2f} | {r['eager'] / r['compile']:.2f}x | {r['compile_diff']:.1e}"
        else:
            comp = f"{r.get('compile_error', 'skipped')} | - | -"
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['eager']:.2f} | {r['ort']:.2f} | "
            f"{r['eager'] / r['ort']:.2f}x | {r['ort_diff']:.1e} | {comp} | {r['export_s']:.1f} |"
        )
    return head + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
