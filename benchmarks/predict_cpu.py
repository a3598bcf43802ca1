"""End-to-end CPU ``predict`` benchmark: read -> preprocess -> network -> stitch -> invert -> write, per network.

Each network runs in its own subprocess (so peak RSS is its own) through the same :class:`Predictor` the CLI uses, on
one synthetic CT-like 256x256x128 NIfTI volume (0.8x0.8x2.5 mm, RAS: air at -1000 HU around a body ellipsoid with a
brighter organ; generic z-score, no resampling), 96³ windows, overlap 0.5, Gaussian blending, random weights.
Networks: UltraLightUNet3D base and M, 3D UX-Net, and MONAI DynUNet in the nnU-Net 3d_fullres configuration for 96³
patches (nnU-Net pools an axis while it is >= 2 x 4 voxels: 96->48->24->12->6, i.e. 4 poolings, 5 stages, 3x3x3
kernels, 32-64-128-256-320 filters, instance norm, leaky ReLU).

Usage::

    python benchmarks/predict_cpu.py                       # full run (slow on a laptop: UX-Net takes many minutes)
    python benchmarks/predict_cpu.py --models ultralight_unet3d_base dynunet_nnunet
    python benchmarks/predict_cpu.py --quick               # smoke test: 64x64x48 volume, 32³ windows
    python benchmarks/predict_cpu.py --models ultralight_unet3d_base --contention   # + a row beside a busy process
    flock /tmp/ul3d_cpu.lock python benchmarks/predict_cpu.py --models ultralight_unet3d_base --nnunet
    flock /tmp/ul3d_cpu.lock python benchmarks/predict_cpu.py --models ultralight_unet3d_base --nnunet --quick

``--contention`` runs each network a second time while another process keeps one core busy (``python -c 'while True:
pass'``) and reports that run's total time and its ratio to the quiet run (issue 15: at most ~2.5x on 2 cores).

``--nnunet`` adds whole commands against nnU-Net v2's own predictor, run one after the other on the same input file:
nnU-Net (from ``--bench-venv``, never a dependency of this package) plans a synthetic dataset of the same kind
(3 CT-like cases of the benchmark's size and spacing, label = the organ) with its own ``nnUNetv2_extract_fingerprint``
and ``nnUNetv2_plan_experiment``; ``benchmarks/nnunet_random_model.py`` builds the 3d_fullres network of that plan
with random weights into a model folder; ``nnUNetv2_predict_from_modelfolder -f 0 -device cpu --disable_tta``
(mirroring off; its default processes and torch threads) is timed as a whole process beside ``ultralight3d predict
--checkpoint`` (UltraLightUNet3D base, random weights with a model card, the windows above). Wall time and peak RSS
(``os.wait4``: the largest single process of the tree) of each command, and the summed PSS of its process tree
(sampled every 0.5 s). Run it alone on the machine (``flock``). Prerequisite (once, outside the repository)::

    python3.11 -m venv /work/bench-venv && /work/bench-venv/bin/pip install torch==2.13.0 nnunetv2
    /work/bench-venv/bin/pip uninstall -y torchvision   # PyPI's is a CUDA build: it cannot load beside a CPU torch

Writes a Markdown table to ``benchmarks/results/predict_cpu.md`` (``predict_cpu_quick.md`` with ``--quick``); with
``--nnunet`` the stage table of ``--models`` and the nnU-Net comparison go to ``predict_cpu_nnunet.md``
(``predict_cpu_nnunet_quick.md``), leaving the full table alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package: _bench_common, real_data_cpu

MODELS = ["ultralight_unet3d_base", "ultralight_unet3d_m", "uxnet3d", "dynunet_nnunet"]
BASELINE = "dynunet_nnunet"
STAGES = ["read", "preprocess", "network", "stitch", "invert", "write"]
#: engine rows (``--engines``): ``engine`` or ``engine-precision`` (see ``ultralight3d predict --engine/--precision``;
#: a row without a precision runs fp32, except ``auto``: the default engine and precision, as ``predict`` runs them)
ENGINE_ROWS = ["auto", "torch", "torch-bf16", "openvino", "openvino-bf16", "onnxruntime"]
DEFAULT_ENGINES = ["torch", "openvino", "auto"]
REFERENCE_ENGINE = "torch"  # the label map every other engine row is compared with
RESULTS = Path(__file__).resolve().parent / "results"
SPACING = (0.8, 0.8, 2.5)  # mm, x y z (RAS)
OURS = "ultralight_unet3d_base"  # our side of the nnU-Net comparison
NNUNET_ID = 617
NNUNET_DATASET = f"Dataset{NNUNET_ID}_UL3DSyntheticCT"
NNUNET_CASES = 3
NNUNET_CONFIG = "3d_fullres"
RANDOM_MODEL = Path(__file__).resolve().parent / "nnunet_random_model.py"
LABELS = [{"value": 0, "name": "background"}, {"value": 1, "name": "organ"}]
#: our whole commands against nnU-Net, in order: (label, extra predict options)
OURS_RUNS: list[tuple[str, list[str]]] = [
    ("first run", []),
    ("default", []),
    ("--precision fp32", ["--precision", "fp32"]),
    ("--engine torch", ["--engine", "torch"]),
    ("--crop-foreground (less work)", ["--crop-foreground"]),
]


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
    engine, _, precision = args.engine.partition("-")
    model: Any = net
    if engine == "onnxruntime":  # an exported file, as `ultralight3d export` writes it (export not timed)
        from ultralight3d.export import export_onnx

        model = export_onnx(net, Path(args.outdir + ".onnx"), example_size=[args.roi] * 3, overwrite=True)
    rss_model = _rss_mb()
    start = time.perf_counter()
    predictor = Predictor(
        model,
        engine=engine,
        precision=precision or ("auto" if engine == "auto" else "fp32"),
        preprocessing=build_preprocessing("generic", {}),
        roi_size=[args.roi] * 3,
        sw_batch_size=args.sw_batch_size,
        overlap=args.overlap,
        device="cpu",
        stitch_device="cpu",
        progress=False,
        name=args.worker,
    )
    prepare_s = time.perf_counter() - start  # the fast path's copy, or OpenVINO's export (cached) + read
    start = time.perf_counter()
    run = predictor.predict(args.input, args.outdir, overwrite=True, dicom_seg=False)
    wall = time.perf_counter() - start
    case = run.cases[0]
    if not case.ok:
        raise SystemExit(f"{args.worker} failed: {case.error}")
    bare_s, loop_s = _window_loops(predictor, args)
    print(
        json.dumps(
            {
                "model": args.worker,
                "engine": args.engine,
                "prepare_s": prepare_s,
                "ran": f"{case.engine} {case.precision}",
                "bare_loop_s": bare_s,
                "warm_loop_s": loop_s,
                "label_file": str(case.files.get("nifti", "")),
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


def _synthetic_ct(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume (int16 HU, x y z at :data:`SPACING`) and its label (uint8, 1 = the organ).

    Air (-1000 HU) around a body ellipsoid (soft tissue, 40 HU) with a fat rim (-100 HU), a spine-like bone cylinder
    (700 HU) and a contrast-enhanced organ blob (150 HU) whose position and size vary with ``seed``; Gaussian noise
    (15 HU).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    half = [n * s / 2 for n, s in zip(shape, SPACING)]  # mm
    x, y, z = (((np.arange(n, dtype=np.float32) + 0.5) * s - h) for n, s, h in zip(shape, SPACING, half))
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    body = (x / (0.85 * half[0])) ** 2 + (y / (0.65 * half[1])) ** 2 + (z / (1.3 * half[2])) ** 2
    centre = rng.uniform(-0.25, 0.25, size=3) * np.array(half) * np.array([0.8, 0.6, 0.6])
    radii = rng.uniform(0.3, 0.42, size=3) * np.array(half) * np.array([1.0, 0.8, 0.7])
    organ = sum(((c - m) / r) ** 2 for c, m, r in zip((x, y, z), centre, radii)) < 1
    spine = (x / (0.06 * half[0])) ** 2 + ((y + 0.45 * half[1]) / (0.06 * half[1])) ** 2 < 1
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[body < 1] = -100.0
    vol[body < 0.8] = 40.0
    vol[np.broadcast_to(spine, shape) & (body < 0.8)] = 700.0
    label = organ & (body < 0.8)
    vol[label] = 150.0
    vol += rng.normal(0.0, 15.0, size=shape).astype(np.float32)
    return np.clip(vol, -1024, 3071).astype(np.int16), label.astype(np.uint8)


def _save_nifti(array: np.ndarray, path: Path) -> None:
    import nibabel as nib
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*SPACING, 1.0])), str(path))


def _synthetic_volume(path: Path, shape: tuple[int, int, int]) -> None:
    """The benchmark input: a CT-like volume (seed 0, a case nnU-Net's planning dataset does not contain)."""
    _save_nifti(_synthetic_ct(shape, seed=0)[0], path)


def _busy_process() -> subprocess.Popen:
    """Another process keeping one core busy (the contention row)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _window_loops(predictor: Any, args: argparse.Namespace) -> tuple[float, float]:
    """The predictor's window loop against a bare one, both warm, in turns (bare, predictor, bare, predictor; the
    shorter of each pair of times): ``Predictor.predict_probabilities`` on the preprocessed input (windows, blending,
    softmax) and a bare ``monai.inferers.sliding_window_inference`` over the same windows (ROI, overlap,
    sw_batch_size, Gaussian blending) with the network the case ran on, plus the same softmax.

    Returns:
        (bare seconds, predictor seconds).
    """
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference

    from ultralight3d.io import read_image

    image = read_image(args.input)
    mt = MetaTensor(torch.from_numpy(np.ascontiguousarray(image.array)), affine=torch.as_tensor(image.affine))
    data = predictor.preprocessing({"image": mt})["image"]
    x = data.as_tensor()[None].float()
    net = predictor._models_for(x.shape[2:], 1)[0]

    def bare() -> None:
        with torch.inference_mode():
            logits = sliding_window_inference(x, [args.roi] * 3, args.sw_batch_size, net, args.overlap, mode="gaussian")
        torch.softmax(logits.float(), dim=1)  # type: ignore[union-attr]

    times: dict[str, list[float]] = {"bare": [], "loop": []}
    for _ in range(2):
        for name, run in (("bare", bare), ("loop", lambda: predictor.predict_probabilities(data))):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return min(times["bare"]), min(times["loop"])


def _table(rows: list[dict], shape, args) -> str:
    from ultralight3d.profile import cpu_name  # imports torch: not at module level, which the workers also run

    base = next((r for r in rows if r["model"] == BASELINE and r["engine"] == REFERENCE_ENGINE), None)
    quick = " (QUICK SMOKE RUN on a tiny volume: not a benchmark)" if args.quick else ""
    lines = [
        f"# End-to-end CPU predict: {shape[0]}x{shape[1]}x{shape[2]} volume at {_fmt_spacing(SPACING)} mm, "
        f"{args.roi}³ windows, overlap {args.overlap}, sw_batch_size {args.sw_batch_size}{quick}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {rows[0]['threads'] if rows else '?'}, "
        f"torch {rows[0].get('torch', '?') if rows else '?'}; Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Command: `python benchmarks/predict_cpu.py {' '.join(sys.argv[1:])}`.",
        "",
        "Random weights; each network in its own process (peak RSS is that process's maximum resident set). Input: a "
        "synthetic CT-like volume (int16 HU, RAS). Stages: read = file load + input checks; preprocess = reorientation "
        "+ z-score (no resampling); network = the forward passes; stitch = sliding-window bookkeeping, Gaussian "
        "blending and softmax outside the forward passes; invert = argmax + back to the input grid; write = NIfTI + "
        ".seg.nrrd + colour tables + summary.",
        "",
        "engine: the row's `--engine` (`-bf16`: `--precision bf16`; rows other than `auto` fix the precision to fp32 "
        "unless they say bf16); prepare = building the "
        "predictor (the torch fast path's copy; OpenVINO: the ONNX export, cached after the first run, read and "
        "compile); network vs torch = this row's network time / the torch row's of the same network; labels = torch: "
        "voxels whose label equals the torch row's (random weights: near-ties everywhere, so a harsh test of the "
        "arithmetic; the agreement on trained models is in `engines_cpu.md`).",
        "",
        "ms per window = network / the sliding window's windows (every call to the engine: the forward pass and "
        "the copies around it). ran: the engine and precision the case ran with (`auto`: chosen by `predict`); bare "
        "loop = after the case, in the same process and in turns with the predictor's own window loop "
        "(`predict_probabilities`: windows, blending, softmax; twice each, the shorter time of each), a bare "
        "`monai.inferers.sliding_window_inference` over the same preprocessed volume, windows and Gaussian blending "
        "with the same compiled network and the same softmax; loop vs bare = the predictor's window loop / the bare "
        "loop, both warm (the case's own network + stitch also hold OpenVINO's first compile and the first windows).",
        "",
        "| network | engine | ran | params (M) | prepare (s) | "
        + " | ".join(f"{s} (s)" for s in STAGES)
        + " | total (s) | network share | ms per window | network vs torch | bare loop (s) | loop vs bare |"
        " labels = torch |"
        " peak RSS (GB) | time vs DynUNet | RSS vs DynUNet |"
        + (" busy core: total (s) | threads | slowdown |" if args.contention else ""),
        "|---|---|---|---:|---:|" + "---:|" * (len(STAGES) + 10) + ("---:|" * 3 if args.contention else ""),
    ]
    windows = _windows_monai(shape, [args.roi] * 3, args.overlap)
    for r in rows:
        ref = next((q for q in rows if q["model"] == r["model"] and q["engine"] == REFERENCE_ENGINE), None)
        net_ratio = f"{t_net(r) / t_net(ref):.2f}x" if ref else "n/a"
        agree = f"{100 * r['agreement']:.3f}%" if r.get("agreement") is not None else "n/a"
        t = r["timings"]
        ratio_t = f"{r['wall_s'] / base['wall_s']:.2f}x" if base else "n/a"
        ratio_m = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x" if base else "n/a"
        share = f"{100 * t.get('network', 0) / r['wall_s']:.0f}%"
        bare = r.get("bare_loop_s")
        loop = f"{r['warm_loop_s'] / bare:.2f}x" if bare and r.get("warm_loop_s") else "n/a"
        lines.append(
            f"| {r['model']} | {r['engine']} | {r.get('ran', 'n/a')} | {r['params_m']:.3f} | {r['prepare_s']:.2f} | "
            + " | ".join(f"{t.get(s, 0):.2f}" for s in STAGES)
            + f" | {r['wall_s']:.2f} | {share} | {1000 * t.get('network', 0) / windows:.0f} | {net_ratio} |"
            f" {f'{bare:.2f}' if bare else 'n/a'} | {loop} | {agree} |"
            f" {r['peak_rss_mb'] / 1024:.2f} | {ratio_t} | {ratio_m} |"
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


def t_net(row: dict) -> float:
    """The network stage's seconds of a row."""
    return float(row["timings"].get("network", 0.0))


def _agreement(path: str, reference: str) -> float | None:
    """Fraction of voxels whose label equals the reference run's (None when a file is missing)."""
    import nibabel as nib
    import numpy as np

    if not (path and reference and Path(path).is_file() and Path(reference).is_file()):
        return None
    a, b = (np.asarray(nib.load(f).dataobj) for f in (path, reference))
    return float((a == b).mean()) if a.shape == b.shape else 0.0


def _run_worker(cmd: list[str]) -> dict | None:
    """One worker subprocess; its JSON row, or None (stderr printed) when it failed."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _bench_row(args: argparse.Namespace, model: str, engine: str, src: Path, outdir: Path) -> dict | None:
    """One network with one engine in its own process (and again beside a busy core with ``--contention``)."""

    def command(folder: Path) -> list[str]:
        return [
            *(sys.executable, __file__, "--worker", model, "--engine", engine, "--input", str(src)),
            *("--outdir", str(folder), "--roi", str(args.roi), "--overlap", str(args.overlap)),
            *("--sw-batch-size", str(args.sw_batch_size), "--threads", str(args.threads)),
        ]

    print(f"[{model} {engine}] running …", flush=True)
    row = _run_worker(command(outdir))
    if row is None:
        return None
    print(f"[{model} {engine}] {row['wall_s']:.1f} s, peak RSS {row['peak_rss_mb'] / 1024:.2f} GB", flush=True)
    if args.contention:
        busy = _busy_process()
        try:
            time.sleep(0.5)  # let it take its core
            busy_row = _run_worker(command(outdir.with_name(outdir.name + "-busy")))
        finally:
            busy.kill()
            busy.wait()
        if busy_row is None:
            return None
        row["busy_wall_s"], row["busy_threads"] = busy_row["wall_s"], busy_row["threads"]
        print(f"[{model} {engine}] beside a busy core: {busy_row['wall_s']:.1f} s", flush=True)
    return row


# ------------------------------------------------------------------------------------------ nnU-Net comparison
def _fmt_spacing(spacing: Any) -> str:
    return "x".join(f"{float(s):g}" for s in spacing)


def _fmt_shape(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


def _log_tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.is_file() else ""


def measure_command(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd`` as a whole process (output to ``log``): exit code, wall seconds, peak RSS and peak tree PSS.

    Peak RSS is ``ru_maxrss`` of ``os.wait4`` on the command: the largest resident set any single process of its tree
    reached (the command itself or a descendant it waited for; Linux), not a sum over concurrent processes. Beside
    it, the summed proportional set size of the whole tree, sampled every 0.5 s (``_bench_common.TreeMemory``).
    """
    from _bench_common import TreeMemory

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(cwd) if cwd else None)
        mem = TreeMemory(proc.pid, interval=0.5)
        mem.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            mem.stop()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        pss = mem.stop()
    return {"exit": proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0, "peak_pss_mb": pss}


def _check_call(cmd: list[str], log: Path, env: dict[str, str], what: str) -> float:
    """Run a preparation command (not timed for the table beyond its wall seconds); SystemExit when it fails."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        print(_log_tail(log), file=sys.stderr)
        raise SystemExit(f"{what} failed (exit {rc}); its output is above")
    return time.perf_counter() - start


def nnunet_plan(venv: Path, work: Path, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Write the synthetic CT dataset in nnU-Net raw format under ``work`` and let nnU-Net fingerprint and plan it.

    Returns the plans (``nnUNetPlans.json``) and the seconds fingerprinting and planning took.
    """
    from real_data_cpu import _bench_env

    raw = work / "prep" / "nnUNet_raw" / NNUNET_DATASET
    for i in range(1, NNUNET_CASES + 1):
        image, label = _synthetic_ct(shape, seed=i)
        _save_nifti(image, raw / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        _save_nifti(label, raw / "labelsTr" / f"case_{i:03d}.nii.gz")
    (raw / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "organ": 1},
                "numTraining": NNUNET_CASES,
                "file_ending": ".nii.gz",
                "name": "synthetic CT-like volumes (ultralight3d predict benchmark)",
            },
            indent=2,
        )
    )
    env = _bench_env(venv, work, work / "nnUNet_results")
    bin_dir = venv / "bin"
    t_fp = _check_call(
        [str(bin_dir / "nnUNetv2_extract_fingerprint"), "-d", str(NNUNET_ID), "-np", str(os.cpu_count() or 1),
         "--verify_dataset_integrity"],
        work / "nnunet_fingerprint.log", env, "nnUNetv2_extract_fingerprint",
    )  # fmt: skip
    t_plan = _check_call(
        [str(bin_dir / "nnUNetv2_plan_experiment"), "-d", str(NNUNET_ID)],
        work / "nnunet_plan.log",
        env,
        "nnUNetv2_plan_experiment",
    )
    plans_file = work / "prep" / "nnUNet_preprocessed" / NNUNET_DATASET / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    if NNUNET_CONFIG not in plans["configurations"]:
        raise SystemExit(f"nnU-Net planned no {NNUNET_CONFIG} configuration (only {list(plans['configurations'])})")
    return {"plans": plans, "plans_file": plans_file, "raw": raw, "fingerprint_s": t_fp, "plan_s": t_plan}


def nnunet_model_folder(venv: Path, work: Path, planned: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The random-weights model folder (``benchmarks/nnunet_random_model.py`` in the bench venv) and its network."""
    from real_data_cpu import _bench_env

    model = work / "nnunet_model"
    log = work / "nnunet_random_model.log"
    cmd = [str(venv / "bin" / "python"), str(RANDOM_MODEL), "--plans", str(planned["plans_file"]), "--dataset-json",
           str(planned["raw"] / "dataset.json"), "--out", str(model), "--configuration", NNUNET_CONFIG]  # fmt: skip
    _check_call(cmd, log, _bench_env(venv, work, work / "nnUNet_results"), "nnunet_random_model.py")
    return model, json.loads(log.read_text().strip().splitlines()[-1])


def ours_checkpoint(path: Path, roi: int) -> Path:
    """Random UltraLightUNet3D base weights (seed 0) and their model card, so ``ultralight3d predict --checkpoint``
    rebuilds the network alone: generic protocol (z-score, no resampling), 2 classes, ``roi``³ patches."""
    import torch

    from ultralight3d import create_model
    from ultralight3d.checkpoint import ModelCard, write_model_card

    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": len(LABELS)}
    torch.manual_seed(0)
    net = create_model(OURS, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    card = ModelCard(
        model_name=OURS,
        network_kwargs=kwargs,
        in_channels=1,
        out_channels=len(LABELS),
        channel_names=["CT"],
        labels=LABELS,
        protocol="generic",
        patch_size=[roi] * 3,
        extra={"note": "random weights (benchmarks/predict_cpu.py --nnunet)"},
    )
    write_model_card(path, card)
    return path


def _windows_monai(image: Any, roi: Any, overlap: float) -> int:
    """Sliding windows MONAI's inferer visits (``_get_scan_interval`` / ``dense_patch_slices``)."""
    n = 1
    for size, r in zip(image, roi):
        interval = max(int(r * (1 - overlap)), 1) if size > r else r
        n *= 1 if size <= r else math.ceil((size - r) / interval) + 1
    return n


def _windows_nnunet(image: Any, patch: Any, step: float) -> int:
    """Tiles nnU-Net's ``compute_steps_for_sliding_window`` gives (the image padded to the patch first)."""
    n = 1
    for size, p in zip(image, patch):
        n *= math.ceil((max(size, p) - p) / (p * step)) + 1
    return n


def run_nnunet_comparison(args: argparse.Namespace, src: Path, work: Path, shape: tuple[int, int, int]) -> dict:
    """nnU-Net's plan and random model, then both whole commands on ``src``; everything the section needs."""
    from _bench_common import CLI, REPO
    from real_data_cpu import _bench_env, _bench_versions

    venv = args.bench_venv
    print("[nnU-Net] writing the synthetic dataset, fingerprint and plan …", flush=True)
    planned = nnunet_plan(venv, work, shape)
    model, network = nnunet_model_folder(venv, work, planned)
    plans = planned["plans"]
    cfg = plans["configurations"][NNUNET_CONFIG]
    print(f"[nnU-Net] {NNUNET_CONFIG}: patch {cfg['patch_size']}, spacing {cfg['spacing']}, "
          f"{network['n_stages']} stages {network['features_per_stage']}, {network['parameters'] / 1e6:.1f} M "
          "parameters", flush=True)  # fmt: skip

    ckpt = ours_checkpoint(work / "ours" / "model.pt", args.roi)
    env = {**os.environ, "ULTRALIGHT3D_CACHE": str(work / "engine_cache")}  # starts empty: the first run exports
    ours_runs = []
    for label, extra in OURS_RUNS:
        out_dir = work / f"ours_pred_{len(ours_runs)}"
        ours_cmd = [sys.executable, "-c", CLI, "predict", "-i", str(src), "-o", str(out_dir), "--checkpoint", str(ckpt),
                    "--device", "cpu", "--roi-size", *[str(args.roi)] * 3, "--overlap", str(args.overlap),
                    "--sw-batch-size", str(args.sw_batch_size), *extra,
                    *(["--threads", str(args.threads)] if args.threads else [])]  # fmt: skip
        print(f"[ultralight3d predict, {label}] running …", flush=True)
        run = measure_command(ours_cmd, work / f"ours_predict_{len(ours_runs)}.log", env=env, cwd=REPO)
        if run["exit"] != 0:
            print(_log_tail(work / f"ours_predict_{len(ours_runs)}.log"), file=sys.stderr)
            raise SystemExit(f"ultralight3d predict ({label}) failed (exit {run['exit']})")
        summary = json.loads((out_dir / "summary.json").read_text())
        case = summary["cases"][0]
        if case.get("status") != "ok":
            raise SystemExit(f"ultralight3d predict: case not ok: {case}")
        run.update(label=label, threads=summary.get("threads"), in_process_s=case.get("time_s"), cmd=ours_cmd)
        run.update(engine=case.get("engine") or summary.get("engine"), precision=case.get("precision", "?"))
        box = case.get("crop_box")  # --crop-foreground: the windows of the box it ran on
        run["windows"] = _windows_monai([b - a for a, b in box], [args.roi] * 3, args.overlap) if box else None
        print(f"[ultralight3d predict, {label}] {run['wall_s']:.1f} s, peak RSS {run['peak_rss_mb'] / 1024:.2f} GB",
              flush=True)  # fmt: skip
        ours_runs.append(run)
    ours = ours_runs[1]  # the default command with the engine cache filled: what a user's every later run costs

    nn_out = work / "nnunet_pred"
    nn_cmd = [str(venv / "bin" / "nnUNetv2_predict_from_modelfolder"), "-i", str(src.parent), "-o", str(nn_out),
              "-m", str(model), "-f", "0", "-device", "cpu", "--disable_tta"]  # fmt: skip
    print("[nnUNetv2_predict_from_modelfolder] running (minutes) …", flush=True)
    nn = measure_command(nn_cmd, work / "nnunet_predict.log", env=_bench_env(venv, work, work / "nnUNet_results"))
    if nn["exit"] != 0 or not (nn_out / src.name.replace("_0000.nii.gz", ".nii.gz")).is_file():
        print(_log_tail(work / "nnunet_predict.log"), file=sys.stderr)
        raise SystemExit(f"nnUNetv2_predict_from_modelfolder failed (exit {nn['exit']})")
    nn.update(cmd=nn_cmd)
    print(f"[nnUNetv2_predict_from_modelfolder] {nn['wall_s']:.1f} s, peak RSS {nn['peak_rss_mb'] / 1024:.2f} GB",
          flush=True)  # fmt: skip

    # the grid each side computes on, in nnU-Net's axis order (z y x of the NIfTI, then transpose_forward)
    transpose = plans.get("transpose_forward", [0, 1, 2])
    in_spacing = [SPACING[::-1][i] for i in transpose]
    in_shape = [shape[::-1][i] for i in transpose]
    nn_shape = [round(n * s / t) for n, s, t in zip(in_shape, in_spacing, cfg["spacing"])]
    return {
        "plans": plans,
        "config": cfg,
        "network": network,
        "fingerprint_s": planned["fingerprint_s"],
        "plan_s": planned["plan_s"],
        "ours": ours,
        "ours_runs": ours_runs,
        "nnunet": nn,
        "in_spacing_nn": in_spacing,
        "in_shape_nn": in_shape,
        "nn_shape": nn_shape,
        "nn_windows": _windows_nnunet(nn_shape, cfg["patch_size"], 0.5),
        "ours_windows": _windows_monai(shape, [args.roi] * 3, args.overlap),
        "ours_params_m": sum(v.numel() for v in _state_dict(ckpt).values()) / 1e6,
        "versions": _bench_versions(venv),
        "nnunet_threads": os.cpu_count(),
        "work": str(work),
    }


def _state_dict(path: Path) -> dict:
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def _nnunet_section(res: dict, shape: tuple[int, int, int], args: argparse.Namespace) -> str:
    """The Markdown section of the whole-command comparison."""
    ours, nn, cfg, net = res["ours"], res["nnunet"], res["config"], res["network"]
    v = res["versions"]
    resampled = [int(a) for a in res["nn_shape"]] != [int(b) for b in res["in_shape_nn"]]
    nn_grid = (
        f"resampled to its plan spacing {_fmt_spacing(cfg['spacing'])} mm: {_fmt_shape(res['nn_shape'])}"
        if resampled
        else f"plan spacing {_fmt_spacing(cfg['spacing'])} mm = the input's: no resampling, "
        f"{_fmt_shape(res['nn_shape'])}"
    )
    speedup = nn["wall_s"] / ours["wall_s"]
    quick = " (QUICK SMOKE RUN on a tiny volume: not a benchmark)" if args.quick else ""
    ours_cmd = ("ultralight3d " + " ".join(ours["cmd"][3:])).replace(res["work"], "$TMP")
    ours_cmd = ours_cmd.replace(sys.executable, "python")
    nn_cmd = ("nnUNetv2_predict_from_modelfolder " + " ".join(nn["cmd"][1:])).replace(res["work"], "$TMP")
    lines = [
        "",
        f"## Whole command against nnU-Net v2's own predictor, mirroring off{quick}",
        "",
        f"Same input file (the {_fmt_shape(shape)} CT-like volume above, {_fmt_spacing(SPACING)} mm), same CPU, one "
        "command after the other, random weights on both sides. Time = wall seconds of the whole process (start-up, "
        "imports, worker processes, read, preprocessing, sliding window, export). Peak RSS = `ru_maxrss` from "
        "`os.wait4` on the command: the largest resident set of any single process of its tree (nnU-Net: its main "
        "process, spawned preprocessing and export workers and its multiprocessing Manager, all waited for), not a "
        "sum over concurrent processes; tree PSS = the summed proportional set size of the whole process tree "
        "(shared pages split), sampled every 0.5 s.",
        "",
        "| tool | network | params (M) | patch | windows | grid computed on | torch threads | whole command (s) "
        "| peak RSS (GB) | peak tree PSS (GB) | time vs nnU-Net | RSS vs nnU-Net |",
        "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
        f"| nnU-Net v2 {v.get('nnunetv2', '?')} `nnUNetv2_predict_from_modelfolder` | "
        f"{net['network_class'].split('.')[-1]} ({NNUNET_CONFIG} plan) | {net['parameters'] / 1e6:.2f} | "
        f"{_fmt_shape(cfg['patch_size'])} | "
        f"{res['nn_windows']} | {nn_grid} | {res['nnunet_threads']} | {nn['wall_s']:.1f} | "
        f"{nn['peak_rss_mb'] / 1024:.2f} | {nn['peak_pss_mb'] / 1024:.2f} | 1.00x | 1.00x |",
        *(
            f"| `ultralight3d predict` {run['label']} (engine {run['engine']}, {run['precision']}) | UltraLightUNet3D "
            f"base | {res['ours_params_m']:.2f} | {args.roi}³ | {run.get('windows') or res['ours_windows']} | "
            f"input grid {_fmt_shape(shape)} "
            f"(generic protocol: z-score, no resampling) | {run['threads']} | {run['wall_s']:.1f} | "
            f"{run['peak_rss_mb'] / 1024:.2f} | {run['peak_pss_mb'] / 1024:.2f} | "
            f"{run['wall_s'] / nn['wall_s']:.3f}x | {run['peak_rss_mb'] / nn['peak_rss_mb']:.2f}x |"
            for run in res["ours_runs"]
        ),
        "",
        "Our commands ran in this order with one engine cache (`$ULTRALIGHT3D_CACHE`, empty at the start): the first "
        "exports the network's ONNX graph into it (what a user's first run of a model costs), the later ones reuse it.",
        "",
        f"**ultralight3d predict (default, cache filled) is {speedup:.1f}x faster end to end than nnU-Net v2's "
        f"predictor** (goal: >= 50x; {nn['wall_s'] / min(r['wall_s'] for r in res['ours_runs']):.1f}x for our "
        "fastest command above) and "
        f"its peak RSS is {ours['peak_rss_mb'] / nn['peak_rss_mb']:.2f}x nnU-Net's. ultralight3d's own per-case time "
        f"(summary.json) was {ours['in_process_s']:.2f} s of its {ours['wall_s']:.1f} s.",
        "",
        "nnU-Net side:",
        "",
        f"- plan: `nnUNetv2_extract_fingerprint -d {NNUNET_ID} --verify_dataset_integrity` and "
        f"`nnUNetv2_plan_experiment -d {NNUNET_ID}` (default planner `ExperimentPlanner`, plans `nnUNetPlans`) on "
        f"{NNUNET_CASES} synthetic CT cases of the benchmark's size and spacing (`{NNUNET_DATASET}`, channel CT, "
        f"labels background + organ; {res['fingerprint_s']:.0f} s + {res['plan_s']:.0f} s, not in the times above). "
        f"Configurations planned: {', '.join(res['plans']['configurations'])}.",
        f"- {NNUNET_CONFIG} (axes z y x after transpose_forward {res['plans'].get('transpose_forward')}): patch size "
        f"{_fmt_shape(cfg['patch_size'])}, spacing {_fmt_spacing(cfg['spacing'])} mm, median image size "
        f"{_fmt_shape(cfg.get('median_image_size_in_voxels', []))}, batch size {cfg.get('batch_size')}, "
        f"normalisation {', '.join(cfg.get('normalization_schemes', []))}.",
        f"- network: `{net['network_class']}`, {net['n_stages']} stages, features {net['features_per_stage']}, "
        f"kernels {net['kernel_sizes']}, strides {net['strides']}, convs per stage {net['n_conv_per_stage']} "
        f"(decoder {net['n_conv_per_stage_decoder']}); {net['parameters']:,} parameters; random weights from "
        "`benchmarks/nnunet_random_model.py` (nnU-Net's `nnUNetTrainer.build_network_architecture`, seed 0).",
        f"- command: `{nn_cmd}` (`$TMP`: the run's temporary folder; defaults otherwise: tile step 0.5, Gaussian, "
        "`-npp 3 -nps 3`; torch threads: "
        f"nnU-Net's `-device cpu` default, `torch.set_num_threads(multiprocessing.cpu_count())` = "
        f"{res['nnunet_threads']}, capped at `nnUNet_def_n_proc` = 8 while predicting).",
        f"- versions: nnunetv2 {v.get('nnunetv2', '?')}, torch {v.get('torch', '?')}, dynamic_network_architectures "
        f"{v.get('dynamic_network_architectures', '?')} (separate venv `{args.bench_venv}`).",
        "",
        "ultralight3d side:",
        "",
        f"- command: `{ours_cmd}` (random UltraLightUNet3D base weights with a model card: generic protocol, "
        f"{len(LABELS)} classes; Gaussian blending; writes NIfTI + .seg.nrrd + colour tables + summary; torch threads "
        "as `ultralight3d predict` chooses them" + (f", `--threads {args.threads}`" if args.threads else "") + ").",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS, help=f"subset of {MODELS}")
    p.add_argument("--shape", nargs=3, type=int, default=[256, 256, 128])
    p.add_argument("--roi", type=int, default=96)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--sw-batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the default of ultralight3d predict)")
    p.add_argument("--engines", nargs="+", default=DEFAULT_ENGINES, help=f"engine rows per network, from {ENGINE_ROWS}")
    p.add_argument(
        "--contention", action="store_true", help="also run each network beside a process keeping one core busy"
    )
    p.add_argument(
        "--nnunet",
        action="store_true",
        help="also time whole commands: nnU-Net v2's own predictor (its plan, random weights, mirroring off) against "
        "ultralight3d predict; results to predict_cpu_nnunet.md",
    )
    p.add_argument(
        "--bench-venv",
        type=Path,
        default=Path("/work/bench-venv"),
        help="venv holding nnunetv2 (never the project's venv; see the module docstring)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 64x64x48 volume, 32³ windows")
    p.add_argument("--out", type=Path, default=None, help="Markdown output (default benchmarks/results/…)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--outdir", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    unknown = set(args.models) - set(MODELS)
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; choose from {MODELS}")
    if set(args.engines) - set(ENGINE_ROWS):
        p.error(f"unknown engine row(s) {sorted(set(args.engines) - set(ENGINE_ROWS))}; choose from {ENGINE_ROWS}")
    if args.nnunet and not (args.bench_venv / "bin" / "nnUNetv2_predict_from_modelfolder").is_file():
        p.error(f"--nnunet: no nnUNetv2_predict_from_modelfolder in {args.bench_venv}/bin; see the module docstring")
    if args.quick:
        args.shape, args.roi = [64, 64, 48], 32
    shape = tuple(args.shape)
    name = "predict_cpu_nnunet" if args.nnunet else "predict_cpu"
    out = args.out or RESULTS / (f"{name}_quick.md" if args.quick else f"{name}.md")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input" / "case_0000.nii.gz"  # nnU-Net's naming: its -i takes the folder
        _synthetic_volume(src, shape)
        for model in args.models:
            for engine in args.engines:
                row = _bench_row(args, model, engine, src, Path(tmp) / f"{model}-{engine}")
                if row is None:
                    return 1
                rows.append(row)
            ref = next((r for r in rows if r["model"] == model and r["engine"] == REFERENCE_ENGINE), None)
            for r in rows:
                if r["model"] == model and ref is not None:
                    r["agreement"] = _agreement(r["label_file"], ref["label_file"])
        table = _table(rows, shape, args)
        if args.nnunet:
            table += _nnunet_section(run_nnunet_comparison(args, src, Path(tmp), shape), shape, args)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"table written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
