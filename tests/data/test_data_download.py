"""Resumable checksummed download and extraction against a real local HTTP server (127.0.0.1)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_fixtures_ul3d import write_nifti

from ultralight3d.data import prepare_msd_prostate
from ultralight3d.data.download import download_file, download_msd_prostate, extract_tar
from ultralight3d.errors import UserInputError


class _Server:
    """Serves ``files`` with HTTP Range support; records the Range headers it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.cut_after: int | None = None  # close the connection after this many body bytes (once)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # the name http.server calls
                data = server.files.get(self.path)
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng and server.honour_range else 0
                if start >= len(data) and rng:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture()
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


PAYLOAD = bytes(range(256)) * 4000  # ~1 MB
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_download_and_skip_when_present(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = download_file(f"{server.url}/f.bin", tmp_path / "f.bin", MD5, progress=False, chunk_size=4096)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    download_file(f"{server.url}/f.bin", dest, MD5, progress=False)
    assert server.ranges == [None]  # second call found the verified file and did not download


def test_interrupted_download_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.cut_after = 300_000
    dest = tmp_path / "f.bin"
    with pytest.raises(UserInputError, match=r"(was interrupted|stopped early).*run the command again to resume"):
        download_file(f"{server.url}/f.bin", dest, MD5, progress=False, chunk_size=4096)
    part = tmp_path / "f.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD) and not dest.exists()
    download_file(f"{server.url}/f.bin", dest, MD5, progress=False, chunk_size=4096)
    assert server.ranges[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_server_without_range_support_restarts(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes")
    dest = download_file(f"{server.url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_download(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(
        UserInputError,
        match=rf"checksum mismatch for .*f\.bin: md5 {MD5}, expected 0{{32}}; the bad "
        r"download was deleted",
    ):
        download_file(f"{server.url}/f.bin", tmp_path / "f.bin", "0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f.bin").write_bytes(b"corrupt")
    with pytest.raises(UserInputError, match=r"f\.bin exists but its md5 is not .*; delete it and run again"):
        download_file(f"{server.url}/f.bin", tmp_path / "f.bin", MD5, progress=False)


def test_offline_and_http_errors_say_how_to_download_by_hand(server: _Server, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    dest = tmp_path / "Task05_Prostate.tar"
    with pytest.raises(
        UserInputError,
        match=rf"cannot download http://127\.0\.0\.1:{port}/x\.tar \(.*\); if this "
        rf"machine is offline, download the file by hand .* put it at {dest}",
    ):
        download_file(f"http://127.0.0.1:{port}/x.tar", dest, progress=False, timeout=5)
    with pytest.raises(UserInputError, match=r"\(HTTP 404 .*\); if this machine is offline"):
        download_file(f"{server.url}/missing.tar", dest, progress=False)


def _msd_tar(tmp_path: Path) -> bytes:
    src = tmp_path / "src" / "Task05_Prostate"
    training = []
    for i in range(3):
        write_nifti(src / "imagesTr" / f"prostate_{i:02d}.nii.gz", channels=2)
        write_nifti(src / "labelsTr" / f"prostate_{i:02d}.nii.gz", label=True)
        name = f"prostate_{i:02d}.nii.gz"
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (src / "dataset.json").write_text(
        json.dumps(
            {
                "name": "PROSTATE",
                "modality": {"0": "T2", "1": "ADC"},
                "labels": {"0": "background", "1": "PZ", "2": "TZ"},
                "training": training,
                "test": [],
            }
        )
    )
    (src / "imagesTr" / "._prostate_00.nii.gz").write_bytes(b"resource fork")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src, arcname="Task05_Prostate")
    return buf.getvalue()


def test_download_msd_prostate_then_prepare(server: _Server, tmp_path: Path) -> None:
    data = _msd_tar(tmp_path)
    server.files["/Task05_Prostate.tar"] = data
    root = tmp_path / "data"
    task = download_msd_prostate(
        root, url=f"{server.url}/Task05_Prostate.tar", md5=hashlib.md5(data).hexdigest(), progress=False
    )
    assert task == root / "Task05_Prostate" and (task / "dataset.json").is_file()
    assert not (task / "imagesTr" / "._prostate_00.nii.gz").exists()  # resource forks skipped
    assert (root / "Task05_Prostate.tar").stat().st_size == len(data)
    assert not [p for p in root.iterdir() if p.name.startswith(".extract")]
    res = prepare_msd_prostate(root, progress=False)
    assert res.summary.num_training == 3 and res.summary.channels == ["T2", "ADC"]
    n = len(server.ranges)
    assert download_msd_prostate(root, url=f"{server.url}/Task05_Prostate.tar", progress=False) == task
    assert len(server.ranges) == n  # already extracted: no request


def test_extract_tar_refuses_unsafe_members(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(UserInputError, match=r"evil\.tar holds an unsafe path '\.\./escape\.txt'; refusing"):
        extract_tar(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "escape.txt").exists()
    (tmp_path / "junk.tar").write_bytes(b"this is no tar")
    with pytest.raises(UserInputError, match=r"cannot open .*junk\.tar as a tar archive"):
        extract_tar(tmp_path / "junk.tar", tmp_path / "out", progress=False)
