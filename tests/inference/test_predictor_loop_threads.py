"""Issue 15: the thread policy of ``ultralight3d predict`` (:mod:`ultralight3d.inference.threads`).

Other processes' load comes from ``/proc/stat`` less this process's own CPU time (synthetic files here, so the
tests do not depend on what else the machine runs); the OpenMP environment is in place before torch is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ultralight3d.inference import threads
from ultralight3d.inference.threads import CpuSample, busy_cores, cpu_sample, default_threads, thread_environment

REPO = Path(__file__).resolve().parents[2]


def _stat(path: Path, per_cpu: list[tuple[int, int, int, int, int, int, int, int]]) -> Path:
    """A /proc/stat with one line per CPU: user nice system idle iowait irq softirq steal (guest fields 0)."""
    total = [sum(c[i] for c in per_cpu) for i in range(8)]
    lines = ["cpu  " + " ".join(map(str, total)) + " 0 0"]
    lines += [f"cpu{i} " + " ".join(map(str, c)) + " 0 0" for i, c in enumerate(per_cpu)]
    path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n")
    return path


def test_cpu_sample_counts_busy_time_of_the_allowed_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    hz = threads.os.sysconf("SC_CLK_TCK")
    stat = _stat(
        tmp_path / "stat", [(100, 0, 50, 900, 10, 1, 2, 3), (10, 5, 5, 1000, 0, 0, 0, 0), (999, 0, 0, 0, 0, 0, 0, 0)]
    )
    sample = cpu_sample(stat)
    assert sample is not None
    assert sample.busy == pytest.approx((100 + 50 + 1 + 2 + 3 + 10 + 5 + 5) / hz)  # cpu2 is not ours; idle/iowait out
    assert cpu_sample(tmp_path / "missing") is None


def test_busy_cores_subtracts_our_own_cpu_time():
    start = CpuSample(wall=100.0, busy=50.0, own=2.0)
    # 2 s: the machine's CPUs were busy 3.0 s, 1.0 s of it ours -> others kept one core busy
    assert busy_cores(start, CpuSample(wall=102.0, busy=53.0, own=3.0)) == pytest.approx(1.0)
    assert busy_cores(start, CpuSample(wall=102.0, busy=51.0, own=3.0)) == 0.0  # never negative
    assert busy_cores(start, CpuSample(wall=100.1, busy=60.0, own=2.0)) == 0.0  # too short to tell


@pytest.mark.parametrize("others, cores, want", [(0.0, 2, 2), (0.3, 2, 2), (1.0, 2, 1), (1.9, 2, 1), (1.0, 8, 7)])
def test_default_threads_leaves_the_busy_cores(monkeypatch, others, cores, want):
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda since: others)
    assert default_threads(CpuSample(0.0, 0.0, 0.0)) == want
    assert default_threads() == cores  # no sample: every core


def test_set_threads(monkeypatch):
    n = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "default_threads", lambda since=None: 1)
        assert threads.set_threads(None) == 1
        with pytest.raises(ValueError, match="--threads must be a positive integer"):
            threads.set_threads(-2)
    finally:
        torch.set_num_threads(n)


def test_thread_environment_keeps_what_the_user_set():
    assert thread_environment({}) == threads.THREAD_ENVIRONMENT == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_environment({"PATH": "/bin"}) == threads.THREAD_ENVIRONMENT
    assert thread_environment({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert thread_environment({"GOMP_SPINCOUNT": "5000"}) == {}  # GNU OpenMP's own knob: the user's choice too


# In a fresh interpreter: run `ultralight3d predict` (it fails at the missing model card, after importing torch) and
# record the OpenMP environment at the moment torch is imported.
_PROBE = r"""
import json, os, sys
seen = {}
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: v for k, v in os.environ.items() if k.startswith(("GOMP_", "OMP_"))})
            seen["imported"] = True
sys.meta_path.insert(0, Hook())
from ultralight3d.cli import main
rc = main(["predict", "-i", sys.argv[1], "-o", sys.argv[1] + "/out", "--checkpoint", sys.argv[1] + "/m.pt", "--quiet"])
import torch
print(json.dumps({"rc": rc, "env": seen, "threads": torch.get_num_threads()}))
"""


def test_cli_sets_the_openmp_environment_before_torch(tmp_path):
    """(What the user set is kept: :func:`thread_environment`, tested above.)"""
    env = {k: v for k, v in threads.os.environ.items() if not k.startswith(("GOMP_", "OMP_"))}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rc"] == 2 and got["env"].pop("imported") is True  # a one-line error, after torch was imported
    assert got["env"] == threads.THREAD_ENVIRONMENT
    assert 1 <= got["threads"] <= threads.available_cores()
