"""Parameters, FLOPs, CPU latency and peak memory of the registered networks beside the published numbers.

FLOPs are counted with ptflops (``get_model_complexity_info``, pytorch backend) and reported, as in the papers, as
multiply-accumulates (MACs) of convolutions plus element counts of norms, activations, pooling and upsampling; the
column is labelled "GFLOPs (ptflops MACs)". Latency is the median wall time of ``repeats`` forward passes after
``warmup`` passes, batch 1, in ``torch.inference_mode()``, with the thread count stated in the table. Peak memory is
the growth of the peak resident set (Linux ``VmHWM``, reset before the first forward) over the resident set with
model and input allocated, measured in a fresh subprocess per model so
one model's allocations do not hide another's.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .registry import create_model, get_model_cfg, list_models

__all__ = [
    "ProfileRow",
    "PEERS",
    "build_network",
    "CPU_FEATURES",
    "cpu_name",
    "profile_models",
    "format_table",
    "machine_info",
    "write_report",
]


def _swin_unetr(in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, feature_size=48)


def _unetr(in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import UNETR

    return UNETR(in_channels=in_channels, out_channels=out_channels, img_size=(96, 96, 96))


def _dynunet_nnunet(in_channels: int, out_channels: int) -> nn.Module:
    """DynUNet in nnU-Net's 3d_fullres configuration for a 96³ patch: six stages, 3³ kernels, filters 32..320."""
    from monai.networks.nets import DynUNet

    return DynUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[[3, 3, 3]] * 6,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
        upsample_kernel_size=[[2, 2, 2]] * 5,
        filters=[32, 64, 128, 256, 320, 320],
        norm_name=("instance", {"affine": True}),
        act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        deep_supervision=False,
    )


#: peer networks (MONAI) measured beside ours; name -> builder(in_channels, out_channels)
PEERS: dict[str, Callable[[int, int], nn.Module]] = {
    "swin_unetr": _swin_unetr,
    "unetr": _unetr,
    "dynunet_nnunet": _dynunet_nnunet,
}


def build_network(name: str, setting: str = "default", in_channels: int = 1, out_channels: int = 2) -> nn.Module:
    """A registered model (``setting`` "default" or "paper": the paper's Table-10 settings) or a peer from PEERS."""
    if name in PEERS:
        return PEERS[name](in_channels, out_channels)
    kwargs: dict[str, Any] = {"in_channels": in_channels, "out_channels": out_channels}
    if setting == "paper":
        kwargs.update(get_model_cfg(name).paper_settings)
    return create_model(name, **kwargs)


@dataclass
class ProfileRow:
    """One line of the profile table (None where not measured or not published)."""

    model: str
    setting: str
    params_m: float
    gflops: float | None
    paper_params_m: float | None
    paper_gflops: float | None
    latency_ms: float | None = None
    peak_mem_mb: float | None = None
    path: str = "plain"

    @property
    def params_diff_pct(self) -> float | None:
        return None if not self.paper_params_m else 100 * (self.params_m - self.paper_params_m) / self.paper_params_m

    @property
    def gflops_diff_pct(self) -> float | None:
        if not self.paper_gflops or self.gflops is None:
            return None
        return 100 * (self.gflops - self.paper_gflops) / self.paper_gflops


def _count_gflops(net: nn.Module, input_shape: tuple[int, ...]) -> float | None:
    """ptflops MACs (G) of one forward of a ``(1, *input_shape)`` input; ``input_shape`` is ``(C, *spatial)``."""
    from ptflops import get_model_complexity_info

    try:
        macs, _ = get_model_complexity_info(
            net, input_shape, as_strings=False, print_per_layer_stat=False, verbose=False
        )
    except Exception:  # a peer with an op ptflops cannot trace: leave the cell empty rather than guess
        return None
    return None if macs is None else float(macs) / 1e9


def _fast_path(net: nn.Module) -> tuple[nn.Module, str]:
    """The optimised CPU inference path when available (eval mode), else the plain module."""
    try:
        from .networks.optimize import optimize_for_inference
    except ImportError:
        return net.eval(), "plain"
    try:
        return optimize_for_inference(net), "optimised"
    except Exception:
        return net.eval(), "plain"


def _rss_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process in MB from /proc (None where /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); ``ru_maxrss`` cannot be used because it survives exec."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _time_worker(
    name: str,
    setting: str,
    in_channels: int,
    size: int,
    threads: int,
    warmup: int,
    repeats: int,
    optimised: bool,
    queue: Any,
) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_network(name, setting, in_channels).eval()
    path = "plain"
    if optimised:
        net, path = _fast_path(net)
    x = torch.randn(1, in_channels, size, size, size)
    times = []
    base = _rss_mb("VmRSS")  # model and input allocated, no forward yet
    can_reset = _reset_peak_rss()
    with torch.inference_mode():
        for _ in range(warmup):
            net(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    peak = _rss_mb("VmHWM")
    mem = max(peak - base, 0.0) if (can_reset and peak is not None and base is not None) else None
    queue.put((1000 * statistics.median(times), mem, path))


def _measure_latency(
    name: str, setting: str, in_channels: int, size: int, threads: int, warmup: int, repeats: int, optimised: bool
) -> tuple[float, float, str]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_time_worker, args=(name, setting, in_channels, size, threads, warmup, repeats, optimised, queue)
    )
    proc.start()
    result = queue.get()
    proc.join()
    return result


def profile_models(
    names: Sequence[str] | None = None,
    peers: Sequence[str] | None = None,
    size: int = 96,
    in_channels: int = 1,
    threads: int | None = None,
    warmup: int = 1,
    repeats: int = 3,
    latency: bool = True,
    optimised: bool = True,
    progress: bool = True,
) -> list[ProfileRow]:
    """Profile registered models (each in its default and, for UltraLightUNet, its Table-10 setting) and peers.

    Args:
        names: registered models (default: all).
        peers: peer names from :data:`PEERS` (default: all); pass ``[]`` for none.
        size: cubic input size (96 in the papers).
        in_channels: input channels.
        threads: torch CPU threads for the latency runs (default: ``torch.get_num_threads()``).
        warmup: untimed forwards before timing.
        repeats: timed forwards (median reported).
        latency: measure latency and memory (False: counts only, fast).
        optimised: time registered models through the CPU fast path (``optimize_for_inference``) when available.
        progress: show a tqdm bar.

    Returns:
        one :class:`ProfileRow` per (model, setting).
    """
    from tqdm.auto import tqdm

    names = list_models() if names is None else list(names)
    peers = list(PEERS) if peers is None else list(peers)
    threads = threads or torch.get_num_threads()
    jobs: list[tuple[str, str]] = []
    for n in names:
        jobs.append((n, "default"))
        if get_model_cfg(n).paper_settings:
            jobs.append((n, "paper"))
    jobs += [(p, "default") for p in peers]
    rows: list[ProfileRow] = []
    for name, setting in tqdm(jobs, desc="profile", disable=not progress):
        torch.manual_seed(0)
        net = build_network(name, setting, in_channels).eval()
        cfg = get_model_cfg(name) if name not in PEERS else None
        params = sum(p.numel() for p in net.parameters()) / 1e6
        cube = (size,) * 3
        paper_2d = cfg is not None and len(cfg.paper_input_size) != 3
        if setting == "paper" and cfg is not None:  # a 2D paper (EGE-UNet: 3x256²) is counted on its own input
            shape = (int(cfg.paper_settings.get("in_channels", 1)), *(cfg.paper_input_size if paper_2d else cube))
        else:
            shape = (in_channels, *cube)
        # a 3D default row is not held against a 2D paper's numbers
        comparable = cfg is not None and (setting == "paper" or not paper_2d)
        row = ProfileRow(
            model=name,
            setting=setting,
            params_m=params,
            gflops=_count_gflops(net, shape),
            paper_params_m=cfg.paper_params_m if cfg and comparable else None,
            paper_gflops=cfg.paper_gflops if cfg and comparable else None,
        )
        del net
        if latency and (setting == "default" or name in PEERS):
            row.latency_ms, row.peak_mem_mb, row.path = _measure_latency(
                name, setting, in_channels, size, threads, warmup, repeats, optimised and name not in PEERS
            )
        rows.append(row)
    return rows


#: the x86 vector extensions that decide CPU inference speed, as ``/proc/cpuinfo`` spells them, and as tables say them.
CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512_VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512_BF16",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}


def cpu_name() -> str:
    """The CPU model name with its vector extensions (:data:`CPU_FEATURES`), e.g. ``"AMD EPYC (AVX2)"``: a cloud VM
    may report one model name for CPUs with and without AVX-512 (``/proc/cpuinfo`` on Linux, else
    ``platform.processor()`` without the extensions)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    name, flags = "unknown CPU", set[str]()
    for line in info.splitlines():
        if line.startswith("model name") and name == "unknown CPU":
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    found = [label for flag, label in CPU_FEATURES.items() if flag in flags]
    return f"{name} ({', '.join(found)})" if found else name


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """CPU model, core count, torch/MONAI versions, thread count and date, for the table caption."""
    import monai

    return {
        "cpu": cpu_name(),
        "cores": mp.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{suffix}"


def format_table(rows: Sequence[ProfileRow], size: int = 96) -> str:
    """Markdown table; latency ratios are relative to 3D UX-Net measured in the same run (when present)."""
    ref = next((r.latency_ms for r in rows if r.model == "uxnet3d" and r.latency_ms), None)
    lines = [
        f"| model | setting | params (M) | paper (M) | Δ params | GFLOPs @{size}³ (ptflops MACs) | paper G | Δ FLOPs "
        "| CPU latency (ms) | × faster than 3D UX-Net | peak mem (MB) | path |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        speed = None if not (ref and r.latency_ms) else ref / r.latency_ms
        lines.append(
            f"| {r.model} | {r.setting} | {r.params_m:.4f} | {_fmt(r.paper_params_m, '.3f')} | "
            f"{_fmt(r.params_diff_pct, '+.1f', '%')} | {_fmt(r.gflops, '.2f')} | {_fmt(r.paper_gflops, '.2f')} | "
            f"{_fmt(r.gflops_diff_pct, '+.1f', '%')} | {_fmt(r.latency_ms, '.0f')} | {_fmt(speed, '.1f', '×')} | "
            f"{_fmt(r.peak_mem_mb, '.0f')} | {r.path if r.latency_ms else '–'} |"
        )
    return "\n".join(lines)


def write_report(rows: Sequence[ProfileRow], path: str | Path, size: int = 96, threads: int | None = None) -> Path:
    """Write the markdown table with its machine caption, and the raw rows as JSON beside it (atomically)."""
    from .utils import atomic_path

    info = machine_info(threads)
    caption = (
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads; torch {info['torch']}, "
        f"MONAI {info['monai']}, Python {info['python']}; {info['date']}. Input 1×1×{size}³, batch 1, float32. "
        "'paper' rows use the Table-10 settings (1-channel input repeated to 3, no MKDC-branch norm, 2 classes); "
        "latency is measured on the default rows."
    )
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(f"{caption}\n\n{format_table(rows, size)}\n", encoding="utf-8")
    with atomic_path(path.with_suffix(".json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps({"machine": info, "rows": [asdict(r) for r in rows]}, indent=2), encoding="utf-8")
    return path
