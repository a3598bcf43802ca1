"""CPU speed of UltraLightUNet3D (plain and optimised) beside 3D UX-Net, DynUNet (nnU-Net), SegResNet and SwinUNETR.

One run prints (and with ``--output`` writes as Markdown):

1. the machine: CPU, PyTorch / oneDNN capability, threads, measured memory bandwidth (copy and triad);
2. a per-layer-type time breakdown (torch profiler) of UltraLightUNet3D-base, plain and optimised, at 1x1x96³;
3. forward latency at 1x1x96³ (median and min of ``--repeats`` after one warm-up) with conv/matmul GMACs
   (``torch.utils.flop_counter``), achieved GMAC/s and speed ratios against 3D UX-Net and DynUNet;
4. sliding-window predict of a 1x1x256x256x128 volume (MONAI ``sliding_window_inference``: ROI 96³, overlap 0.5,
   gaussian blending, sw_batch_size 1), one timed run per model.

Usage (the full run takes ~30 min on 2 cores, mostly the peers' sliding-window predicts)::

    python benchmarks/cpu_speed.py --threads 2 --output benchmarks/results/cpu_speed.md --overwrite
    python benchmarks/cpu_speed.py --quick                     # smoke run: T, base, SegResNet; small predict
    python benchmarks/cpu_speed.py --models ultralight_unet3d_base dynunet --no-predict --repeats 7
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ultralight3d.profile import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ultralight3d.networks  # noqa: E402,F401  (fills the registry)
from ultralight3d.errors import UserInputError  # noqa: E402
from ultralight3d.networks.blocks.attention import (  # noqa: E402
    ChannelAttention,
    GroupedAttentionGate,
    SpatialAttention,
)
from ultralight3d.networks.optimize import (  # noqa: E402
    optimize_for_inference,
    set_cpu_threads,
)
from ultralight3d.registry import create_model  # noqa: E402
from ultralight3d.utils import atomic_path, check_writable  # noqa: E402

__all__ = ["main", "build_model", "measure_bandwidth", "layer_breakdown", "count_gmacs"]

ULTRA = [f"ultralight_unet3d_{v}" for v in ("t", "s", "base", "m", "l")]
TINY = ["egeunet3d"]
PEERS = ["uxnet3d", "dynunet", "segresnet", "swinunetr"]
QUICK = ["ultralight_unet3d_t", "ultralight_unet3d_base", "segresnet"]
LABELS = {
    "ultralight_unet3d_t": "UltraLightUNet3D-T",
    "ultralight_unet3d_s": "UltraLightUNet3D-S",
    "ultralight_unet3d_base": "UltraLightUNet3D-base",
    "ultralight_unet3d_m": "UltraLightUNet3D-M",
    "ultralight_unet3d_l": "UltraLightUNet3D-L",
    "egeunet3d": "EGE-UNet3D",
    "uxnet3d": "3D UX-Net",
    "dynunet": "DynUNet (nnU-Net 96³ config)",
    "segresnet": "SegResNet (MONAI default)",
    "swinunetr": "SwinUNETR (feature_size 48)",
}


def build_model(name: str) -> nn.Module:
    """A model by benchmark name: a registry name or one of the MONAI peers ``dynunet``, ``segresnet``, ``swinunetr``.

    All take 1 input channel and give 2 output channels.
    """
    from monai.networks.nets import DynUNet, SegResNet, SwinUNETR

    if name == "dynunet":  # nnU-Net 3d_fullres plan for 96³ patches: 6 stages, 32..320 filters, instance norm
        return DynUNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            kernel_size=[[3, 3, 3]] * 6,
            strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
            upsample_kernel_size=[[2, 2, 2]] * 5,
            filters=[32, 64, 128, 256, 320, 320],
            norm_name="instance",
            deep_supervision=False,
            res_block=False,
        )
    if name == "segresnet":
        return SegResNet(spatial_dims=3, in_channels=1, out_channels=2)
    if name == "swinunetr":
        return SwinUNETR(in_channels=1, out_channels=2, feature_size=48)
    return create_model(name, in_channels=1, out_channels=2)


def count_gmacs(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Convolution / matmul multiply-adds (G) of one forward pass, counted on the meta device (no compute).

    Element-wise work, pooling and interpolation are not counted (as in ptflops' convention for the paper numbers).
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return counter.get_total_flops() / 2e9


def measure_bandwidth(n_mb: int = 256, repeats: int = 5) -> dict[str, float]:
    """Sustained memory bandwidth (GB/s, best of ``repeats``) of a float32 copy (2 x bytes moved) and a STREAM-style
    triad ``a = b + s * c`` (3 x bytes) with the current torch thread count."""
    n = n_mb * 2**20 // 4
    a, b, c = torch.empty(n), torch.rand(n), torch.rand(n)
    out: dict[str, float] = {}
    for label, fn, factor in (
        ("copy", lambda: a.copy_(b), 2),
        ("triad", lambda: torch.add(b, c, alpha=3.0, out=a), 3),
    ):
        fn()
        best = min(_timeit(fn) for _ in range(repeats))
        out[label] = factor * n * 4 / best / 1e9
    return out


def _timeit(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _time_forward(model: nn.Module, x: torch.Tensor, repeats: int) -> list[float]:
    with torch.inference_mode():
        model(x)  # warm-up (oneDNN primitive creation, allocator)
        return [_timeit(lambda: model(x)) for _ in range(repeats)]


def _time_predict(model: nn.Module, volume: torch.Tensor, roi: int, overlap: float) -> float:
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        model(volume[..., :roi, :roi, :roi])  # warm-up at the ROI size
        return _timeit(
            lambda: sliding_window_inference(
                volume, (roi,) * 3, sw_batch_size=1, predictor=model, overlap=overlap, mode="gaussian", progress=False
            )
        )


_ATTENTION = (ChannelAttention, SpatialAttention, GroupedAttentionGate)


def layer_breakdown(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Time (ms) per layer type of one forward pass, from the torch profiler.

    Categories: depthwise conv (by kernel), pointwise 1x1x1 conv (conv or matmul), other conv, norm, element-wise
    (activations, adds, multiplies, per-channel affine), attention (everything inside channel / spatial attention
    and the attention gates), upsampling, pooling, layout copies, other.
    """
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, _ATTENTION):
            orig = m.forward

            def wrapped(*args: Any, _orig: Callable[..., Any] = orig, **kw: Any) -> Any:
                with record_function("ATTENTION"):
                    return _orig(*args, **kw)

            m.forward = wrapped  # type: ignore[method-assign]
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(x)
    times: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        if ev.cpu_parent is not None:
            continue  # only top-level ops and ranges (children are inside their parent's time)
        cat = "attention (channel, spatial, gate)" if ev.name == "ATTENTION" else _category(ev.name, ev.input_shapes)
        times[cat] += ev.cpu_time_total / 1e3
    return dict(sorted(times.items(), key=lambda kv: -kv[1]))


def _category(name: str, shapes: list[Any]) -> str:
    if name in ("aten::conv3d", "aten::conv2d", "aten::convolution", "aten::_convolution"):
        inp, w = (shapes + [[], []])[:2]
        if len(w) >= 3 and len(inp) >= 2:
            k = "x".join(str(s) for s in w[2:])
            if w[1] == 1 and w[0] == inp[1] and inp[1] > 1:
                return f"depthwise conv {k}"
            if all(s == 1 for s in w[2:]):
                return "pointwise conv (1x1x1)"
            return f"other conv {k}"
        return "other conv"
    if name in ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul"):
        return "pointwise conv (1x1x1)"
    if "batch_norm" in name or "instance_norm" in name or "layer_norm" in name or "group_norm" in name:
        return "norm"
    if "upsample" in name or "interpolate" in name:
        return "upsampling"
    if "pool" in name:
        return "pooling"
    if name in ("aten::copy_", "aten::contiguous", "aten::clone", "aten::cat", "aten::to", "aten::_to_copy"):
        return "layout copies / cat"
    elementwise = ("add", "mul", "clamp", "relu", "hardtanh", "sigmoid", "addcmul", "gelu", "leaky_relu", "sub", "div")
    if any(name == f"aten::{e}" or name == f"aten::{e}_" for e in elementwise):
        return "element-wise (act, add, mul, affine)"
    return "other"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=None, help=f"subset of {ULTRA + TINY + PEERS} (default: all)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}, 2 repeats, predict on 128x128x96")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed forward passes per model (default 5)")
    p.add_argument("--no-predict", action="store_true", help="skip the sliding-window predict timings")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-layer-type profile")
    p.add_argument("--size", type=int, default=96, help="forward input edge (default 96)")
    p.add_argument("--volume", type=int, nargs=3, default=None, help="predict volume (default 256 256 128)")
    p.add_argument("--output", type=Path, default=None, help="also write the report as Markdown here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    args = p.parse_args(argv)

    models = args.models or (QUICK if args.quick else ULTRA + TINY + PEERS)
    unknown = [m for m in models if m not in ULTRA + TINY + PEERS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {ULTRA + TINY + PEERS}")
    repeats = 2 if args.quick and args.repeats == 5 else args.repeats
    volume_shape = tuple(args.volume) if args.volume else ((128, 128, 96) if args.quick else (256, 256, 128))
    if args.output:
        try:  # refuse before the long run, not after it
            check_writable(args.output, args.overwrite)
        except UserInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    set_cpu_threads(args.threads)
    torch.manual_seed(0)
    out: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        out.append(text)

    bw = measure_bandwidth(128 if args.quick else 256)
    cpu = cpu_name()
    emit("# UltraLightUNet3D CPU speed")
    emit()
    emit(
        f"- machine: {cpu}, {args.threads} torch threads, torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}"
    )
    emit(
        f"- measured memory bandwidth ({args.threads} threads, float32, best of 5): copy {bw['copy']:.1f} GB/s, "
        f"triad {bw['triad']:.1f} GB/s"
    )
    emit(
        f"- forward: 1x1x{args.size}³, torch.inference_mode, median (min) of {repeats} runs after one warm-up; "
        "GMAC = conv/matmul multiply-adds (torch FlopCounterMode); optimised = optimize_for_inference() defaults"
    )
    size = args.size
    x = torch.randn(1, 1, size, size, size)

    if not args.no_breakdown and any(m.startswith("ultralight") for m in models):
        ultra = [m for m in models if m.startswith("ultralight")]
        name = "ultralight_unet3d_base" if "ultralight_unet3d_base" in ultra else ultra[0]
        plain = build_model(name).eval()
        fast = optimize_for_inference(plain)
        bp, bf = layer_breakdown(plain, x), layer_breakdown(fast, x)
        cats = list(dict.fromkeys(list(bp) + list(bf)))
        tp, tf = sum(bp.values()), sum(bf.values())
        emit()
        emit(f"## Where the time goes: {name}, 1x1x{size}³ (torch profiler, one pass, ms; profiler adds overhead)")
        emit()
        rows = [
            [
                c,
                f"{bp.get(c, 0):.1f}",
                f"{100 * bp.get(c, 0) / tp:.0f}%",
                f"{bf.get(c, 0):.1f}",
                f"{100 * bf.get(c, 0) / tf:.0f}%",
            ]
            for c in cats
        ]
        rows.append(["**total**", f"**{tp:.1f}**", "", f"**{tf:.1f}**", ""])
        emit(_md_table(["layer type", "plain ms", "plain %", "optimised ms", "optimised %"], rows))

    results: list[dict[str, Any]] = []
    for name in models:
        try:
            net = build_model(name).eval()
            gmac = count_gmacs(net, (1, 1, size, size, size))
        except (ImportError, RuntimeError) as err:  # e.g. SwinUNETR without einops
            emit(f"- {name} skipped: {str(err).splitlines()[0]}")
            continue
        variants: list[tuple[str, nn.Module]] = [("plain", net)]
        if name in ULTRA + TINY:
            variants.append(("optimised", optimize_for_inference(net)))
        for kind, model in variants:
            ts = _time_forward(model, x, repeats)
            row = {"name": name, "kind": kind, "gmac": gmac, "median": statistics.median(ts), "min": min(ts)}
            row["predict"] = None
            if not args.no_predict:
                row["predict"] = _time_predict(model, torch.randn(1, 1, *volume_shape), 96, 0.5)
            results.append(row)
            pred = f", predict {row['predict']:.1f} s" if row["predict"] is not None else ""
            print(f"  {name} {kind}: {row['median'] * 1e3:.0f} ms (min {row['min'] * 1e3:.0f}){pred}", flush=True)
        del net, variants

    ref = {r["name"]: r for r in results if r["kind"] == "plain" and r["name"] in ("uxnet3d", "dynunet")}
    emit()
    if args.no_predict:
        emit(f"## Forward 1x1x{size}³")
    else:
        emit(f"## Forward 1x1x{size}³ and sliding-window predict of 1x1x{'x'.join(map(str, volume_shape))}")
        emit("(predict: MONAI sliding_window_inference, ROI 96³, overlap 0.5, gaussian, sw_batch_size 1, one run)")
    emit()
    header = ["model", "path", "GMAC", "forward median (min) ms", "GMAC/s", "x vs UX-Net", "x vs DynUNet", "predict s"]
    rows = []
    for r in results:
        ratios = [f"{ref[k]['median'] / r['median']:.1f}x" if k in ref else "-" for k in ("uxnet3d", "dynunet")]
        rows.append(
            [
                LABELS.get(r["name"], r["name"]),
                r["kind"],
                f"{r['gmac']:.2f}",
                f"{r['median'] * 1e3:.0f} ({r['min'] * 1e3:.0f})",
                f"{r['gmac'] / r['median']:.1f}",
                *ratios,
                f"{r['predict']:.1f}" if r["predict"] is not None else "-",
            ]
        )
    emit(_md_table(header, rows))
    if args.output:
        with atomic_path(args.output, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text("\n".join(out) + "\n")
        print(f"report written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
