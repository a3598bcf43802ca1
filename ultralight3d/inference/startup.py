"""A lean MONAI import for ``ultralight3d predict``: MONAI without the optional packages it loads at start-up and
predict never uses.

``import monai`` imports every MONAI subpackage, and with them, through MONAI's ``optional_import``, pytorch-ignite
(its engines and handlers: ~1.3 s, most of it ``torch.distributed``/FSDP), ``scipy.signal`` (one ultrasound
transform: ~1.1 s), matplotlib and IPython (notebook plotting helpers), TensorBoard (its summary writers), ITK
(MONAI's ITK reader and writer, ~0.4 s: ``predict`` reads with nibabel/SimpleITK), pydicom (MONAI's DICOM reader:
``predict`` reads DICOM series itself), requests (MONAI's downloads) and ``scipy.spatial`` (a KD-tree for surface
metrics). On the 2-core AMD EPYC of the issue 15 measurements ``import monai`` took 3.8 s after torch, and 1.0-1.4 s
with the first five held back; on a slower 2-core AMD EPYC (AVX2) 2.3 s with those and 1.8 s with all of them.

:func:`import_monai_lean` imports MONAI with a finder in ``sys.meta_path`` that reports those packages as missing
*while MONAI imports*; MONAI then keeps its placeholders for them (as on an installation without them), and the
finder is removed, so a later ``import matplotlib`` or ``import ignite`` in the same process works as usual. What
loses its optional package is MONAI's own use of it in this process: its ignite engines and handlers, its notebook
plots, its TensorBoard writers, the ultrasound confidence map, its ITK and pydicom readers and ITK writer, its
downloads and its KD-tree surface distances. ``ultralight3d predict`` uses none of them (its
window loop is :class:`~ultralight3d.inference.Predictor`'s own). Set ``ULTRALIGHT3D_FULL_IMPORT=1`` to import MONAI
in full.

Nothing here imports torch or MONAI at module level.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence

__all__ = ["FULL_IMPORT_ENV", "LEAN_SKIPPED", "import_monai_lean"]

#: the packages (and subpackages) MONAI's start-up loads that ``predict`` does not use.
LEAN_SKIPPED: tuple[str, ...] = (
    "ignite",
    "scipy.signal",
    "scipy.spatial",
    "matplotlib",
    "mpl_toolkits",
    "IPython",
    "tensorboard",
    "itk",
    "pydicom",
    "requests",
)
#: environment variable that turns the lean import off.
FULL_IMPORT_ENV = "ULTRALIGHT3D_FULL_IMPORT"


class _HoldBack(importlib.abc.MetaPathFinder):
    """Reports the held-back packages as not installed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec:
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r} (held back while MONAI imports)", name=fullname)
        return None  # type: ignore[return-value]  # not ours: the next finder decides


def import_monai_lean(skipped: Sequence[str] = LEAN_SKIPPED) -> bool:
    """Import MONAI without ``skipped`` (see the module docstring). Returns True when it did; False when MONAI was
    already imported (nothing to change) or ``ULTRALIGHT3D_FULL_IMPORT`` is set (MONAI imported in full)."""
    if "monai" in sys.modules:
        return False
    if os.environ.get(FULL_IMPORT_ENV, "").strip() not in ("", "0"):
        importlib.import_module("monai")
        return False
    already = {n for n in skipped if n in sys.modules}
    finder = _HoldBack([n for n in skipped if n not in already])
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("monai")
    finally:
        sys.meta_path.remove(finder)
    return True
