"""CPU engines and precisions on trained models and real scans: the label map each keeps, and its network time.

For each shipped model with real scans in ``../shared/data`` (the CHAOS T2 abdomen model on CHAOS T2 scans, the fetal
brain model on the fetal spina-bifida atlas), every engine runs the same predictor (the bundle's pre-processing,
windows, blending and post-processing) on the same cases, in one process, one engine after the other per case:

* reference: the plain torch modules in float32 (``--engine torch --plain``), the arithmetic the network was trained
  with;
* torch fast path fp32 and bf16 (CPU autocast), OpenVINO fp32 and bf16, ONNX Runtime (the exported plain graph);
* less work: the default engine (``auto``) with ``--crop-foreground`` (the sliding window over the foreground box).

Only the network's part differs between rows; read and write are left out (``predict_image`` on the loaded scan).
Columns: network seconds (the forward passes, summed over the cases; OpenVINO's per-shape compile included),
ratio to the torch fast path, voxels whose label equals the reference's (over all cases, and the worst case), the
largest probability difference to the reference, and the mean Dice against the manual labels (CHAOS) beside the
reference's. The shipped models were trained on these scans (all 10 CHAOS cases; the fetal atlas),
so the Dice is not a held-out score: the table is about whether an engine changes the segmentation, not about how
good it is.

Usage::

    flock /tmp/ul3d_cpu.lock python benchmarks/engines_cpu.py              # every case (a few minutes)
    python benchmarks/engines_cpu.py --cases 2 --out /tmp/engines.md       # a quicker look

Writes ``benchmarks/results/engines_cpu.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def _chaos_label(image: Path) -> Path:
    return image.with_name(image.name.replace("image_", "label_"))


#: (bundle, image glob under DATA, the manual label file of an image, or None where the labels are not the model's
#: classes: the atlas parcellation has 8 structures, the fetal model the 7 FeTA tissues)
MODELS: list[tuple[str, str, Any]] = [
    ("chaos_t2_ultralight_unet3d", "chaos_t2/image_*.nii.gz", _chaos_label),
    ("fetal_brain_ultralight_unet3d", "fetal_sb_atlas/*/srr.nii.gz", None),
]
#: (row name, predictor overrides)
ENGINES: list[tuple[str, dict[str, Any]]] = [
    ("torch plain fp32 (reference)", {"engine": "torch", "optimize": False, "precision": "fp32"}),
    ("torch fast path fp32", {"engine": "torch", "precision": "fp32"}),
    ("torch fast path bf16", {"engine": "torch", "precision": "bf16"}),
    ("openvino fp32", {"engine": "openvino", "precision": "fp32"}),
    ("openvino bf16", {"engine": "openvino", "precision": "bf16"}),
    ("onnxruntime fp32", {"engine": "onnxruntime", "precision": "fp32"}),
    ("auto fp32, foreground crop (less work)", {"engine": "auto", "precision": "fp32"}),
]
#: rows that run with ``crop_foreground`` (the sliding window over the foreground box only)
CROPPED = {"auto fp32, foreground crop (less work)"}
FAST = "torch fast path fp32"


def _dice(pred, ref, classes) -> float:
    import numpy as np

    scores = []
    for c in classes:
        a, b = pred == c, ref == c
        denom = a.sum() + b.sum()
        if denom:
            scores.append(2.0 * np.logical_and(a, b).sum() / denom)
    return float(np.mean(scores)) if scores else float("nan")


@functools.cache
def _engines() -> list[tuple[str, dict[str, Any]]]:
    """:data:`ENGINES`, less the bf16 rows on a CPU without bf16 arithmetic (they would run float32 there)."""
    from ultralight3d.inference.engines import cpu_has_bf16

    bf16 = cpu_has_bf16()
    return [(name, o) for name, o in ENGINES if bf16 or o.get("precision") != "bf16"]


def _predictors(bundle: Path, tmp: Path) -> dict[str, Any]:
    from ultralight3d.export import export_onnx
    from ultralight3d.inference import Predictor, load_bundle

    built = {}
    for name, overrides in _engines():
        common = {"device": "$torch.device('cpu')", "progress": False}
        if overrides.get("engine") == "onnxruntime":
            loaded = load_bundle(bundle)
            onnx = export_onnx(loaded.network, tmp / f"{bundle.name}.onnx", example_size=(96, 96, 96), overwrite=True)
            built[name] = Predictor.from_bundle(bundle, checkpoint=onnx, overrides={**common, **overrides})
        else:
            built[name] = Predictor.from_bundle(bundle, overrides={**common, **overrides})
        built[name].crop_foreground = name in CROPPED
    return built


def run(args: argparse.Namespace) -> dict[str, Any]:
    import nibabel as nib
    import numpy as np
    import torch

    from ultralight3d.inference.threads import set_threads
    from ultralight3d.io.cases import discover_cases, load_case

    set_threads(args.threads or None)
    results: dict[str, Any] = {"models": {}, "threads": torch.get_num_threads(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for bundle_name, pattern, label_of in MODELS:
            images = sorted(DATA.glob(pattern))[: args.cases or None]
            if not images:
                print(f"[{bundle_name}] no scans matching {DATA / pattern}: skipped", flush=True)
                continue
            predictors = _predictors(REPO / "bundles" / bundle_name, Path(tmp))
            rows = {name: {"network_s": 0.0, "equal": 0, "voxels": 0, "worst": 1.0, "max_dp": 0.0, "dice": []}
                    for name, _ in _engines()}  # fmt: skip
            for image in images:
                reference = None
                loaded = load_case(discover_cases(str(image))[0], predictors[FAST].channels)
                for name, _ in _engines():
                    case = predictors[name].predict_image(loaded, return_probabilities=True)
                    row = rows[name]
                    row["network_s"] += case.timings.get("network", 0.0)
                    label, probs = np.asarray(case.label), np.asarray(case.probabilities)
                    if reference is None:
                        reference = (label, probs)
                    equal = int((label == reference[0]).sum())
                    row["equal"] += equal
                    row["voxels"] += label.size
                    row["worst"] = min(row["worst"], equal / label.size)
                    row["max_dp"] = max(row["max_dp"], float(np.abs(probs - reference[1]).max()))
                    truth_file = label_of(image) if label_of else None
                    if truth_file is not None and truth_file.is_file():
                        truth = np.asarray(nib.load(str(truth_file)).dataobj).astype(np.int64)
                        if truth.shape == label.shape:
                            row["dice"].append(_dice(label, truth, [int(v) for v in np.unique(truth) if v > 0]))
                print(f"[{bundle_name}] {image.parent.name}/{image.name}: done", flush=True)
            results["models"][bundle_name] = {"cases": [str(p.relative_to(DATA)) for p in images], "rows": rows}
    return results


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    from ultralight3d.profile import cpu_name

    lines = [
        "# CPU engines on trained models and real scans: segmentation kept, network time",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, threads {results['threads']}, torch "
        f"{results['torch']}; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "Command: `" + " ".join(["python benchmarks/engines_cpu.py", *sys.argv[1:]]) + "`.",
        "",
        "Each engine runs the bundle's own predictor (pre-processing, the model card's windows, overlap 0.5, Gaussian "
        "blending, post-processing) on the same cases in one process. labels = reference: voxels (over all cases) "
        "whose label equals the plain torch float32 path's; worst case: the lowest per-case fraction; max |Δp|: the "
        "largest probability difference; Dice: mean over classes and cases against the manual labels (training scans "
        "of the shipped models, so not a held-out score: it shows whether the engine changes the result).",
        "",
    ]
    if len(_engines()) < len(ENGINES):
        lines += ["No bf16 rows: this CPU has no bf16 arithmetic (AVX512_BF16/AMX), so bf16 requests run float32.", ""]
    for bundle_name, entry in results["models"].items():
        rows = entry["rows"]
        fast = rows[FAST]["network_s"] or float("nan")
        lines += [
            f"## {bundle_name} ({len(entry['cases'])} cases)",
            "",
            "| engine | network (s) | vs torch fast path | labels = reference | worst case | max abs Δp | mean Dice |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in rows.items():
            dice = f"{sum(r['dice']) / len(r['dice']):.4f}" if r["dice"] else "n/a"
            lines.append(
                f"| {name} | {r['network_s']:.2f} | {r['network_s'] / fast:.2f}x | "
                f"{100 * r['equal'] / max(r['voxels'], 1):.4f}% | {100 * r['worst']:.4f}% | {r['max_dp']:.2e} | "
                f"{dice} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=0, help="cases per model (0: every case)")
    p.add_argument("--threads", type=int, default=0, help="threads (0: the default of ultralight3d predict)")
    p.add_argument("--out", type=Path, default=RESULTS / "engines_cpu.md")
    args = p.parse_args(argv)
    if not DATA.is_dir():
        p.error(f"{DATA} not found: this benchmark needs the real scans beside the repository")
    results = run(args)
    text = table(results, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
