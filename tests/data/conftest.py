"""Fixtures for the data-preparation tests: tiny datasets in the documented folder layouts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_fixtures_ul3d import write_nifti


@pytest.fixture()
def make_folder(tmp_path: Path) -> Callable[..., Path]:
    """A generic MSD/nnU-Net style folder: ``imagesTr``, ``labelsTr`` (and ``imagesTs``) with ``n`` cases."""

    def make(n: int = 6, nnunet_channels: int = 0, test: int = 0, ext: str = ".nii.gz") -> Path:
        root = tmp_path / "MyData"
        for i in range(n):
            case = f"case_{i:03d}"
            if nnunet_channels:
                for c in range(nnunet_channels):
                    write_nifti(root / "imagesTr" / f"{case}_{c:04d}{ext}")
            else:
                write_nifti(root / "imagesTr" / f"{case}{ext}")
            write_nifti(root / "labelsTr" / f"{case}{ext}", label=True)
        for i in range(test):
            names = [f"new_{i:03d}_{c:04d}{ext}" for c in range(nnunet_channels)] or [f"new_{i:03d}{ext}"]
            for name in names:
                write_nifti(root / "imagesTs" / name)
        return root

    return make
