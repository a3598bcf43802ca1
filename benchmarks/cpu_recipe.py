"""Measure a CPU training recipe: several settings of the generic bundle, the same wall-clock budget each.

Each setting trains ``bundles/custom_ultralight_unet3d`` through the real runner (``python -m monai.bundle run
training``) on fold 0 of a real dataset (default: CHAOS T2-SPIR from ``../shared/data/chaos_t2``, 8 training / 2
held-out cases), is stopped with SIGTERM ``--budget`` seconds after its first training iteration (the bundle's clean
stop writes ``checkpoint_final_iteration=N.pt``), and the final weights are scored on the held-out fold with the
bundle's ``evaluate.json`` (sliding window on the whole volume, predictions inverted onto each image's grid, Dice /
HD95 / NSD per class on the original label grid; no post-processing). Data loading and caching before the first
iteration are not counted in the budget; they are reported.

The dataset folder is built as a user would: symlinks in the MSD ``imagesTr/labelsTr`` layout under ``--work``, then
``ultralight3d prepare folder``. Nothing is written into the repository except ``--out``.

Usage (from the repository root, on a quiet machine; ~5 min per setting)::

    python benchmarks/cpu_recipe.py                      # every setting, 240 s each
    python benchmarks/cpu_recipe.py --settings A,C --budget 120
    python benchmarks/cpu_recipe.py --report-only        # rewrite the table from the finished runs in --work
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import (  # noqa: E402  (benchmarks/ is not a package)
    PROTOCOL,
    REPO,
    bundle_args,
    cpu_name,
    csv_rows,
    prepare,
    torch_version,
)

BUNDLE = REPO / "bundles" / "custom_ultralight_unet3d"
DATA = REPO.parent / "shared" / "data" / "chaos_t2"

#: name: (description, bundle overrides). Protocol chaos_t2 (RAS, z-score on nonzero voxels, no flips); every setting
#: names its spacing (the protocol's own default is the winner's).
MM25 = {"spacing": [2.5, 2.5, 7.7]}
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "A": ("S, 2.5x2.5x7.7 mm, 96x96x32 x2, lr 1e-3",
          {"variant": "s", "patch_size": [96, 96, 32], "num_samples": 2, "learning_rate": 1e-3,
           "transform_params": MM25}),
    "B": ("T, 2.5x2.5x7.7 mm, 96x96x32 x2, lr 1e-3",
          {"variant": "t", "patch_size": [96, 96, 32], "num_samples": 2, "learning_rate": 1e-3,
           "transform_params": MM25}),
    "C": ("S, 2.5x2.5x7.7 mm, 96x96x32 x2, lr 3e-3",
          {"variant": "s", "patch_size": [96, 96, 32], "num_samples": 2, "learning_rate": 3e-3,
           "transform_params": MM25}),
    "D": ("S, 1.25x1.25x7.7 mm (native), 96x96x32 x2, lr 1e-3",
          {"variant": "s", "patch_size": [96, 96, 32], "num_samples": 2, "learning_rate": 1e-3,
           "transform_params": {"spacing": [1.25, 1.25, 7.7]}}),
    "E": ("S, 2.5x2.5x7.7 mm, 64x64x32 x2, lr 3e-3",
          {"variant": "s", "patch_size": [64, 64, 32], "num_samples": 2, "learning_rate": 3e-3,
           "transform_params": MM25}),
    "F": ("S, 5x5x7.7 mm, 64x64x32 x2, lr 3e-3",
          {"variant": "s", "patch_size": [64, 64, 32], "num_samples": 2, "learning_rate": 3e-3,
           "transform_params": {"spacing": [5.0, 5.0, 7.7]}}),
}  # fmt: skip
COMMON = {"num_workers": 2, "cache_rate": 1.0, "checkpoint_interval": 100, "log_interval": 25, "device": "cpu",
          "check_labels": False}  # fmt: skip


def train(name: str, overrides: dict[str, Any], data: Path, work: Path, budget: float, fold: int) -> dict[str, Any]:
    run_dir = work / "runs" / name
    log = work / f"train_{name}.log"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(BUNDLE / "configs/train.json"),
           "--bundle_root", str(BUNDLE), "--dataset_dir", str(data), "--protocol", PROTOCOL, "--fold", str(fold),
           "--runs_dir", str(work / "runs"), "--run_name", name, "--resume", "False", "--ckpt_dir", str(run_dir),
           "--max_iterations", "1000000", "--val_interval", "1000000",
           *bundle_args({**COMMON, **overrides})]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        first = None
        while proc.poll() is None:
            time.sleep(1.0)
            if first is None and csv_rows(run_dir / "training_log.csv"):
                first = time.time()
            if first is not None and time.time() - first >= budget:
                proc.send_signal(signal.SIGTERM)
                break
        rc = proc.wait(timeout=600)
    rows = csv_rows(run_dir / "training_log.csv")
    if first is None or not rows:
        raise RuntimeError(f"setting {name} did not train (exit {rc}); see {log}")
    iters = int(rows[-1]["iteration"])
    trained_s = time.time() - first
    info = {"setting": name, "iterations": iters, "train_s": round(trained_s, 1),
            "startup_s": round(first - t0, 1), "it_per_s": round(iters / trained_s, 3),
            "final_loss": float(rows[-1]["loss"]), "exit": rc}  # fmt: skip
    (run_dir / "recipe_train.json").write_text(json.dumps(info, indent=2))
    return info


def evaluate(name: str, overrides: dict[str, Any], data: Path, work: Path, fold: int) -> dict[str, Any]:
    run_dir = work / "runs" / name
    ckpts = sorted(run_dir.glob("checkpoint_final_iteration=*.pt"))
    if not ckpts:
        raise RuntimeError(f"setting {name}: no final checkpoint in {run_dir}")
    eval_dir = work / "eval" / name
    files = [str(BUNDLE / "configs/train.json"), str(BUNDLE / "configs/evaluate.json")]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "[" + ",".join(f"'{f}'" for f in files) + "]",
           "--bundle_root", str(BUNDLE), "--dataset_dir", str(data), "--protocol", PROTOCOL, "--fold", str(fold),
           "--ckpt_path", str(ckpts[-1]), "--eval_dir", str(eval_dir), "--eval_overwrite", "True",
           "--runs_dir", str(work / "runs"), "--run_name", name,
           *bundle_args({**COMMON, **overrides, "num_workers": 0})]  # fmt: skip
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    metrics["eval_s"] = round(time.time() - t0, 1)
    return metrics


def report(work: Path, names: list[str], budget: float, out: Path, note: str = "") -> str:
    lines = [
        "# CPU training recipe (CHAOS T2-SPIR, fold 0)",
        "",
        f"Written by `python benchmarks/cpu_recipe.py` on {dt.date.today().isoformat()}: {cpu_name()}, "
        f"{os.cpu_count()} cores, torch {torch_version()}. Generic bundle `custom_ultralight_unet3d` through the real "
        f"runner, protocol `chaos_t2` (RAS, z-score on nonzero voxels), fold 0 of `ultralight3d prepare folder`'s 5 "
        "folds: 8 training cases, 2 held-out cases (`chaos_10`, `chaos_8`). Each setting trains for the same wall "
        f"budget ({budget:g} s from its first iteration; caching before that is the 'startup' column), constant "
        "learning rate (AdamW, weight decay 0.01; the bundle has no scheduler), batch 1 case x `num_samples` patches, "
        f"{COMMON['num_workers']} data-loader workers, cache_rate {COMMON['cache_rate']}. The final weights are "
        "scored on the 2 held-out cases with the bundle's `evaluate.json` (sliding window, overlap 0.25, predictions "
        "on the original 1.25x1.25x7.7 mm label grid, no post-processing); Dice per class is the mean over the 2 "
        "cases. A 2-case fold is noisy: differences of a few Dice points are not significant.",
        "",
        "| setting | it/s | iterations | startup (s) | final loss | mean Dice | liver | right kidney | left kidney "
        "| spleen | mean HD95 (mm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    done: list[tuple[str, float, float, int]] = []
    for name in names:
        run_dir = work / "runs" / name
        tr_file, ev_file = run_dir / "recipe_train.json", work / "eval" / name / "metrics.json"
        if not tr_file.is_file() or not ev_file.is_file():
            continue
        tr, ev = json.loads(tr_file.read_text()), json.loads(ev_file.read_text())
        cls = ev["classes"]

        def d(c: str, cls: dict = cls) -> str:
            v = cls.get(c, {}).get("dice", {})
            v = v.get("mean") if isinstance(v, dict) else v
            return "n/a" if v is None else f"{v:.3f}"

        hd = ev["mean"].get("hd95")
        done.append((name, float(ev["mean"]["dice"] or 0.0), float(tr["final_loss"]), int(tr["iterations"])))
        lines.append(
            f"| {name}: {SETTINGS[name][0]} | {tr['it_per_s']:.3f} | {tr['iterations']} | {tr['startup_s']:.0f} | "
            f"{tr['final_loss']:.3f} | {ev['mean']['dice']:.3f} | {d('liver')} | {d('right kidney')} | "
            f"{d('left kidney')} | {d('spleen')} | {'n/a' if hd is None else f'{hd:.1f}'} |"
        )
    if done:
        best = max(done, key=lambda r: (round(r[1], 2), -r[2], r[3]))
        lines += ["", f"Winner (highest mean Dice; ties broken by lowest final training loss, then most iterations): "
                  f"**{best[0]}** ({SETTINGS[best[0]][0]})."]  # fmt: skip
    if note:
        lines += ["", note]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="CHAOS folder with image_N / label_N NIfTI files")
    p.add_argument("--work", type=Path, default=Path("/tmp/ultralight3d_cpu_recipe"), help="scratch folder")
    p.add_argument("--budget", type=float, default=240.0, help="training seconds per setting")
    p.add_argument("--settings", default="A,B,C,F", help=f"comma-separated, of {','.join(SETTINGS)}")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cpu_recipe.md")
    p.add_argument("--report-only", action="store_true", help="only rewrite the table from finished runs")
    p.add_argument("--note", default="", help="text appended to the table (machine load, conclusions)")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    if not args.report_only:
        if not args.data.is_dir():
            print(f"no data at {args.data}; pass --data", file=sys.stderr)
            return 2
        data = prepare(args.data, args.work)
        for name in names:
            overrides = SETTINGS[name][1]
            info = train(name, overrides, data, args.work, args.budget, args.fold)
            print(json.dumps(info), flush=True)
            ev = evaluate(name, overrides, data, args.work, args.fold)
            print(name, "mean Dice", ev["mean"]["dice"], "eval", ev["eval_s"], "s", flush=True)
            report(args.work, names, args.budget, args.out, args.note)
    print(report(args.work, names, args.budget, args.out, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
