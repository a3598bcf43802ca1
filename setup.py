"""Package list for setuptools (everything else is in pyproject.toml).

The dataset protocols keep their one home in the top-level ``transforms/`` folder; the wheel carries that folder as
the data package ``ultralight3d/_protocols`` (mapped in pyproject's ``[tool.setuptools.package-dir]``), which
``ultralight3d.transforms.protocol_dir()`` finds in an installed package. An editable install reads ``transforms/``.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["ultralight3d", "ultralight3d.*"]), "ultralight3d._protocols"])
