"""End-to-end CPU ``predict`` benchmark: read -> preprocess -> network -> stitch -> invert -> write, per network.

Each network runs in its own subprocess (so peak RSS is its own) through the same :class:`Predictor` the CLI uses, on
one synthetic 256x256x128 NIfTI volume (1 mm, RAS, z-score), 96³ windows, overlap 0.5, Gaussian blending, random
weights. Networks: UltraLightUNet3D base and M, 3D UX-Net, and MONAI DynUNet in the nnU-Net 3d_fullres configuration
for 96³ patches (nnU-Net pools an axis while it is >= 2 x 4 voxels: 96->48->24->12->6, i.e. 4 poolings, 5 stages,
3x3x3 kernels, 32-64-128-256-320 filters, instance norm, leaky ReLU).

Usage::

    python benchmarks/predict_cpu.py                       # full run (slow on a laptop: UX-Net takes many minutes)
    python benchmarks/predict_cpu.py --models ultralight_unet3d_base dynunet_nnunet
    python benchmarks/predict_cpu.py --quick               # smoke test: 64x64x48 volume, 32³ windows
    python benchmarks/predict_cpu.py --models ultralight_unet3d_base --contention   # + a row beside a busy process

``--contention`` runs each network a second time while another process keeps one core busy (``python -c 'while True:
pass'``) and reports that run's total time and its ratio to the quiet run (issue 15: at most ~2.5x on 2 cores).

Writes a Markdown table to ``benchmarks/results/predict_cpu.md`` (``predict_cpu_quick.md`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ["ultralight_unet3d_base", "ultralight_unet3d_m", "uxnet3d", "dynunet_nnunet"]
BASELINE = "dynunet_nnunet"
STAGES = ["read", "preprocess", "network", "stitch", "invert", "write"]
RESULTS = Path(__file__).resolve().parent / "results"


def build_network(name: str, in_channels: int = 1, out_channels: int = 2):
    """A registry network, or ``dynunet_nnunet`` (MONAI DynUNet, nnU-Net 3d_fullres plan for 96³ patches)."""
    if name == "dynunet_nnunet":
        from monai.networks.nets import DynUNet

        strides = [[1, 1, 1]] + [[2, 2, 2]] * 4
        return DynUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=[[3, 3, 3]] * 5,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=[32, 64, 128, 256, 320],
            norm_name=("INSTANCE", {"affine": True}),
            act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
            deep_supervision=False,
            res_block=False,
        )
    from ultralight3d import create_model

    return create_model(name, spatial_dims=3, in_channels=in_channels, out_channels=out_channels)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def worker(args: argparse.Namespace) -> None:
    """Run one network in this process and print one JSON line (threads as ``ultralight3d predict`` sets them)."""
    from ultralight3d.inference.threads import cpu_sample, set_threads, thread_environment

    started = cpu_sample()  # the other processes' load is measured over the imports, as the CLI does
    os.environ.update(thread_environment())  # before torch is imported
    import torch

    from ultralight3d.inference import Predictor, build_preprocessing

    torch.manual_seed(0)
    set_threads(args.threads or None, since=started)
    net = build_network(args.worker)
    n_params = sum(p.numel() for p in net.parameters())
    rss_model = _rss_mb()
    predictor = Predictor(
        net,
        preprocessing=build_preprocessing("generic", {}),
        roi_size=[args.roi] * 3,
        sw_batch_size=args.sw_batch_size,
        overlap=args.overlap,
        device="cpu",
        stitch_device="cpu",
        progress=False,
        name=args.worker,
    )
    start = time.perf_counter()
    run = predictor.predict(args.input, args.outdir, overwrite=True, dicom_seg=False)
    wall = time.perf_counter() - start
    case = run.cases[0]
    if not case.ok:
        raise SystemExit(f"{args.worker} failed: {case.error}")
    print(
        json.dumps(
            {
                "model": args.worker,
                "params_m": n_params / 1e6,
                "wall_s": wall,
                "timings": case.timings,
                "peak_rss_mb": _rss_mb(),
                "rss_after_model_mb": rss_model,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


def _synthetic_volume(path: Path, shape: tuple[int, int, int]) -> None:
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    vol = rng.normal(100, 20, size=shape).astype(np.float32)
    ii, jj, kk = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c = [s // 2 for s in shape]
    vol[(ii - c[0]) ** 2 + (jj - c[1]) ** 2 + ((kk - c[2]) * 2) ** 2 < (min(shape) // 3) ** 2] += 200
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))


def _busy_process() -> subprocess.Popen:
    """Another process keeping one core busy (the contention row)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _table(rows: list[dict], shape, args) -> str:
    from ultralight3d.profile import cpu_name  # imports torch: not at module level, which the workers also run

    base = next((r for r in rows if r["model"] == BASELINE), None)
    quick = " (QUICK SMOKE RUN on a tiny volume: not a benchmark)" if args.quick else ""
    lines = [
        f"# End-to-end CPU predict: {shape[0]}x{shape[1]}x{shape[2]} volume, {args.roi}³ windows, "
        f"overlap {args.overlap}, sw_batch_size {args.sw_batch_size}{quick}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {rows[0]['threads'] if rows else '?'}, "
        f"torch {rows[0].get('torch', '?') if rows else '?'}; Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Command: `python benchmarks/predict_cpu.py {' '.join(sys.argv[1:])}`.",
        "",
        "Random weights; each network in its own process (peak RSS is that process's maximum resident set). Stages: "
        "read = file load + input checks; preprocess = reorientation + z-score; network = the forward passes; "
        "stitch = sliding-window bookkeeping, Gaussian blending and softmax outside the forward passes; invert = "
        "argmax + back to the input grid; write = NIfTI + .seg.nrrd + colour tables + summary.",
        "",
        "| network | params (M) | "
        + " | ".join(f"{s} (s)" for s in STAGES)
        + " | total (s) | network share | peak RSS (GB) | time vs DynUNet | RSS vs DynUNet |"
        + (" busy core: total (s) | threads | slowdown |" if args.contention else ""),
        "|---|---:|" + "---:|" * (len(STAGES) + 5) + ("---:|" * 3 if args.contention else ""),
    ]
    for r in rows:
        t = r["timings"]
        ratio_t = f"{r['wall_s'] / base['wall_s']:.2f}x" if base else "n/a"
        ratio_m = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x" if base else "n/a"
        share = f"{100 * t.get('network', 0) / r['wall_s']:.0f}%"
        lines.append(
            f"| {r['model']} | {r['params_m']:.3f} | "
            + " | ".join(f"{t.get(s, 0):.2f}" for s in STAGES)
            + f" | {r['wall_s']:.2f} | {share} | {r['peak_rss_mb'] / 1024:.2f} | {ratio_t} | {ratio_m} |"
            + (
                f" {r['busy_wall_s']:.2f} | {r['busy_threads']} | {r['busy_wall_s'] / r['wall_s']:.2f}x |"
                if "busy_wall_s" in r
                else ""
            )
        )
    if args.contention:
        lines += [
            "",
            "busy core: the same run while another process (`python -c 'while True: pass'`) keeps one core busy, "
            "with the torch threads `ultralight3d predict` chooses then (or `--threads`); slowdown = its total / the "
            "quiet total.",
        ]
    return "\n".join(lines) + "\n"


def _run_worker(cmd: list[str]) -> dict | None:
    """One worker subprocess; its JSON row, or None (stderr printed) when it failed."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS, help=f"subset of {MODELS}")
    p.add_argument("--shape", nargs=3, type=int, default=[256, 256, 128])
    p.add_argument("--roi", type=int, default=96)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--sw-batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the default of ultralight3d predict)")
    p.add_argument(
        "--contention", action="store_true", help="also run each network beside a process keeping one core busy"
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 64x64x48 volume, 32³ windows")
    p.add_argument("--out", type=Path, default=None, help="Markdown output (default benchmarks/results/…)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--outdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    unknown = set(args.models) - set(MODELS)
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; choose from {MODELS}")
    if args.quick:
        args.shape, args.roi = [64, 64, 48], 32
    shape = tuple(args.shape)
    out = args.out or RESULTS / ("predict_cpu_quick.md" if args.quick else "predict_cpu.md")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "bench.nii.gz"
        _synthetic_volume(src, shape)
        for model in args.models:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                model,
                "--input",
                str(src),
                "--outdir",
                str(Path(tmp) / model),
                "--roi",
                str(args.roi),
                "--overlap",
                str(args.overlap),
                "--sw-batch-size",
                str(args.sw_batch_size),
                "--threads",
                str(args.threads),
            ]
            print(f"[{model}] running …", flush=True)
            row = _run_worker(cmd)
            if row is None:
                return 1
            print(f"[{model}] {row['wall_s']:.1f} s, peak RSS {row['peak_rss_mb'] / 1024:.2f} GB", flush=True)
            if args.contention:
                busy = _busy_process()
                try:
                    time.sleep(0.5)  # let it take its core
                    busy_row = _run_worker(cmd)
                finally:
                    busy.kill()
                    busy.wait()
                if busy_row is None:
                    return 1
                row["busy_wall_s"], row["busy_threads"] = busy_row["wall_s"], busy_row["threads"]
                print(f"[{model}] beside a busy core: {busy_row['wall_s']:.1f} s", flush=True)
            rows.append(row)
    table = _table(rows, shape, args)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"table written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
