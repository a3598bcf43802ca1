"""Per-case records and locks that let several ``predict`` runs share one output folder.

* Each case gets a record, ``<output>/records/<case>.json``, written atomically (:func:`ultralight3d.utils.atomic_path`)
  as the last step of the case; ``summary.json``/``summary.csv`` are rebuilt from all records under
  :func:`summary_lock`, so two runs writing different cases both end up in the summary.
* Before computing a case, a run creates ``<output>/records/<case>.lock`` with ``O_CREAT | O_EXCL`` (atomic on
  POSIX and Windows) holding its PID and host. A second run finds the lock and refuses the case at once
  (:class:`CaseLocked`) instead of computing it and failing at write time. A lock whose PID no longer runs on this
  host is stale (a killed run) and is taken over.
* ``--continue`` skips a case whose record says ``ok`` and whose outputs all exist (:func:`is_complete`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..utils import atomic_path, fsync_dir

__all__ = [
    "RECORDS_DIR",
    "CaseLocked",
    "record_path",
    "lock_path",
    "case_lock",
    "write_record",
    "read_record",
    "read_records",
    "is_complete",
    "summary_lock",
]

RECORDS_DIR = "records"
#: a lock file that cannot be read (being written, or a crash between create and write) counts as stale after this.
UNREADABLE_LOCK_S = 60.0


class CaseLocked(Exception):
    """Another live run holds the lock of a case."""

    def __init__(self, case: str, path: Path, holder: dict[str, Any]) -> None:
        self.case, self.path, self.holder = case, path, holder
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        super().__init__(
            f"case {case} is being segmented by another predict run ({who}, lock {path}); not computed here. "
            "Run again with --continue once that run has finished"
        )


def record_path(out_dir: str | os.PathLike, case: str) -> Path:
    return Path(out_dir) / RECORDS_DIR / f"{case}.json"


def lock_path(out_dir: str | os.PathLike, case: str) -> Path:
    return Path(out_dir) / RECORDS_DIR / f"{case}.lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but belongs to someone else (or the check is not possible)
        return True
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    """The lock's content, None when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_stale(path: Path) -> tuple[bool, dict[str, Any]]:
    holder = _holder(path)
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True, {}
        return age > UNREADABLE_LOCK_S, {"pid": "?", "host": "?"}
    if holder.get("host") != socket.gethostname():
        return False, holder  # another machine: its PID cannot be checked from here
    try:
        pid = int(holder.get("pid", -1))
    except (TypeError, ValueError):
        return True, holder
    return not _pid_alive(pid), holder


def _create(path: Path, case: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "case": case, "started": time.time()}
        os.write(fd, json.dumps(info).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


@contextlib.contextmanager
def case_lock(out_dir: str | os.PathLike, case: str) -> Iterator[Path]:
    """Hold the lock of ``case`` in ``out_dir`` while the block runs (removed afterwards, also on errors).

    Raises:
        CaseLocked: another live run holds it.
    """
    path = lock_path(out_dir, case)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _create(path, case):
        stale, holder = _is_stale(path)
        if not stale:
            raise CaseLocked(case, path, holder)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # the holder died: take the lock over (if another run does too, O_EXCL picks one)
        if not _create(path, case):
            raise CaseLocked(case, path, _holder(path) or {})
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fsync_dir(path.parent)


def write_record(out_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` (with a ``case`` key) to ``records/<case>.json`` atomically."""
    path = record_path(out_dir, str(record["case"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_record(out_dir: str | os.PathLike, case: str) -> dict[str, Any] | None:
    """The record of ``case``, None when there is none (or it is unreadable)."""
    path = record_path(out_dir, case)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "case" in data else None


def read_records(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every case record of ``out_dir``, sorted by case id."""
    folder = Path(out_dir) / RECORDS_DIR
    if not folder.is_dir():
        return []
    out = [
        r for p in sorted(folder.glob("*.json")) if not p.name.startswith(".") and (r := read_record(out_dir, p.stem))
    ]
    return sorted(out, key=lambda r: str(r["case"]))


def is_complete(record: dict[str, Any] | None, planned: Sequence[Path]) -> bool:
    """True when ``record`` says ``ok`` and every planned output (and every output it lists) exists."""
    if not record or record.get("status") != "ok":
        return False
    listed = [Path(p) for p in (record.get("outputs") or {}).values()]
    return all(p.exists() for p in [*planned, *listed])


@contextlib.contextmanager
def summary_lock(out_dir: str | os.PathLike, timeout_s: float = 120.0) -> Iterator[None]:
    """Serialise summary rebuilds of ``out_dir`` across processes (``fcntl.flock`` on ``records/.summary.lock``; where
    that is unavailable, an ``O_EXCL`` lock file polled for up to ``timeout_s``)."""
    folder = Path(out_dir) / RECORDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".summary.lock"  # hidden: cannot collide with the lock of a case named "summary"
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (Windows)
        deadline = time.monotonic() + timeout_s
        while not _create(path, "summary"):
            stale, _ = _is_stale(path)
            if stale or time.monotonic() > deadline:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            time.sleep(0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
