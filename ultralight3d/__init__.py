"""ultralight3d: ultra-light 3D medical image segmentation on MONAI.

Importing the package is cheap: it imports neither torch nor MONAI. Public names are resolved on first use (PEP 562
module ``__getattr__``, as in this package's subpackages), so ``from ultralight3d import create_model`` and
``ultralight3d.inference.Predictor`` work as before and import only what they need; the registry fills itself with
every network family on its first lookup.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from .registry import ModelCfg, create_model, get_model_cfg, list_models, register_model

__all__ = ["__version__", "ModelCfg", "create_model", "get_model_cfg", "list_models", "register_model"]


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for a package whose public names live in its submodules.

    The submodule defining a name is imported on the first access to it and the value cached in the package. Any
    other attribute that names a submodule (``ultralight3d.inference.records``) imports that submodule, as the eager
    imports used to make it available.

    Args:
        package: the package's ``__name__``.
        exports: ``{relative submodule: [public names it defines]}``, e.g. ``{".predictor": ["Predictor"]}``.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's module level.
    """
    source = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in source:
            value = getattr(importlib.import_module(source[name], package), name)
        elif name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise  # the submodule exists but one of its own imports is missing
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(source))

    return __getattr__, __dir__


_EXPORTS = {".registry": ["ModelCfg", "create_model", "get_model_cfg", "list_models", "register_model"]}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
