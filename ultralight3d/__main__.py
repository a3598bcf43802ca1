"""``python -m ultralight3d``: the ``ultralight3d`` command (:func:`ultralight3d.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
