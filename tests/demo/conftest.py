"""One reduced demo run shared by the demo and notebook tests (training is the expensive part)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Reduced settings: the real demo trains 300 iterations on 8 cases; 120 on 6 is the least that
#: separates a working model from a broken one (measured, see DICE_FLOOR).
DEMO_TEST_ITERATIONS = int(os.environ.get("ULTRALIGHT3D_DEMO_TEST_ITERATIONS", "120"))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """``ultralight3d demo`` through its CLI with fewer iterations; returns ``(output folder, stdout, iterations)``."""
    import contextlib
    import io

    from ultralight3d.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "-o", str(out), "--iterations", str(DEMO_TEST_ITERATIONS), "--cases", "6", "--threads", "2"])
    assert rc == 0, buf.getvalue()
    return Path(out), buf.getvalue(), DEMO_TEST_ITERATIONS
