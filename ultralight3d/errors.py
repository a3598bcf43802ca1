"""Errors shown to users as one readable line (the CLI prints them without a stack trace)."""

from __future__ import annotations

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad input from the user: the message names the file (or setting) and the fix."""
