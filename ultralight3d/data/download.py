"""Resumable, checksummed downloads and safe tar extraction (MSD Task05 Prostate).

``download_file`` writes to ``<dest>.part``, resumes an interrupted ``.part`` with an HTTP ``Range`` request, checks the
md5 and renames the finished file onto ``dest`` (so ``dest`` only ever exists complete). Offline or on HTTP errors
the user gets one message saying where to download the file by hand and where to put it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserInputError

__all__ = [
    "MSD_PROSTATE_MD5",
    "MSD_PROSTATE_URL",
    "download_file",
    "download_msd_prostate",
    "extract_tar",
    "file_md5",
]

logger = logging.getLogger(__name__)

# The mirror and checksum MONAI's DecathlonDataset uses (monai/apps/datasets.py, DecathlonDataset.resource / .md5).
MSD_PROSTATE_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task05_Prostate.tar"
MSD_PROSTATE_MD5 = "35138f08b1efaef89d7424d2bcc928db"
_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike, chunk_size: int = _CHUNK) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline_error(url: str, dest: Path, reason: object) -> UserInputError:
    return UserInputError(
        f"cannot download {url} ({reason}); if this machine is offline, download the file by hand (browser or "
        f"another machine) and put it at {dest}, then run the command again (a partial {dest.name}.part is resumed)"
    )


def download_file(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    chunk_size: int = _CHUNK,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``<dest>.part`` and checking ``md5``.

    Args:
        url: http(s) URL.
        dest: final file path; if it already exists and matches ``md5`` nothing is downloaded.
        md5: expected hex md5 (``None`` skips the check).
        progress: show a tqdm bar.
        timeout: socket timeout in seconds.
        chunk_size: bytes per read.

    Returns:
        ``dest`` as a Path.

    Raises:
        UserInputError: offline / HTTP error (with the manual-download hint), an existing ``dest`` with the wrong
            checksum, or a downloaded file with the wrong checksum (the bad ``.part`` is deleted).
    """
    from tqdm.auto import tqdm

    dest = Path(dest).expanduser()
    if dest.exists():
        if md5 is None or file_md5(dest) == md5:
            logger.info("%s already downloaded", dest)
            return dest
        raise UserInputError(
            f"{dest} exists but its md5 is not {md5} (incomplete or corrupted download); delete it and run again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ultralight3d"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # http(s) URLs from our constants
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part already holds the whole file
            response = None
        else:
            raise _offline_error(url, dest, f"HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _offline_error(url, dest, getattr(err, "reason", err)) from err

    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if offset and status != 206:  # the server ignored the Range header: start again
                logger.info("server does not resume downloads; restarting %s", part.name)
                offset = 0
            mode = "ab" if offset else "wb"
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            if offset:
                logger.info("resuming %s at %.1f MB", part.name, offset / 1e6)
            try:
                with (
                    open(part, mode) as fh,
                    tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                    ) as bar,
                ):
                    for block in iter(lambda: response.read(chunk_size), b""):
                        fh.write(block)
                        bar.update(len(block))
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                raise UserInputError(
                    f"download of {url} was interrupted ({err}); run the command again to resume from "
                    f"{part} ({part.stat().st_size / 1e6:.1f} MB kept)"
                ) from err
            if total is not None and part.stat().st_size < total:
                raise UserInputError(
                    f"download of {url} stopped early ({part.stat().st_size} of {total} bytes); run the command again "
                    f"to resume from {part}"
                )
    if md5 is not None:
        got = file_md5(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise UserInputError(
                f"checksum mismatch for {url}: md5 {got}, expected {md5}; the bad download was deleted, run the "
                f"command again (or download it by hand to {dest})"
            )
    os.replace(part, dest)
    logger.info("downloaded %s", dest)
    return dest


def extract_tar(archive: str | os.PathLike, output_dir: str | os.PathLike, *, progress: bool = True) -> list[Path]:
    """Extract a tar archive safely into ``output_dir``.

    Members with absolute paths or ``..`` and links pointing outside are refused; macOS resource forks (``._*``) are
    skipped. Extraction goes to a temporary folder beside ``output_dir`` first, then each top-level entry is moved in,
    so an interrupted extraction leaves no half-written dataset.

    Returns:
        The top-level paths created in ``output_dir``.

    Raises:
        UserInputError: not a readable tar, an unsafe member, or a top-level entry that already exists.
    """
    from tqdm.auto import tqdm

    archive, output_dir = Path(archive), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as err:
        raise UserInputError(
            f"cannot open {archive} as a tar archive ({err}); delete it and download it again"
        ) from err
    with tar, tempfile.TemporaryDirectory(prefix=".extract-", dir=output_dir) as tmp:
        members = []
        for m in tar.getmembers():
            name = Path(m.name)
            if name.is_absolute() or ".." in name.parts:
                raise UserInputError(f"{archive} holds an unsafe path {m.name!r}; refusing to extract it")
            if any(part.startswith("._") for part in name.parts) or not (m.isfile() or m.isdir()):
                continue  # resource forks, links and devices are not needed
            members.append(m)
        for m in tqdm(members, desc=f"extracting {archive.name}", unit="file", disable=not progress):
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse unsafe members
                tar.extract(m, tmp, filter="data")
            else:  # pragma: no cover - older Pythons; members were vetted above
                tar.extract(m, tmp)
        created = []
        for entry in sorted(Path(tmp).iterdir()):
            target = output_dir / entry.name
            if target.exists():
                raise UserInputError(
                    f"{target} already exists; remove it (or point --root at it without --download) and run again"
                )
            shutil.move(str(entry), target)
            created.append(target)
    return created


def download_msd_prostate(
    root: str | os.PathLike, *, url: str = MSD_PROSTATE_URL, md5: str | None = MSD_PROSTATE_MD5, progress: bool = True
) -> Path:
    """Download and extract MSD Task05 Prostate into ``root`` (skipped when ``root/Task05_Prostate`` is there).

    The tarball is kept as ``root/Task05_Prostate.tar`` (about 230 MB) so a re-extraction needs no new download.

    Returns:
        The ``Task05_Prostate`` folder (holding ``dataset.json``).
    """
    root = Path(root).expanduser()
    task_dir = root / "Task05_Prostate"
    if (task_dir / "dataset.json").is_file():
        logger.info("%s already extracted", task_dir)
        return task_dir
    archive = download_file(url, root / "Task05_Prostate.tar", md5, progress=progress)
    extract_tar(archive, root, progress=progress)
    if not (task_dir / "dataset.json").is_file():
        raise UserInputError(
            f"{archive} did not contain Task05_Prostate/dataset.json; delete {archive} and download it again"
        )
    logger.info("extracted %s", task_dir)
    return task_dir
