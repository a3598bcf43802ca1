"""Reading command-line settings: ``python -m monai.bundle run`` parses values with python-fire, which turns
``--resume False`` into ``False`` but ``--resume false`` into the string ``"false"`` (truthy in Python)."""

from __future__ import annotations

from typing import Any

from ..errors import UserInputError

__all__ = ["as_bool"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", "none", ""}


def as_bool(value: Any, name: str = "setting") -> bool:
    """``value`` as a bool; the strings ``true/false/yes/no/on/off/1/0`` (any case) are accepted.

    Raises:
        UserInputError: any other string.
    """
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise UserInputError(f"--{name} {value!r} is not a yes/no value; use True or False")
    return bool(value)
