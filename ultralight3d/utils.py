"""Small shared helpers: atomic writes and overwrite protection."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserInputError

__all__ = ["atomic_path", "check_writable"]


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
        raise UserInputError(f"cannot create output folder {path.parent}: {err.strerror}; choose a writable folder") from err
    if not os.access(path.parent, os.W_OK):
        raise UserInputError(f"output folder {path.parent} is not writable; choose a writable folder")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path`` (atomic on one file system).

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
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
