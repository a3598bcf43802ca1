"""Atomic writes: rename on success, nothing left behind on failure, overwrite protection, normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from ultralight3d.errors import UserInputError
from ultralight3d.utils import atomic_path


def test_atomic_write_success_and_permissions(tmp_path) -> None:
    target = tmp_path / "sub" / "case_seg.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".nii.gz") and tmp != target
        tmp.write_text("data")
        assert not target.exists()
    assert target.read_text() == "data"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ["case_seg.nii.gz"]


def test_atomic_write_failure_leaves_nothing_and_keeps_old(tmp_path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_refuses_to_overwrite_without_flag(tmp_path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("x")
    with pytest.raises(UserInputError, match=r"model\.pt already exists; pass --overwrite"):
        with atomic_path(target):
            pass


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch) -> None:
    """A rename is only crash-safe when the data reached the disk first (and the folder entry after)."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_path(tmp_path / "checkpoint_iteration=4.pt") as tmp:
        tmp.write_bytes(b"state")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "checkpoint_iteration=4.pt").read_bytes() == b"state"
