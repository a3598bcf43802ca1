"""``python -m ultralight3d``: the ``ultralight3d`` command (:func:`ultralight3d.cli.console`)."""

import sys

from .cli import console

sys.exit(console())
