"""Issue 11: several ``predict`` runs into one output folder (real subprocesses), per-case locks with stale-lock
detection, and the trust warning for bundles from outside the package."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ultralight3d.inference import Predictor, code_expressions, is_trusted_location, load_bundle, read_records
from ultralight3d.inference.records import lock_path

REPO_ROOT = Path(__file__).resolve().parents[2]
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


@pytest.fixture(scope="module")
def threshold_bundle(tmp_path_factory, make_threshold_bundle_fn):
    return make_threshold_bundle_fn(tmp_path_factory.mktemp("conc") / "synapse_threshold")


def _cases(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        vol = rng.random((32, 32, 24)).astype(np.float32)
        vol[4:14, 4:14, 4:9] = 100
        vol[20:28, 18:28, 12:20] = 200
        nib.save(nib.Nifti1Image(vol, AFFINE), folder / f"{name}.nii.gz")
    return folder


def _start(bundle: Path, inputs: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ultralight3d.cli", "predict", "-i", str(inputs), "-o", str(out)]
    cmd += ["--bundle", str(bundle), "--device", "cpu", "--quiet", "--threads", "1", "--statistics", "--per-class"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)


def _segmented(stdout: str) -> int:
    m = re.search(r"(\d+)/\d+ case\(s\) segmented", stdout)
    return int(m.group(1)) if m else 0


def test_two_runs_on_the_same_cases_compute_each_case_once(threshold_bundle, tmp_path):
    names = [f"c{i}" for i in range(4)]
    inputs, out = _cases(tmp_path / "in", names), tmp_path / "out"
    procs = [_start(threshold_bundle, inputs, out) for _ in range(2)]
    done = [p.communicate(timeout=300) for p in procs]
    for p, (_, stderr) in zip(procs, done):
        # 0: all computed here; 1: some refused as being written by the other run; 2: refused up front because the
        # other run had already written outputs. Never a failed case, never a traceback.
        assert p.returncode in (0, 1, 2), stderr
        assert "Traceback" not in stderr and "FAILED" not in stderr, stderr
    computed = [_segmented(stdout) for stdout, _ in done]
    print("cases computed per run:", computed, "exit codes:", [p.returncode for p in procs])
    assert sum(computed) == len(names), (computed, done)  # every case computed exactly once, by one of the two runs
    recs = read_records(out)
    assert [(r["case"], r["status"]) for r in recs] == [(n, "ok") for n in names]
    by_pid = {p.pid: sum(r["pid"] == p.pid for r in recs) for p in procs}
    assert sorted(by_pid.values()) == sorted(computed)
    summary = json.loads((out / "summary.json").read_text())
    assert [c["case"] for c in summary["cases"]] == names and summary["n_failed"] == 0
    assert [p.name for p in (out / "records").glob("*.lock")] == [".summary.lock"]  # no case lock left behind
    for n in names:  # the outputs are whole and valid
        assert nib.load(out / f"{n}_seg.nii.gz").shape == (32, 32, 24)


def test_two_runs_on_different_cases_end_with_one_summary_of_both(threshold_bundle, tmp_path):
    out = tmp_path / "out"
    a = _cases(tmp_path / "a", ["a0", "a1"])
    b = _cases(tmp_path / "b", ["b0", "b1"])
    procs = [_start(threshold_bundle, a, out), _start(threshold_bundle, b, out)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        assert "2/2 case(s) segmented" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [(c["case"], c["status"]) for c in summary["cases"]] == [(n, "ok") for n in ("a0", "a1", "b0", "b1")]
    assert summary["n_cases"] == 4
    with open(out / "summary.csv") as fh:
        assert [line.split(",")[0] for line in fh.read().splitlines()[1:]] == ["a0", "a1", "b0", "b1"]


def test_a_live_lock_refuses_the_case_and_a_stale_one_is_taken_over(threshold_bundle, tmp_path, capsys):
    from ultralight3d.cli import main

    _cases(tmp_path / "in", ["x"])
    out = tmp_path / "out"
    lock = lock_path(out, "x")
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "case": "x"}))
        argv = ["predict", "-i", str(tmp_path / "in"), "-o", str(out), "--bundle", str(threshold_bundle), "--quiet"]
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert "0/1 case(s) segmented, 1 refused (another run is writing them)" in captured.out
        assert not (out / "x_seg.nii.gz").exists() and lock.is_file()  # nothing computed, the lock kept
        assert read_records(out) == []
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (a killed run): its lock is stale and taken over
    assert main(argv) == 0
    assert (out / "x_seg.nii.gz").is_file() and not lock.exists()
    assert [r["status"] for r in read_records(out)] == ["ok"]


def test_bundle_code_from_outside_the_package_warns_once(make_threshold_bundle_fn, tmp_path, caplog):
    threshold_bundle = make_threshold_bundle_fn(tmp_path / "downloaded_bundle")  # not loaded before in this process
    caplog.set_level(logging.WARNING, logger="ultralight3d.inference")
    load_bundle(threshold_bundle)
    Predictor.from_bundle(threshold_bundle, overrides={"device": "$torch.device('cpu')"})
    warnings = [r.getMessage() for r in caplog.records if "Python expression" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(threshold_bundle) in warnings[0] and "use only bundles from sources you trust" in warnings[0]
    cfg = json.loads((threshold_bundle / "configs" / "inference.json").read_text())
    found = dict(code_expressions(cfg))
    assert found["imports#0"] == "$import os" and not is_trusted_location(threshold_bundle)
    shipped = sorted((REPO_ROOT / "bundles").glob("*/configs/inference.json"))
    if shipped:  # the repository's own bundles: no warning
        caplog.clear()
        assert is_trusted_location(shipped[0])
        load_bundle(shipped[0].parents[1], overrides={"ckpt_path": "$None"})
        assert not [r for r in caplog.records if "Python expression" in r.getMessage()]
