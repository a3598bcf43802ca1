"""Small shared helpers: atomic writes and overwrite protection."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserInputError

__all__ = ["atomic_path", "check_writable", "fsync_file", "fsync_dir"]


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to clobber an existing file unless ``overwrite``; make sure the parent folder can be written.

    Raises:
        UserInputError: the file exists (and ``overwrite`` is False) or its folder cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserInputError(f"{path} already exists; pass --overwrite to replace it or choose another output folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(
            f"cannot create output folder {path.parent}: {err.strerror}; choose a writable folder"
        ) from err
    if not os.access(path.parent, os.W_OK):
        raise UserInputError(f"output folder {path.parent} is not writable; choose a writable folder")
    return path


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to disk (so a rename after it never exposes a partly written file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it survives a power cut); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover  (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it onto ``path`` (atomic on one file
    system), then fsync the folder.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.seg.nrrd``...) so writers that pick a format from the
    extension behave the same. On an exception the temporary file is removed and ``path`` is left untouched.

    Example::

        with atomic_path("out/case_seg.nii.gz", overwrite=args.overwrite) as tmp:
            nib.save(img, tmp)
    """
    path = check_writable(path, overwrite)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600 files: give outputs the permissions a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
