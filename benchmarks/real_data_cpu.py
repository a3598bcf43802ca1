"""Real scans, equal CPU budget: ultralight3d beside MONAI SegResNet and nnU-Net v2, plus the tiny-network league.

Every method trains on the same data (CHAOS T2-SPIR, ``--data``), the same split (fold 0 of ``ultralight3d prepare
folder``'s 5 folds: 8 training cases, 2 held-out cases) and the same wall-clock budget (``--budget`` seconds, counted
from the first training iteration; start-up - data caching, nnU-Net's unpacking, worker start - is reported
separately, nnU-Net's planning and preprocessing once for all its configurations). The held-out cases are then
predicted from the final weights (timed, peak memory of the process tree) and every prediction - nnU-Net's too - is
scored by the same code, ``ultralight3d evaluate --bundle bundles/chaos_t2_ultralight_unet3d``.

Methods:

* ``ul3d-t``, ``ul3d-s``, ``ul3d-base``: UltraLightUNet3D through the bundle ``chaos_t2_ultralight_unet3d`` with its
  CPU recipe (train.json as shipped: 64x64x32 x 2 patches at 5x5x7.7 mm, AdamW lr 3e-3), ``--variant``;
* ``ul3d-sw``: UltraLightUNet3D-base capped at the width ``ultralight3d select-width`` picks on the shared fetal atlases
  (its bundle override ``network_def#channels``);
* ``egeunet3d`` (trained with its deep-supervision heads) and ``segresnet`` (MONAI SegResNet, 8 filters), the same
  bundle with ``--model_name``;
* ``nnunet-2d``, ``nnunet-3d_fullres``: nnU-Net v2 in a separate venv (``--bench-venv``, torch pinned): its own
  ``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train ... -tr nnUNetTrainerCPUBudget -device cpu`` (the trainer of
  ``benchmarks/nnunet_cpu_budget_trainer.py``, copied into that venv's ``nnunetv2/training/nnUNetTrainer/``) and
  ``nnUNetv2_predict
  --disable_tta -npp 1 -nps 1 -device cpu``; ``nnUNet_n_proc_DA=2``.

A second table (the tiny-network league) gives, for the networks of this package and SegResNet: parameters,
GMACs at 1x1x96^3, forward time at 96^3 (plain and the CPU fast path, median of 5, 2 threads), the whole-volume
predict time per case of the real run and its mean Dice.

Results are written after every method (``--out`` .md and .json), so a stopped run leaves a partial table; finished
methods are skipped unless ``--rerun``. Run it alone on the machine::

    flock /tmp/ul3d_cpu.lock python benchmarks/real_data_cpu.py --work /tmp/rdcpu           # 20 min per method
    flock /tmp/ul3d_cpu.lock python benchmarks/real_data_cpu.py --budget 20 --methods ul3d-t,nnunet-2d \\
        --out /tmp/rdcpu/smoke.md                                                              # smoke test
    python benchmarks/real_data_cpu.py --report-only --budget 480                             # rewrite the tables

Prerequisite (once, outside the repository; never into the project's venv)::

    python3.11 -m venv /work/bench-venv && /work/bench-venv/bin/pip install torch==2.13.0 nnunetv2
    /work/bench-venv/bin/pip uninstall -y torchvision   # PyPI's is a CUDA build: it cannot load beside a CPU torch
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import (  # noqa: E402  (benchmarks/ is not a package)
    CLI,
    REPO,
    bundle_args,
    cpu_name,
    csv_rows,
    prepare,
    run_budgeted,
    torch_version,
)

BUNDLE = REPO / "bundles" / "chaos_t2_ultralight_unet3d"
DATA = REPO.parent / "shared" / "data" / "chaos_t2"
FETAL = REPO.parent / "shared" / "data" / "fetal_sb_atlas"
TRAINER_FILE = Path(__file__).resolve().parent / "nnunet_cpu_budget_trainer.py"
TRAINER = "nnUNetTrainerCPUBudget"
DATASET_ID = 616
DATASET = f"Dataset{DATASET_ID}_CHAOST2"
CLASSES = ["liver", "right kidney", "left kidney", "spleen"]
THREADS = 2

#: name -> description, registry model (for parameters / league), bundle training overrides, predict arguments.
METHODS: dict[str, dict[str, Any]] = {
    "ul3d-t": {"label": "UltraLightUNet3D-T", "model": "ultralight_unet3d_t", "train": {"variant": "t"},
               "predict": ["--variant", "t"]},
    "ul3d-s": {"label": "UltraLightUNet3D-S", "model": "ultralight_unet3d_s", "train": {"variant": "s"},
               "predict": ["--variant", "s"]},
    "ul3d-base": {"label": "UltraLightUNet3D-base", "model": "ultralight_unet3d_base", "train": {"variant": "base"},
                  "predict": ["--variant", "base"]},
    "ul3d-sw": {"label": "UltraLightUNet3D (select-width pick)", "model": "ultralight_unet3d_base", "train": {},
                "predict": []},  # filled from the select-width result
    "egeunet3d": {"label": "EGE-UNet3D", "model": "egeunet3d", "train": {"model_name": "egeunet3d"},
                  "predict": ["--set", "model_name=egeunet3d"]},
    "segresnet": {"label": "MONAI SegResNet (8 filters)", "model": "segresnet", "train": {"model_name": "segresnet"},
                  "predict": ["--set", "model_name=segresnet"]},
    "nnunet-2d": {"label": "nnU-Net v2 2d", "nnunet": "2d"},
    "nnunet-3d_fullres": {"label": "nnU-Net v2 3d_fullres", "nnunet": "3d_fullres"},
}  # fmt: skip
DEFAULT_ORDER = ["ul3d-s", "nnunet-2d", "nnunet-3d_fullres", "ul3d-t", "ul3d-base", "segresnet", "egeunet3d", "ul3d-sw"]
LEAGUE = ["egeunet3d", "ul3d-t", "ul3d-s", "ul3d-base", "ul3d-sw", "segresnet"]


# ------------------------------------------------------------------------------------------------------ utilities
def _log(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {msg}", flush=True)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(src)


def _bench_env(venv: Path, work: Path, results: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        nnUNet_raw=str(work / "prep" / "nnUNet_raw"),
        nnUNet_preprocessed=str(work / "prep" / "nnUNet_preprocessed"),
        nnUNet_results=str(results),
        nnUNet_n_proc_DA="2",
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
    )
    env.update(extra or {})
    return env


def _bench_versions(venv: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m, torch; "
        "print(json.dumps({'nnunetv2': m.version('nnunetv2'), 'torch': torch.__version__, "
        "'dynamic_network_architectures': m.version('dynamic_network_architectures')}))"
    )
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return {}


# ------------------------------------------------------------------------------------------------------ preparation
def fold_cases(datalist: Path, fold: int) -> tuple[list[str], list[str]]:
    """(training cases, held-out cases) of ``fold`` in the prepared datalist."""
    entries = json.loads(datalist.read_text())["training"]
    train = sorted(e["case"] for e in entries if int(e["fold"]) != fold)
    val = sorted(e["case"] for e in entries if int(e["fold"]) == fold)
    return train, val


def prepare_all(args: argparse.Namespace) -> dict[str, Any]:
    """Dataset folder + datalist, held-out image/label folders, the nnU-Net raw dataset, its plans and preprocessed
    data (timed once), ``splits_final.json`` equal to the datalist's folds, and the select-width pick."""
    prep = args.work / "prep"
    state_file = prep / "prep.json"
    state = _read_json(state_file) or {}
    data = prepare(args.data, prep)
    datalist = data / "datalist.json"
    entries = json.loads(datalist.read_text())["training"]
    train, val = fold_cases(datalist, args.fold)
    state.update(data=str(data), train_cases=train, val_cases=val, fold=args.fold)
    for case in val:
        _link((data / "imagesTr" / f"{case}.nii.gz").resolve(), prep / "val_images" / f"{case}.nii.gz")
        _link((data / "labelsTr" / f"{case}.nii.gz").resolve(), prep / "val_labels" / f"{case}.nii.gz")
        _link((data / "imagesTr" / f"{case}.nii.gz").resolve(), prep / "val_images_nnunet" / f"{case}_0000.nii.gz")

    if any(METHODS[m].get("nnunet") for m in args.methods):
        raw = prep / "nnUNet_raw" / DATASET
        for e in entries:
            _link((data / e["image"]).resolve(), raw / "imagesTr" / f"{e['case']}_0000.nii.gz")
            _link((data / e["label"]).resolve(), raw / "labelsTr" / f"{e['case']}.nii.gz")
        _write_json(raw / "dataset.json", {
            "channel_names": {"0": "T2"},  # not "CT": nnU-Net z-scores each MRI image
            "labels": {"background": 0, **{name: i + 1 for i, name in enumerate(CLASSES)}},
            "numTraining": len(entries),
            "file_ending": ".nii.gz",
            "name": "CHAOS T2-SPIR (ultralight3d benchmark)",
            "licence": "CC BY-SA 4.0",
        })  # fmt: skip
        pre = prep / "nnUNet_preprocessed" / DATASET
        if "nnunet_preprocess" not in state:
            _log("nnUNetv2_plan_and_preprocess (2d, 3d_fullres)")
            cmd = [str(args.bench_venv / "bin" / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d",
                   "3d_fullres", "-np", "2", "2", "--verify_dataset_integrity"]  # fmt: skip
            pp_log = prep / "nnunet_plan_and_preprocess.log"
            res = run_budgeted(cmd, pp_log, env=_bench_env(args.bench_venv, args.work, args.work / "nnUNet_unused"))
            if res["exit"] != 0:
                raise RuntimeError(f"nnUNetv2_plan_and_preprocess failed; see {pp_log}")
            state["nnunet_preprocess"] = {"wall_s": res["wall_s"], "peak_pss_mib": res["peak_pss_mib"]}
        # nnU-Net's fold k = the datalist's fold k (same training and held-out cases)
        folds = sorted({int(e["fold"]) for e in entries})
        splits = [{"train": sorted(e["case"] for e in entries if int(e["fold"]) != k),
                   "val": sorted(e["case"] for e in entries if int(e["fold"]) == k)} for k in folds]  # fmt: skip
        _write_json(pre / "splits_final.json", splits)
        plans = _read_json(pre / "nnUNetPlans.json") or {}
        state["nnunet_plans"] = {c: {k: plans["configurations"][c].get(k) for k in ("batch_size", "patch_size",
                                                                                     "spacing")}
                                 for c in ("2d", "3d_fullres") if c in plans.get("configurations", {})}  # fmt: skip
        # Beside nnUNetTrainer.py, not under variants/: nnU-Net's class search imports the modules of that folder
        # first and only then walks the sub-packages, alphabetically - primus/ (timm, torchvision) before variants/.
        # PyPI's torchvision is a CUDA build that cannot load beside a CPU torch, so the walk never reaches variants/.
        target = _nnunet_dir(args.bench_venv) / "training" / "nnUNetTrainer" / TRAINER_FILE.name
        shutil.copyfile(TRAINER_FILE, target)

    if "ul3d-sw" in args.methods or not args.no_league:
        sw = prep / "select_width"
        if not (sw / "width_selection.json").is_file():
            _log("ultralight3d select-width on the fetal atlases")
            cmd = [sys.executable, "-c", CLI, "select-width", "--images", str(args.fetal), "--pattern", "*/srr.nii.gz",
                   "--max-images", "4", "--reference", "ultralight_unet3d_base", "--output-dir", str(sw),
                   "--overwrite"]  # fmt: skip
            t0 = time.time()
            subprocess.run(cmd, check=True, cwd=str(REPO), stdout=open(prep / "select_width.log", "w"),
                           stderr=subprocess.STDOUT)  # fmt: skip
            state["select_width_s"] = round(time.time() - t0, 1)
        result = json.loads((sw / "width_selection.json").read_text())
        state["select_width"] = {"channels": result["selected"]["channels"], "cap": result["selected"]["cap"],
                                 "reference": result["bundle_override"]["network_def#model_name"]}  # fmt: skip
    _write_json(state_file, state)
    return state


def _nnunet_dir(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python*/site-packages/nnunetv2"))
    if not found:
        raise RuntimeError(f"nnunetv2 is not installed in {venv}; see the module docstring")
    return found[0]


def _sw_method(state: dict[str, Any]) -> None:
    sel = state.get("select_width")
    if not sel:
        return
    channels = list(sel["channels"])
    m = METHODS["ul3d-sw"]
    m["model"] = sel["reference"]
    m["kwargs"] = {"channels": channels}
    m["label"] = f"UltraLightUNet3D select-width pick (base, cap {sel['cap']}, channels {channels})"
    m["train"] = {"model_name": sel["reference"], "network_def#channels": channels}
    m["predict"] = ["--set", f"model_name={sel['reference']}", f"network_def#channels={json.dumps(channels)}"]


# ------------------------------------------------------------------------------------------------------ methods
def _parameters(method: str) -> int | None:
    spec = METHODS[method]
    if "model" not in spec:
        return None
    import ultralight3d

    net = ultralight3d.create_model(spec["model"], spatial_dims=3, in_channels=1, out_channels=5,
                                    **spec.get("kwargs", {}))  # fmt: skip
    return int(sum(p.numel() for p in net.parameters()))


def _predict_ul3d(method: str, ckpt: Path, mdir: Path, prep: Path) -> dict[str, Any]:
    pred = mdir / "pred"
    cmd = [sys.executable, "-c", CLI, "predict", "-i", str(prep / "val_images"), "-o", str(pred), "--bundle",
           str(BUNDLE), "--checkpoint", str(ckpt), "--device", "cpu", "--threads", str(THREADS), "--quiet",
           "--no-seg-nrrd", "--no-postprocessing", "--overwrite", *METHODS[method]["predict"]]  # fmt: skip
    res = run_budgeted(cmd, mdir / "predict.log", cwd=REPO)
    if res["exit"] != 0:
        raise RuntimeError(f"{method}: predict failed; see {mdir / 'predict.log'}")
    summary = _read_json(pred / "summary.json") or {}
    times = [c["time_s"] for c in summary.get("cases", []) if c.get("status") == "ok"]
    return {"pred_dir": str(pred), "wall_s": res["wall_s"], "peak_pss_mib": res["peak_pss_mib"],
            "in_process_s_per_case": round(statistics.mean(times), 2) if times else None,
            "fast_path": summary.get("cpu_fast_path"), "overlap": summary.get("overlap"),
            "roi_size": summary.get("roi_size")}  # fmt: skip


def run_ul3d(method: str, args: argparse.Namespace, state: dict[str, Any], mdir: Path) -> dict[str, Any]:
    run_dir = mdir / "runs" / "train"
    overrides = {**METHODS[method]["train"], "device": "cpu"}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(BUNDLE / "configs/train.json"),
           "--bundle_root", str(BUNDLE), "--dataset_dir", state["data"], "--fold", str(args.fold),
           "--runs_dir", str(mdir / "runs"), "--run_name", "train", "--resume", "False",
           "--ckpt_dir", str(mdir / "published"), "--max_iterations", "100000000", "--val_interval", "100000000",
           *bundle_args(overrides)]  # fmt: skip
    _log(f"{method}: training ({args.budget:g} s)")
    res = run_budgeted(cmd, mdir / "train.log", env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=REPO,
                       started=lambda: bool(csv_rows(run_dir / "training_log.csv")), budget=args.budget,
                       hard_timeout=args.budget + 1800)  # fmt: skip
    rows = csv_rows(run_dir / "training_log.csv")
    ckpts = sorted(run_dir.glob("checkpoint_final_iteration=*.pt"), key=lambda p: p.stat().st_mtime)
    if not rows or not ckpts:
        raise RuntimeError(f"{method}: no training or no final checkpoint (exit {res['exit']}); see {mdir}/train.log")
    train = {"iterations": int(rows[-1]["iteration"]), "train_s": res["after_start_s"], "startup_s": res["startup_s"],
             "peak_pss_mib": res["peak_pss_mib"], "final_loss": float(rows[-1]["loss"]), "exit": res["exit"],
             "checkpoint": str(ckpts[-1]), "signalled_after_s": res["signalled_after_s"]}  # fmt: skip
    _log(f"{method}: {train['iterations']} iterations; predicting")
    predict = _predict_ul3d(method, ckpts[-1], mdir, args.work / "prep")
    return {"train": train, "predict": predict, "parameters": _parameters(method)}


def run_nnunet(method: str, args: argparse.Namespace, state: dict[str, Any], mdir: Path) -> dict[str, Any]:
    config = METHODS[method]["nnunet"]
    results = mdir / "nnUNet_results"
    fold_dir = results / DATASET / f"{TRAINER}__nnUNetPlans__{config}" / f"fold_{args.fold}"
    budget_log = fold_dir / "budget_log.json"
    env = _bench_env(args.bench_venv, args.work, results, {
        "UL3D_NNUNET_BUDGET_S": str(args.budget),
        "UL3D_NNUNET_ITERS_PER_EPOCH": str(args.nnunet_iters_per_epoch),
        "UL3D_NNUNET_VAL_ITERS": "1",
    })  # fmt: skip
    cmd = [str(args.bench_venv / "bin" / "nnUNetv2_train"), str(DATASET_ID), config, str(args.fold), "-tr", TRAINER,
           "-device", "cpu"]  # fmt: skip
    _log(f"{method}: training ({args.budget:g} s)")
    res = run_budgeted(cmd, mdir / "train.log", env=env, started=lambda: budget_log.is_file(), budget=args.budget,
                       stop_signal=None, hard_timeout=args.budget + 2400)  # fmt: skip
    info = _read_json(budget_log) or {}
    ckpt = fold_dir / "checkpoint_final.pth"
    if res["exit"] != 0 or not ckpt.is_file() or info.get("state") != "done":
        raise RuntimeError(f"{method}: nnUNetv2_train failed (exit {res['exit']}); see {mdir / 'train.log'}")
    train = {"iterations": info["iterations"], "train_s": info["train_s"],
             "startup_s": round(info["first_iteration_time"] - res["launched"], 1), "peak_pss_mib": res["peak_pss_mib"],
             "exit": res["exit"], "checkpoint": str(ckpt), "wall_s": res["wall_s"],
             "batch_size": info.get("batch_size"), "patch_size": info.get("patch_size"),
             "iterations_per_epoch": info.get("iterations_per_epoch"), "final_lr": info.get("final_lr")}  # fmt: skip
    _log(f"{method}: {train['iterations']} iterations; predicting")
    out = mdir / "pred_nnunet"
    if out.exists():
        shutil.rmtree(out)
    cmd = [str(args.bench_venv / "bin" / "nnUNetv2_predict"), "-i", str(args.work / "prep" / "val_images_nnunet"),
           "-o", str(out), "-d", str(DATASET_ID), "-c", config, "-f", str(args.fold), "-tr", TRAINER,
           "-chk", "checkpoint_final.pth", "--disable_tta", "-npp", "1", "-nps", "1", "-device", "cpu"]  # fmt: skip
    pres = run_budgeted(cmd, mdir / "predict.log", env=env, hard_timeout=3600)
    if pres["exit"] != 0:
        raise RuntimeError(f"{method}: nnUNetv2_predict failed; see {mdir / 'predict.log'}")
    pred = mdir / "pred"  # <case>_seg.nii.gz for ultralight3d evaluate
    if pred.exists():
        shutil.rmtree(pred)
    for f in sorted(out.glob("*.nii.gz")):
        _link(f.resolve(), pred / f.name.replace(".nii.gz", "_seg.nii.gz"))
    predict = {"pred_dir": str(pred), "wall_s": pres["wall_s"], "peak_pss_mib": pres["peak_pss_mib"],
               "in_process_s_per_case": None, "tile_step_size": 0.5, "tta": False}  # fmt: skip
    return {"train": train, "predict": predict, "parameters": info.get("parameters")}


def evaluate(method: str, mdir: Path, prep: Path) -> dict[str, Any]:
    out = mdir / "eval"
    cmd = [sys.executable, "-c", CLI, "evaluate", "-i", str(mdir / "pred"), "-r", str(prep / "val_labels"), "-o",
           str(out), "--bundle", str(BUNDLE), "--no-plots", "--overwrite"]  # fmt: skip
    log = mdir / "evaluate.log"
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=str(REPO), stdout=fh, stderr=subprocess.STDOUT).returncode
    resampled = False
    if rc != 0:  # a prediction on another grid (it should not happen: both write the input's geometry)
        with open(log, "a") as fh:
            rc = subprocess.run([*cmd, "--resample"], cwd=str(REPO), stdout=fh, stderr=subprocess.STDOUT).returncode
        resampled = True
    if rc != 0:
        raise RuntimeError(f"{method}: evaluate failed; see {log}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["resampled"] = resampled
    return metrics


# ------------------------------------------------------------------------------------------------------ league
def league_speed(methods: list[str], repeats: int = 5) -> dict[str, dict[str, Any]]:
    """Parameters, GMACs at 1x1x96^3 and forward ms at 96^3 (plain / fast path), ``THREADS`` threads."""
    import copy

    import cpu_speed  # benchmarks/cpu_speed.py
    import torch

    import ultralight3d
    from ultralight3d.networks.optimize import optimize_for_inference, set_cpu_threads

    set_cpu_threads(THREADS)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 96, 96, 96)
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        spec = METHODS[m]
        net = ultralight3d.create_model(spec["model"], spatial_dims=3, in_channels=1, out_channels=5,
                                        **spec.get("kwargs", {})).eval()  # fmt: skip
        row: dict[str, Any] = {"parameters": int(sum(p.numel() for p in net.parameters()))}
        row["gmac_96"] = round(cpu_speed.count_gmacs(net, (1, 1, 96, 96, 96)), 3)
        row["forward_plain_ms"] = round(1e3 * statistics.median(cpu_speed._time_forward(net, x, repeats)), 1)
        try:
            fast = optimize_for_inference(copy.deepcopy(net))
            with torch.inference_mode():
                diff = float((fast(x) - net(x)).abs().max())
            row["forward_fast_ms"] = round(1e3 * statistics.median(cpu_speed._time_forward(fast, x, repeats)), 1)
            row["fast_max_abs_diff"] = diff
        except Exception as err:  # noqa: BLE001  (a network the fast path does not handle: report, go on)
            row["forward_fast_ms"] = None
            row["fast_error"] = f"{type(err).__name__}: {err}"
        out[m] = row
        _log(f"league {m}: {row}")
    return out


# ------------------------------------------------------------------------------------------------------ report
def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _dice(metrics: dict[str, Any], cls: str) -> float | None:
    v = metrics.get("classes", {}).get(cls, {}).get("dice", {})
    return v.get("mean") if isinstance(v, dict) else v


def report(args: argparse.Namespace, state: dict[str, Any], names: list[str]) -> str:
    bdir = args.work / f"b{args.budget:g}"
    results = {m: _read_json(bdir / m / "result.json") for m in names}
    failures = {m: _read_json(bdir / m / "failed.json") for m in names}
    league = _read_json(bdir / "league.json") or {}
    versions = _bench_versions(args.bench_venv)
    import monai

    budget_min = args.budget / 60
    pp = state.get("nnunet_preprocess") or {}
    plans = state.get("nnunet_plans") or {}
    lines = [
        "# Real data, equal CPU budget: ultralight3d, MONAI SegResNet and nnU-Net v2 (CHAOS T2-SPIR, fold 0)",
        "",
        f"Written by `python benchmarks/real_data_cpu.py --budget {args.budget:g}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"no GPU; ultralight3d venv: torch {torch_version()}, MONAI {monai.__version__}; nnU-Net venv: nnunetv2 "
        f"{versions.get('nnunetv2', '?')}, torch {versions.get('torch', '?')}, dynamic-network-architectures "
        f"{versions.get('dynamic_network_architectures', '?')}.",
        "",
        f"**Data and split.** CHAOS T2-SPIR, 10 cases (labels liver, right kidney, left kidney, spleen; CC BY-SA 4.0), "
        f"fold {state.get('fold', 0)} of `ultralight3d prepare folder`'s 5 folds: training on "
        f"{len(state.get('train_cases', []))} cases, scoring on the held-out {', '.join(state.get('val_cases', []))}. "
        "nnU-Net gets the same split through its `splits_final.json`. Two held-out cases are a small sample: "
        "differences of a few Dice points are not significant.",
        "",
        f"**What 'equal budget' means.** Every method trains for the same wall-clock time on the same 2 CPU cores "
        f"({args.budget:g} s = {budget_min:.3g} min), counted from its first training iteration and including "
        "whatever the method does during training (data augmentation workers, nnU-Net's per-epoch validation batch, "
        "checkpoint writes); the last iteration is allowed to finish, so a slow iteration can overrun the budget. "
        "Not counted, and reported separately: start-up (loading and caching the data, nnU-Net's unpacking and "
        "worker start), nnU-Net's planning and preprocessing (once for both configurations: "
        f"{_f(pp.get('wall_s'), '.0f')} s, peak {_f((pp.get('peak_pss_mib') or 0) / 1024 or None, '.1f')} GiB). "
        "The script's default budget is 1200 s (20 min per method); "
        + (
            f"this run used {budget_min:.3g} min per method for time reasons. "
            if args.budget != 1200
            else "this run used it. "
        )
        + "Each method keeps its own recipe otherwise: ultralight3d networks and SegResNet train through the bundle "
        "`chaos_t2_ultralight_unet3d` with its CPU recipe (64x64x32 x 2 patches at 5x5x7.7 mm, AdamW lr 3e-3, "
        "DiceCE, constant lr, 2 data-loader workers, cache 100 %; the final iteration's weights are used, no "
        "validation during training); nnU-Net uses its own plans, preprocessing (z-score per image, resampling to "
        "its target spacing), augmentation, loss (Dice + CE with deep supervision) and SGD, with "
        f"`nnUNet_n_proc_DA=2` augmentation workers, through the trainer `{TRAINER}` "
        "(`benchmarks/nnunet_cpu_budget_trainer.py`): epochs of "
        f"{args.nnunet_iters_per_epoch} iterations + 1 validation batch instead of 250 + 50, the poly "
        "learning-rate decay (0.01, exponent 0.9) spread over the wall-clock budget instead of 1000 epochs, "
        "training stopped at the budget and `checkpoint_final.pth` used, no end-of-training validation.",
        "",
        "**What is not compared.** nnU-Net at convergence - 1000 epochs of 250 iterations on a GPU, five folds, "
        "TTA and its chosen post-processing - is far stronger than anything a CPU budget of minutes gives, and is "
        "not what this table measures. It answers a narrower question: with a fixed, short CPU budget and no GPU, "
        "what does each method reach? nnU-Net's planner sizes its network for a GPU "
        + (
            f"(here 3d_fullres: batch {plans.get('3d_fullres', {}).get('batch_size')} x "
            f"{plans.get('3d_fullres', {}).get('patch_size')} at "
            f"{[round(v, 2) for v in plans.get('3d_fullres', {}).get('spacing') or []]} mm; "
            f"2d: batch {plans.get('2d', {}).get('batch_size')} x {plans.get('2d', {}).get('patch_size')}), "
            if plans
            else ""
        )
        + "so on 2 cores it completes few iterations in the budget; that is the point of the comparison, not a "
        "flaw of nnU-Net.",
        "",
        "**Prediction and scoring.** The 2 held-out volumes are predicted from the final weights: ultralight3d with "
        "`ultralight3d predict --bundle ... --checkpoint ... --no-postprocessing --threads 2` (sliding window over "
        "the model's patch, overlap 0.5, gaussian blending, `predict`'s CPU fast path; predictions on the image "
        "grid), nnU-Net "
        "with `nnUNetv2_predict -chk checkpoint_final.pth --disable_tta -npp 1 -nps 1 -device cpu` (tile step 0.5, "
        "gaussian; no post-processing, as nnU-Net's is chosen by cross-validation, which is not run here). Every "
        "prediction is scored by the same code, `ultralight3d evaluate --bundle bundles/chaos_t2_ultralight_unet3d` "
        "(Dice and HD95 per class on the original 1.25x1.25x7.7 mm label grid, mean over the 2 cases; a class "
        "missed in a case scores Dice 0 and no HD95). 'predict s/case' is the wall time of the whole predict "
        "command (start-up, model loading and writing included) divided by the 2 cases; for ultralight3d the "
        "in-process time per case is given in brackets. RAM is the peak proportional set size (PSS, shared pages "
        "split between sharers) summed over the process and all its children (data-loader / augmentation "
        "workers), sampled every second.",
        "",
        "## Table 1: same data, split and CPU budget",
        "",
        "An iteration is one optimiser step: for the bundle methods 1 case x 2 patches of 64x64x32 voxels at "
        "5x5x7.7 mm; for nnU-Net one batch of its plan (below the table). 'training s' runs from the first "
        "iteration to the end of training (bundle methods: to the exit after SIGTERM and the final checkpoint; "
        "nnU-Net: to the end of the iteration that crossed the budget, so one slow 3d_fullres iteration overruns it).",
        "",
        "| method | parameters | iterations | training s (start-up s) | peak train RAM (GiB) | "
        + " | ".join(f"Dice {c}" for c in CLASSES)
        + " | mean Dice | mean HD95 (mm) | predict s/case | peak predict RAM (GiB) |",
        "|---" * (9 + len(CLASSES)) + "|",
    ]
    for m in names:
        r = results[m]
        if r is None:
            why = failures[m]["error"] if failures[m] else "not run"
            lines.append(f"| {METHODS[m]['label']} | {why} |" + " |" * (8 + len(CLASSES)))
            continue
        tr, pr, ev = r["train"], r["predict"], r["metrics"]
        per_case = pr["wall_s"] / max(1, len(state.get("val_cases", [])) or 2)
        inproc = pr.get("in_process_s_per_case")
        hd = ev["mean"].get("hd95")
        lines.append(
            f"| {r.get('label', METHODS[m]['label'])} | {r['parameters']:,} | {tr['iterations']} | "
            f"{_f(tr['train_s'], '.0f')} ({_f(tr['startup_s'], '.0f')}) | {tr['peak_pss_mib'] / 1024:.2f} | "
            + " | ".join(_f(_dice(ev, c)) for c in CLASSES)
            + f" | **{_f(ev['mean'].get('dice'))}** | {_f(hd, '.1f')} | {per_case:.1f}"
            + (f" ({inproc:.1f})" if inproc is not None else "")
            + f" | {pr['peak_pss_mib'] / 1024:.2f} |"
        )
    notes = []
    for m in names:
        r = results[m]
        if r and r["train"].get("batch_size"):
            notes.append(f"{METHODS[m]['label']}: batch {r['train']['batch_size']} x patch {r['train']['patch_size']}, "
                         f"{r['train']['iterations_per_epoch']} iterations per epoch, final lr "
                         f"{r['train'].get('final_lr')}.")  # fmt: skip
        if r and r["metrics"].get("resampled"):
            notes.append(f"{METHODS[m]['label']}: predictions were on another grid and resampled (nearest) to score.")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]

    lines += [
        "",
        "## Table 2: the tiny-network league (same run)",
        "",
        "Networks built with 1 input and 5 output channels (the CHAOS head). GMACs: convolution / matmul "
        "multiply-adds of one 1x1x96^3 forward (`torch.utils.flop_counter`, as in `benchmarks/cpu_speed.py`; "
        "GFLOPs = 2 x GMACs). Forward: 1x1x96^3, median of 5 after a warm-up, 2 threads, plain modules and the "
        "CPU fast path (`ultralight3d.networks.optimize.optimize_for_inference`, what `ultralight3d predict` "
        "runs). Predict and Dice: the real run of table 1 (whole held-out volume, in-process seconds per case).",
        "",
        "| network | parameters | GMACs @96^3 | GFLOPs @96^3 | forward 96^3 plain (ms) | forward 96^3 fast path "
        "(ms) | predict s/case | mean Dice |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in LEAGUE:
        row = league.get(m)
        r = results.get(m) if m in results else _read_json(bdir / m / "result.json")
        if row is None and r is None:
            continue
        row = row or {}
        dice = r["metrics"]["mean"].get("dice") if r else None
        pred = r["predict"].get("in_process_s_per_case") if r else None
        label = (r or {}).get("label", METHODS[m]["label"])
        fast = row.get("forward_fast_ms")
        lines.append(
            f"| {label} | {_f(row.get('parameters'), ',')} | {_f(row.get('gmac_96'), '.2f')} | "
            f"{_f(None if row.get('gmac_96') is None else 2 * row['gmac_96'], '.2f')} | "
            f"{_f(row.get('forward_plain_ms'), '.0f')} | {_f(fast, '.0f')} | {_f(pred, '.1f')} | {_f(dice)} |"
        )
    sel = state.get("select_width")
    if sel:
        lines += ["", f"select-width pick: `ultralight3d select-width --images {args.fetal} --pattern "
                  f"'*/srr.nii.gz' --max-images 4 --reference ultralight_unet3d_base` chose cap {sel['cap']}, "
                  f"channels {sel['channels']} (trained here on CHAOS through its bundle override "
                  "`network_def#channels`)."]  # fmt: skip
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    _write_json(args.out.with_suffix(".json"), {
        "budget_s": args.budget, "fold": state.get("fold"), "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
        "torch": torch_version(), "monai": monai.__version__, "bench_venv": versions},
        "prep": {k: v for k, v in state.items() if k != "data"}, "methods": results,
        "failed": {m: f for m, f in failures.items() if f}, "league": league,
        "nnunet_iters_per_epoch": args.nnunet_iters_per_epoch, "date": dt.datetime.now(dt.timezone.utc).isoformat(),
    })  # fmt: skip
    return text


# ------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="CHAOS folder with image_N / label_N NIfTI files")
    p.add_argument("--fetal", type=Path, default=FETAL, help="fetal atlases for select-width")
    p.add_argument("--work", type=Path, default=Path("/tmp/rdcpu"), help="scratch folder (outside the repository)")
    p.add_argument("--bench-venv", type=Path, default=Path("/work/bench-venv"), help="venv with nnunetv2")
    p.add_argument("--budget", type=float, default=1200.0, help="training seconds per method (default 1200)")
    p.add_argument("--methods", default=",".join(DEFAULT_ORDER), help=f"comma-separated, of {','.join(METHODS)}")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--nnunet-iters-per-epoch", type=int, default=25, help="nnU-Net iterations per epoch (25)")
    p.add_argument("--rerun", action="store_true", help="train again methods whose results exist")
    p.add_argument("--no-league", action="store_true", help="skip the league speed columns")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real_data_cpu.md")
    p.add_argument("--report-only", action="store_true", help="only rewrite the tables from finished methods")
    p.add_argument("--note", default="", help="text appended to the results")
    args = p.parse_args(argv)
    args.methods = [s.strip() for s in args.methods.split(",") if s.strip()]
    unknown = [n for n in args.methods if n not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    t_start = time.time()
    if args.report_only:
        state = _read_json(args.work / "prep" / "prep.json") or {}
        _sw_method(state)
        print(report(args, state, args.methods))
        return 0
    if not args.data.is_dir():
        print(f"no data at {args.data}; pass --data", file=sys.stderr)
        return 2
    state = prepare_all(args)
    _sw_method(state)
    bdir = args.work / f"b{args.budget:g}"
    if not args.no_league and (args.rerun or not (bdir / "league.json").is_file()):  # first: a stopped run keeps it
        league = [m for m in LEAGUE if m != "ul3d-sw" or state.get("select_width")]
        _write_json(bdir / "league.json", league_speed(league))
    for m in args.methods:
        mdir = bdir / m
        if (mdir / "result.json").is_file() and not args.rerun:
            _log(f"{m}: done before, skipped (--rerun to train again)")
            continue
        if mdir.exists():
            shutil.rmtree(mdir)
        mdir.mkdir(parents=True)
        try:
            res = (run_nnunet if METHODS[m].get("nnunet") else run_ul3d)(m, args, state, mdir)
            res["metrics"] = evaluate(m, mdir, args.work / "prep")
            res["label"] = METHODS[m]["label"]
            _write_json(mdir / "result.json", res)
            _log(f"{m}: mean Dice {res['metrics']['mean'].get('dice')}")
        except Exception as err:  # noqa: BLE001  (one failed method must not lose the others)
            _write_json(mdir / "failed.json", {"error": f"{type(err).__name__}: {err}"})
            _log(f"{m}: FAILED: {err}")
        report(args, state, args.methods)
    print(report(args, state, args.methods))
    _log(f"total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
