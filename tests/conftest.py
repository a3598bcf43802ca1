"""Shared pytest fixtures: real data beside the project, GPU marker handling, small thread counts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

# the engines' cache (exported ONNX graphs, OpenVINO's compiled models) in a temporary folder, for this process and
# the subprocesses tests start, never in the user's ~/.cache
os.environ.setdefault("ULTRALIGHT3D_CACHE", tempfile.mkdtemp(prefix="ultralight3d-test-cache-"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_SPEC = REPO_ROOT.parent / "shared" / "spec"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real scans); the test is skipped when it is absent (e.g. on a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
