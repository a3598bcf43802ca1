"""CPU threads of ``ultralight3d predict``: how many intra-op threads torch gets, and the OpenMP wait policy.

The policy (issue 15; measurements in the issue's report and ``benchmarks/predict_cpu.py --contention``):

* **Thread count.** ``--threads N`` is used as given. By default: the physical cores this process may run on
  (:func:`available_cores`), minus the cores other processes kept busy while the command started
  (:func:`busy_cores`, from ``/proc/stat`` less this process's own CPU time over the same interval; no extra wait).
  Torch splits each operation evenly over its threads and waits for the slowest; a thread that shares its core with
  another busy process runs at half speed or less, so every operation waits for it. On 2 cores beside one busy
  process, base's windows took 2.1-2.3x their idle time with 2 threads (and spinning waits), 1.1x the 1-thread time
  with 1 thread; on an idle machine every core is used, as before.
* **Wait policy.** Idle OpenMP threads spin-wait by default (GNU OpenMP: ~300,000 spins) and so take CPU from the
  thread that is still working when a core is shared. ``ultralight3d predict`` puts ``OMP_WAIT_POLICY=PASSIVE``
  (:func:`thread_environment`) in the environment before torch is imported (OpenMP reads it once, when torch
  loads): waiting threads sleep at once. That bounds the slowdown when contention starts after the thread count
  was chosen, and costs nothing measurable on an idle machine; a wait policy the user set is kept.

Nothing here imports torch at module level: the CLI calls :func:`cpu_sample` and :func:`thread_environment` before
torch is imported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UserInputError

__all__ = [
    "THREAD_ENVIRONMENT",
    "CpuSample",
    "available_cores",
    "busy_cores",
    "cpu_sample",
    "default_threads",
    "set_threads",
    "thread_environment",
]

#: OpenMP settings ``ultralight3d predict`` applies before importing torch, unless the user set the wait policy
#: (``OMP_WAIT_POLICY`` or GNU OpenMP's ``GOMP_SPINCOUNT``) already.
THREAD_ENVIRONMENT: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def available_cores() -> int:
    """The physical cores this process may run on: ``psutil``'s physical core count, capped by the CPUs in the
    process's affinity mask (a container's or ``taskset``'s limit); hyper-threads add little to convolution
    throughput and oversubscribe a shared machine."""
    logical = os.cpu_count() or 1
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover  (macOS, Windows)
        available = logical
    physical: int | None = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # pragma: no cover  (psutil absent)
        physical = None
    if physical is None or physical < 1:
        physical = logical
    per_core = max(1, round(logical / physical))
    return max(1, min(physical, available // per_core if available >= per_core else available))


@dataclass(frozen=True)
class CpuSample:
    """A point in time for :func:`busy_cores`: wall clock, the busy CPU time of this process's CPUs (all processes)
    and this process's own CPU time, in seconds."""

    wall: float
    busy: float
    own: float


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover  (macOS, Windows)
        return None


def cpu_sample(stat_path: str | os.PathLike = "/proc/stat") -> CpuSample | None:
    """Sample the machine's busy CPU time (Linux ``/proc/stat``, the CPUs this process may use) and this process's
    CPU time; None where ``/proc/stat`` cannot be read (then :func:`default_threads` uses every core)."""
    try:
        with open(stat_path, encoding="ascii") as f:
            lines = f.read().splitlines()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    cpus = _affinity()
    busy = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()) or (cpus is not None and int(name[3:]) not in cpus):
            continue  # the aggregate "cpu" line, other counters, CPUs this process may not use
        ticks = [int(v) for v in rest.split()]
        busy += sum(ticks[:8]) - ticks[3] - ticks[4]  # all but idle and iowait (steal counts as busy)
    times = os.times()
    return CpuSample(wall=time.monotonic(), busy=busy / hz, own=times.user + times.system)


def busy_cores(since: CpuSample, now: CpuSample | None = None) -> float:
    """How many cores other processes kept busy, on average, between ``since`` and ``now`` (default: now): the busy
    CPU time of this process's CPUs less this process's own, per second of wall time (0 when unknown or when the
    interval is shorter than 0.2 s, below the counters' 10 ms resolution)."""
    now = now or cpu_sample()
    if now is None:
        return 0.0
    wall = now.wall - since.wall
    if wall < 0.2:
        return 0.0
    return max(0.0, (now.busy - since.busy - (now.own - since.own)) / wall)


def default_threads(since: CpuSample | None = None) -> int:
    """Default intra-op threads: :func:`available_cores`, less the cores other processes kept busy since ``since``
    (a cores counts as taken when it was busy more than half the time; never fewer than 1 thread). Without
    ``since``: every available core."""
    cores = available_cores()
    if since is None:
        return cores
    return max(1, min(cores, int(cores - busy_cores(since) + 0.5)))


def set_threads(threads: int | None, since: CpuSample | None = None) -> int:
    """``torch.set_num_threads(threads or default_threads(since))``; returns the number set."""
    n = int(threads) if threads else default_threads(since)
    if n < 1:
        raise UserInputError(f"--threads must be a positive integer, got {threads}")
    import torch

    torch.set_num_threads(n)
    return n


def thread_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`THREAD_ENVIRONMENT`, or nothing when ``environ`` (default ``os.environ``) sets the wait policy itself
    (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``); put it in ``os.environ`` before torch is imported."""
    env = os.environ if environ is None else environ
    if any(k in env for k in _WAIT_SETTINGS):
        return {}
    return dict(THREAD_ENVIRONMENT)
