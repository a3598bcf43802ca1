"""Random-number state of a training run, as plain data that ``torch.load(..., weights_only=True)`` accepts.

Captured with every resume checkpoint and restored on resume:

- Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA generator;
- the ``R`` generator (a ``numpy.random.RandomState``) of every MONAI randomizable transform reachable from the
  training dataset's transform (``Compose`` members and the array transforms that dictionary transforms wrap), in a
  fixed traversal order.

Limits (MONAI / PyTorch): with ``num_workers > 0`` the transforms run in data-loader worker processes whose generators
are re-seeded by MONAI's ``worker_init_fn`` each time a pass over the data starts; their state in the middle of a pass
lives in the workers and cannot be saved, so a run resumed in the middle of a pass draws different crops and
augmentations from there on (statistically the same, not bit-identical). With ``num_workers=0`` (and the
deterministic data order of :class:`~ultralight3d.bundle.sampling.ResumableSampler`) a resumed CPU run repeats the
uninterrupted one exactly. CUDA kernels that are non-deterministic (e.g. trilinear upsampling backward) make GPU runs
differ slightly anyway.
"""

from __future__ import annotations

import logging
import random
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng", "randomizable_transforms", "transform_generators"]

logger = logging.getLogger(__name__)

_SKIP = (
    torch.Tensor,
    np.ndarray,
    str,
    bytes,
    int,
    float,
    bool,
    type(None),
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    torch.nn.Module,
)


def randomizable_transforms(root: Any, max_depth: int = 8) -> list[Any]:
    """Objects holding a ``numpy.random.RandomState`` as ``R`` reachable from ``root``, in a fixed order."""
    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if depth > max_depth or isinstance(obj, _SKIP) or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, depth + 1)
            return
        if isinstance(obj, dict):
            for item in obj.values():
                walk(item, depth + 1)
            return
        attrs = getattr(obj, "__dict__", None)
        if attrs is None:
            return
        if isinstance(attrs.get("R"), np.random.RandomState):
            found.append(obj)
        for key, value in attrs.items():
            if key != "R" and not key.startswith("__"):
                walk(value, depth + 1)

    walk(root, 0)
    return found


def _np_state(gen: np.random.RandomState) -> list[Any]:
    name, keys, pos, has_gauss, cached = gen.get_state()
    return [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _set_np_state(gen: np.random.RandomState, state: list[Any]) -> None:
    name, keys, pos, has_gauss, cached = state
    gen.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))


def transform_generators(transform: Any) -> list[np.random.RandomState]:
    """The generators of ``transform``'s randomizable parts (see :func:`randomizable_transforms`)."""
    return [obj.R for obj in randomizable_transforms(transform)] if transform is not None else []


def capture_rng(generators: Sequence[np.random.RandomState] = ()) -> dict[str, Any]:
    """The random state of this process, and of the transform ``generators`` (:func:`transform_generators`)."""
    py = random.getstate()
    state: dict[str, Any] = {
        "python": [int(py[0]), [int(v) for v in py[1]], py[2]],
        "numpy": _np_state(np.random.mtrand._rand),
        "torch": torch.get_rng_state(),
        "transforms": [_np_state(g) for g in generators],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: Sequence[np.random.RandomState] = ()) -> list[str]:
    """Restore what :func:`capture_rng` saved; returns the parts that could not be restored (and why)."""
    problems: list[str] = []
    try:
        version, values, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in values), gauss))
        _set_np_state(np.random.mtrand._rand, state["numpy"])
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        problems.append(f"global generators ({type(err).__name__}: {err})")
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])
        except (RuntimeError, ValueError) as err:  # pragma: no cover  (other GPU count)
            problems.append(f"CUDA generators ({err})")
    saved = state.get("transforms") or []
    if len(generators) != len(saved):
        problems.append(
            f"transform generators ({len(saved)} saved, {len(generators)} in this pipeline: the transforms changed)"
        )
    else:
        for gen, s in zip(generators, saved, strict=True):
            _set_np_state(gen, s)
    return problems
