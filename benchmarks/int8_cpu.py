"""int8 on the CPU: OpenVINO running an NNCF post-training-quantized graph against OpenVINO float32, on a shipped
model and real scans: does it pay, and does it keep the segmentation?

The shipped CHAOS T2 model (``bundles/chaos_t2_ultralight_unet3d``) predicts the CHAOS T2 scans of ``../shared/data``
through its bundle's predictor with ``engine="openvino"``. The first ``--calibration`` scans are the calibration set:
the windows the sliding window feeds the network on them are recorded and given to ``nncf.quantize`` (NNCF's
default: 8-bit weights and activations, min-max ranges over the calibration windows) on the graph the OpenVINO engine
compiles (:func:`ultralight3d.inference.engines.cached_onnx`, at the model card's window shape). The other scans are
the evaluation cases, predicted by both graphs in the same predictor (pre-processing, windows, blending and
post-processing unchanged).

Columns: one window's forward time (median of 10 after 2 warm-up calls), the network seconds over the evaluation
cases, voxels whose label equals float32's, and the mean Dice against the manual labels for each (the shipped model
was trained on every CHAOS case, so the Dice shows whether int8 changes the result, not how good it is).

int8 pays where the CPU has 8-bit dot-product instructions (AVX512_VNNI, AVX-VNNI, AMX); the machine line names
the extensions this one has. NNCF is not a dependency of the package: install it beside it for this script
(``pip install nncf torch==2.13.0``).

Usage::

    flock /tmp/ul3d_cpu.lock python benchmarks/int8_cpu.py                 # 3 calibration + 7 evaluation scans
    python benchmarks/int8_cpu.py --calibration 1 --cases 2 --out /tmp/int8.md

Writes ``benchmarks/results/int8_cpu.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
BUNDLE = REPO / "bundles" / "chaos_t2_ultralight_unet3d"
IMAGES = "chaos_t2/image_*.nii.gz"


class _Recorder:
    """Calls the engine and keeps each input window (``(C, *roi)`` float32 arrays) for calibration."""

    def __init__(self, model: Any) -> None:
        self.model, self.windows = model, []

    def __call__(self, x: Any) -> Any:
        self.windows += [w[None].numpy().copy() for w in x.float().cpu()]
        return self.model(x)

    def eval(self) -> _Recorder:
        return self

    def to(self, *_: Any, **__: Any) -> _Recorder:
        return self


def _window_ms(model: Any, shape: tuple[int, ...], n: int = 10) -> float:
    import torch

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        model(x)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _dice(pred: Any, ref: Any) -> float:
    import numpy as np

    scores = []
    for c in [int(v) for v in np.unique(ref) if v > 0]:
        a, b = pred == c, ref == c
        scores.append(2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))
    return float(np.mean(scores)) if scores else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import nibabel as nib
    import nncf
    import numpy as np
    import openvino as ov

    from ultralight3d.inference import OpenVINOModel, Predictor
    from ultralight3d.inference.engines import cpu_has_bf16
    from ultralight3d.inference.threads import set_threads
    from ultralight3d.io.cases import discover_cases, load_case

    threads = set_threads(args.threads or None)
    images = sorted(DATA.glob(IMAGES))
    calibration, evaluation = images[: args.calibration], images[args.calibration :][: args.cases or None]
    if not calibration or not evaluation:
        raise SystemExit(f"need more than --calibration {args.calibration} scans matching {DATA / IMAGES}")
    overrides = {"device": "$torch.device('cpu')", "progress": False, "engine": "openvino", "precision": "fp32"}
    fp32 = Predictor.from_bundle(BUNDLE, overrides=overrides)
    graph_file = fp32.models[0].path
    recorder = _Recorder(fp32.models[0])
    fp32.models = [recorder]

    def load(image: Path) -> Any:
        return load_case(discover_cases(str(image))[0], fp32.channels)

    for image in calibration:
        fp32.predict_image(load(image))
    windows = recorder.windows[: args.max_windows]
    fp32.models = [recorder.model]
    shape = (1, *windows[0].shape[1:])
    core = ov.Core()
    graph = core.read_model(str(graph_file))
    graph.reshape({graph.inputs[0].get_any_name(): list(shape)})
    print(f"[int8] quantizing with {len(windows)} calibration windows of {list(shape)} …", flush=True)
    start = time.perf_counter()
    quantized = nncf.quantize(graph, nncf.Dataset(windows), subset_size=len(windows))
    quantize_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        int8_file = Path(tmp) / "int8.xml"
        ov.save_model(quantized, str(int8_file))
        int8_model = OpenVINOModel(int8_file, threads)
        int8 = Predictor.from_bundle(BUNDLE, overrides=overrides)
        int8.models = [int8_model]
        predictors = [("openvino fp32", fp32)]
        if cpu_has_bf16():  # the default precision on such a CPU (``precision="auto"``), for comparison
            predictors.append(
                ("openvino bf16", Predictor.from_bundle(BUNDLE, overrides={**overrides, "precision": "bf16"}))
            )
        predictors.append(("openvino int8 (NNCF)", int8))
        rows: dict[str, dict[str, Any]] = {
            name: {"window_ms": _window_ms(pred.models[0], shape), "network_s": 0.0, "equal": 0, "voxels": 0,
                   "worst": 1.0, "dice": []}
            for name, pred in predictors
        }  # fmt: skip
        for image in evaluation:
            loaded, reference = load(image), None
            truth_file = image.with_name(image.name.replace("image_", "label_"))
            truth = np.asarray(nib.load(str(truth_file)).dataobj).astype(np.int64) if truth_file.is_file() else None
            for name, pred in predictors:
                case = pred.predict_image(loaded)
                label = np.asarray(case.label)
                reference = label if reference is None else reference
                row = rows[name]
                row["network_s"] += case.timings.get("network", 0.0)
                equal = int((label == reference).sum())
                row["equal"] += equal
                row["voxels"] += label.size
                row["worst"] = min(row["worst"], equal / label.size)
                if truth is not None and truth.shape == label.shape:
                    row["dice"].append(_dice(label, truth))
            print(f"[int8] {image.name}: done", flush=True)
    return {
        "rows": rows,
        "threads": threads,
        "quantize_s": quantize_s,
        "windows": len(windows),
        "shape": list(shape),
        "calibration": [p.name for p in calibration],
        "evaluation": [p.name for p in evaluation],
        "versions": {"openvino": ov.__version__.split("-")[0], "nncf": nncf.__version__},
        "capabilities": core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
    }


def table(res: dict[str, Any], argv: list[str]) -> str:
    from ultralight3d.profile import cpu_name

    fp32 = res["rows"]["openvino fp32"]
    lines = [
        "# int8 on the CPU: NNCF post-training quantization in OpenVINO against float32 (and bf16)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, threads {res['threads']}; "
        f"OpenVINO {res['versions']['openvino']} (CPU capabilities {', '.join(res['capabilities'])}), NNCF "
        f"{res['versions']['nncf']}; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "Command: `" + " ".join(["python benchmarks/int8_cpu.py", *argv]) + "`.",
        "",
        f"Model: `{BUNDLE.name}` (shipped weights). Calibration: {res['windows']} windows {res['shape']} recorded on "
        f"{', '.join(res['calibration'])} ({res['quantize_s']:.1f} s to quantize). Evaluation: "
        f"{', '.join(res['evaluation'])}. window = one forward pass; network = the forward passes over the "
        "evaluation cases; labels = fp32: voxels whose label equals float32's; Dice: mean against the manual labels.",
        "",
        "| graph | window (ms) | vs fp32 | network (s) | labels = fp32 | worst case | mean Dice |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["rows"].items():
        dice = f"{statistics.mean(r['dice']):.4f}" if r["dice"] else "n/a"
        lines.append(
            f"| {name} | {r['window_ms']:.0f} | {r['window_ms'] / fp32['window_ms']:.2f}x | {r['network_s']:.2f} | "
            f"{100 * r['equal'] / max(r['voxels'], 1):.3f}% | {100 * r['worst']:.3f}% | {dice} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calibration", type=int, default=3, help="scans whose windows calibrate the quantization")
    p.add_argument("--cases", type=int, default=0, help="evaluation scans (0: every other scan)")
    p.add_argument("--max-windows", type=int, default=300, help="at most this many calibration windows")
    p.add_argument("--threads", type=int, default=0, help="threads (0: the default of ultralight3d predict)")
    p.add_argument("--out", type=Path, default=RESULTS / "int8_cpu.md")
    args = p.parse_args(argv)
    if not DATA.is_dir():
        p.error(f"{DATA} not found: this benchmark needs the real scans beside the repository")
    try:
        import nncf  # noqa: F401
    except ImportError:
        p.error("nncf is not installed: pip install nncf torch==2.13.0 (beside the package, not a dependency)")
    text = table(run(args), sys.argv[1:] if argv is None else argv)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
