"""Where the bundle is: the ``bundle_root`` of a config, without looking into the caller's stack.

MONAI's ``ConfigWorkflow`` knows the folder of its first config file (``config_root_path``) but does not put it into
the config, and a relative ``bundle_root: "."`` resolves against the current directory. So the bundle root is taken,
in this order, from:

1. ``--config_file`` on the command line (``python -m monai.bundle run ...`` and ``torchrun -m monai.bundle run ...``
   both leave it in ``sys.argv``): the parent of the ``configs/`` folder holding the first file;
2. ``--bundle_root`` on the command line (normally it replaces the ``bundle_root`` id itself, so this only matters
   when another id calls :func:`find_bundle_root`);
3. the current directory, or its parent when it is a ``configs/`` folder.

In-process users of ``ConfigWorkflow`` (tests, the demo) pass ``bundle_root=`` as an override.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_bundle_root", "config_files_from_argv", "bundle_of_config"]


def bundle_of_config(config_file: str | os.PathLike) -> Path:
    """The bundle folder of a config file: the parent of its ``configs/`` folder (else the file's own folder)."""
    cfg_dir = Path(config_file).expanduser().resolve().parent
    return cfg_dir.parent if cfg_dir.name == "configs" else cfg_dir


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def config_files_from_argv(argv: Sequence[str] | None = None) -> list[str]:
    """The ``--config_file`` value(s) of a ``monai.bundle`` command line (one path or a quoted Python list)."""
    value = _option(sys.argv if argv is None else argv, "--config_file")
    if value is None:
        return []
    value = value.strip()
    if value.startswith(("[", "(")):
        try:
            return [str(v) for v in ast.literal_eval(value)]
        except (ValueError, SyntaxError):
            return [v.strip(" '\"") for v in value.strip("[]()").split(",") if v.strip(" '\"")]
    return [value]


def find_bundle_root(default: str | os.PathLike = ".", argv: Sequence[str] | None = None) -> str:
    """Absolute path of the bundle being run (lookup order in the module docstring)."""
    argv = sys.argv if argv is None else argv
    files = config_files_from_argv(argv)
    if files:
        return str(bundle_of_config(files[0]))
    explicit = _option(argv, "--bundle_root")
    if explicit:
        return str(Path(explicit).expanduser().resolve())
    root = Path(default).expanduser().resolve()
    return str(root.parent if root.name == "configs" else root)
