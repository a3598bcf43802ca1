"""Fixtures of the bundle tests (defined in ``bundle_helpers_ul3d.py``)."""

from __future__ import annotations

from bundle_helpers_ul3d import synthetic_data  # noqa: F401  (pytest fixture)
