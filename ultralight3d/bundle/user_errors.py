"""One-line errors for ``python -m monai.bundle run``: importing this module installs a ``sys.excepthook``.

Every bundle config lists ``"$import ultralight3d.bundle.user_errors"`` in its ``imports``, so the hook is in place
before any id is evaluated. When the program ends with an exception whose chain (``__cause__`` / ``__context__``; MONAI
wraps errors of config expressions in ``RuntimeError("Failed to evaluate ...")``) holds a
:class:`~ultralight3d.errors.UserInputError`, only its message is printed, plus where to look; any other exception
keeps Python's traceback. ``ULTRALIGHT3D_TRACEBACK=1`` always shows the traceback.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from ..errors import UserInputError

__all__ = ["find_user_error", "format_user_error", "install"]

_HINT = (
    "(a setting or input file of this bundle run; the log above shows the steps before it; "
    "ULTRALIGHT3D_TRACEBACK=1 shows the traceback)"
)


def find_user_error(err: BaseException | None) -> UserInputError | None:
    """The :class:`UserInputError` in ``err``'s chain of causes, if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserInputError):
            return err
        seen.add(id(err))
        err = err.__cause__ if err.__cause__ is not None else err.__context__
    return None


def format_user_error(err: UserInputError) -> str:
    """What the hook prints: ``ERROR: <message>`` (one line) and the hint line."""
    message = " ".join(str(err).split())
    return f"ERROR: {message}\n  {_HINT}\n"


def _hook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    user = find_user_error(value)
    if user is None or os.environ.get("ULTRALIGHT3D_TRACEBACK"):
        _previous(etype, value, tb)
        return
    sys.stderr.write(format_user_error(user))
    sys.stderr.flush()


_previous = sys.excepthook


def install() -> None:
    """Install the hook (idempotent; the hook in place before is used for other exceptions)."""
    global _previous
    if getattr(sys.excepthook, "__module__", None) == __name__:
        return
    _previous = sys.excepthook
    sys.excepthook = _hook


install()
