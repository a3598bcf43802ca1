"""The engine and precision names and the engines' cache folder: facts the CLI states without importing torch
(:mod:`ultralight3d.inference.engines` uses them)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "ENGINES", "PRECISIONS", "cache_dir", "openvino_available"]

#: engines ``Predictor(engine=...)`` and ``ultralight3d predict --engine`` accept.
ENGINES = ("auto", "torch", "openvino", "onnxruntime")
#: arithmetic precisions of the CPU engines (``--precision``): ``auto`` (bf16 where OpenVINO runs on a CPU with
#: bf16 arithmetic, else fp32), ``fp32``, ``bf16``.
PRECISIONS = ("auto", "fp32", "bf16")
#: environment variable naming the cache folder (exported ONNX graphs, OpenVINO's compiled-model cache).
CACHE_ENV = "ULTRALIGHT3D_CACHE"


def cache_dir() -> Path:
    """Where engines keep what they derive from a network: ``$ULTRALIGHT3D_CACHE``, else
    ``$XDG_CACHE_HOME/ultralight3d``, else ``~/.cache/ultralight3d``. Deleting it only costs a re-export."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ultralight3d"


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported (it is not imported here)."""
    return importlib.util.find_spec("openvino") is not None
