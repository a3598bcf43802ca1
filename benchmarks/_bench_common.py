"""Helpers shared by the real-data benchmarks (``cpu_recipe.py``, ``real_data_cpu.py``).

Building a prepared dataset folder from the shared CHAOS copy, turning bundle overrides into ``monai.bundle run``
arguments, reading CSV logs, and running a command under a wall-clock budget while sampling the memory of its whole
process tree.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ultralight3d.profile import cpu_name

__all__ = [
    "CLI",
    "LABELS",
    "PROTOCOL",
    "REPO",
    "TreeMemory",
    "bundle_args",
    "cpu_name",
    "csv_rows",
    "prepare",
    "run_budgeted",
    "torch_version",
]

REPO = Path(__file__).resolve().parents[1]
LABELS = "1=liver,2=right kidney,3=left kidney,4=spleen"
PROTOCOL = "chaos_t2"
CLI = "import sys; from ultralight3d.cli import console; sys.exit(console())"  # the `ultralight3d` command


def torch_version() -> str:
    try:
        import torch

        return torch.__version__
    except ImportError:  # pragma: no cover
        return "?"


def prepare(data: Path, work: Path, name: str = "chaos_t2") -> Path:
    """Symlink the cases of ``data`` (``image_N`` / ``label_N``) into ``work/data/imagesTr|labelsTr`` and prepare."""
    root = work / "data"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for img in sorted(data.glob("image_*.nii.gz")):
        case = "chaos_" + img.name[len("image_") : -len(".nii.gz")]
        for sub, src in (("imagesTr", img), ("labelsTr", data / img.name.replace("image_", "label_"))):
            link = root / sub / f"{case}.nii.gz"
            if not link.is_symlink():
                link.symlink_to(src)
    if not (root / "datalist.json").is_file():
        subprocess.run([sys.executable, "-c", CLI, "prepare", "folder", "--root", str(root), "--labels",
                        LABELS, "--channels", "T2", "--name", name, "--protocol", PROTOCOL, "--quiet"],
                       check=True)  # fmt: skip
    return root


def bundle_args(overrides: dict[str, Any]) -> list[str]:
    """``{id: value}`` -> ``["--id", "value", ...]`` for ``python -m monai.bundle run`` (lists/dicts as JSON)."""
    out: list[str] = []
    for k, v in overrides.items():
        out += [f"--{k}", json.dumps(v).replace('"', "'") if isinstance(v, (dict, list)) else str(v)]
    return out


def csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _pss_kib(pid: int) -> int:
    """Proportional set size of one process (KiB): shared pages split between the sharers, so a sum over a process
    tree (data-loader workers forked from the trainer) does not count shared memory twice. RSS where PSS is absent."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid] + [c.pid for c in root.children(recursive=True)]
    except psutil.Error:
        return []


class TreeMemory(threading.Thread):
    """Samples the summed PSS of a process and all its descendants every ``interval`` s; ``peak_mib`` is the peak."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = sum(_pss_kib(p) for p in _tree(self.pid))
            self.peak_kib = max(self.peak_kib, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak_mib

    @property
    def peak_mib(self) -> float:
        return round(self.peak_kib / 1024, 1)


def run_budgeted(
    cmd: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    started: Callable[[], bool] | None = None,
    budget: float | None = None,
    stop_signal: int | None = signal.SIGTERM,
    hard_timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log``), sampling its process tree's memory.

    When ``started`` turns true (polled every second) the training is taken to have begun; ``budget`` seconds after
    that ``stop_signal`` is sent to the command (None: the command stops itself). ``hard_timeout`` seconds after the
    launch the whole process group is killed. Returns exit status, launch-to-start and start-to-exit seconds, total
    wall seconds and the peak PSS (MiB) of the process tree.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    first: float | None = None
    signalled: float | None = None
    killed = False
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(cwd) if cwd else None,
                                start_new_session=True)  # fmt: skip
        mem = TreeMemory(proc.pid)
        mem.start()
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                now = time.time()
                if first is None and started is not None and started():
                    first = now
                if (budget is not None and stop_signal is not None and first is not None and signalled is None
                        and now - first >= budget):  # fmt: skip
                    proc.send_signal(stop_signal)
                    signalled = now
                if hard_timeout is not None and now - t0 >= hard_timeout:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
            rc = proc.wait(timeout=600)
        finally:
            peak = mem.stop()
    end = time.time()
    return {
        "exit": rc,
        "killed_at_hard_timeout": killed,
        "wall_s": round(end - t0, 1),
        "startup_s": None if first is None else round(first - t0, 1),
        "after_start_s": None if first is None else round(end - first, 1),
        "signalled_after_s": None if signalled is None or first is None else round(signalled - first, 1),
        "peak_pss_mib": peak,
        "launched": t0,
        "first_seen": first,
    }
