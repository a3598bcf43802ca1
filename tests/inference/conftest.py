"""Fixtures for inference tests: a thresholding stand-in network and small synthetic volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch


class ThresholdNet(torch.nn.Module):
    """Logits ``[-(x - t), (x - t)]`` on the first channel: argmax is exactly ``x > t``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # so it has a state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, :1] - self.threshold
        return torch.cat([-d, d], dim=1)


@pytest.fixture
def threshold_net():
    return ThresholdNet(50.0)


@pytest.fixture
def phantom() -> np.ndarray:
    """40x36x33 volume: an off-centre box of 100 (plus a sphere) on noise in [0, 1)."""
    rng = np.random.default_rng(0)
    vol = rng.random((40, 36, 33)).astype(np.float32)
    vol[5:20, 10:30, 3:12] += 100
    ii, jj, kk = np.indices(vol.shape)
    vol[(ii - 30) ** 2 + (jj - 12) ** 2 + (kk - 22) ** 2 < 36] += 100
    return vol


def make_bundle(
    root, protocol: str = "generic", model_name: str = "ultralight_unet3d_t", labels=None, seed: int = 0, **ids
):
    """A minimal bundle folder: configs/inference.json from the template, models/labels.csv, random-weight model.pt.

    ``ids`` override template ids (e.g. ``roi_size``, ``transform_params``, ``sw_batch_size``).
    """
    import pathlib
    import runpy  # configs/inference.json is rendered by the bundle generator (tools/generate_bundles.py)

    from ultralight3d import create_model

    tools = pathlib.Path(__file__).resolve().parents[2] / "tools"
    write_inference_config = runpy.run_path(str(tools / "generate_bundles.py"))["write_inference_config"]
    from ultralight3d.labels import LabelTable, write_label_csv
    from ultralight3d.transforms import get_protocol

    proto = get_protocol(protocol)
    ids.setdefault("in_channels", proto["in_channels"])
    ids.setdefault("num_classes", proto["num_classes"])
    write_inference_config(root, protocol, model_name, **ids)
    table = labels or LabelTable.from_protocol(protocol)  # names + terminology, as tools/generate_bundles.py should
    (root / "models").mkdir(parents=True, exist_ok=True)
    write_label_csv(table, root / "models" / "labels.csv")
    import json

    import monai

    meta = {
        "version": "0.0.1",
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "description": "test bundle",
        "network_data_format": {},
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(seed)
    net = create_model(model_name, spatial_dims=3, in_channels=proto["in_channels"], out_channels=proto["num_classes"])
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def make_threshold_bundle(root, protocol: str = "synapse", cuts=((1, 50.0), (5, 150.0)), **ids):
    """A bundle whose network is a 1x1x1 convolution with piecewise-linear logits: class ``cuts[i][0]`` wins where
    ``cuts[i][1] < x < cuts[i+1][1]`` (background below the first cut), so every output is known voxel for voxel.

    The protocol's spatial/intensity steps are neutralised (``transform_params``): no cropping, no normalisation,
    spacing 1 x 1 x 2 mm (use that voxel size for inputs); its class table, terminology and post-processing stay.
    """
    import json

    from ultralight3d.transforms import get_protocol

    n_cls = get_protocol(protocol)["num_classes"]
    ids.setdefault("roi_size", [32, 32, 32])
    ids.setdefault("sw_batch_size", 4)
    ids.setdefault("overlap", 0.25)
    ids.setdefault("progress", False)
    ids.setdefault(
        "transform_params", {"normalization": {"kind": "none"}, "crop_foreground": False, "spacing": [1.0, 1.0, 2.0]}
    )
    make_bundle(root, protocol=protocol, **ids)
    cfg_path = root / "configs" / "inference.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["network_def"] = {
        "_target_": "torch.nn.Conv3d",
        "in_channels": 1,
        "out_channels": n_cls,
        "kernel_size": 1,
    }
    cfg_path.write_text(json.dumps(cfg, indent=2))
    conv = torch.nn.Conv3d(1, n_cls, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-1e6)
        conv.bias[0] = 0.0
        total = 0.0
        for slope, (cls, cut) in enumerate(sorted(cuts, key=lambda c: c[1]), start=1):
            total += cut
            conv.weight[cls] = float(slope)
            conv.bias[cls] = -total
    torch.save(conv.state_dict(), root / "models" / "model.pt")
    return root


@pytest.fixture(scope="session")
def make_threshold_bundle_fn():
    """:func:`make_threshold_bundle`."""
    return make_threshold_bundle


@pytest.fixture(scope="session")
def make_bundle_fn():
    """:func:`make_bundle` itself (for module-scoped fixtures; ``conftest`` is not importable by name reliably)."""
    return make_bundle


@pytest.fixture
def bundle_factory(tmp_path):
    def factory(name: str = "bundle", **kwargs):
        return make_bundle(tmp_path / name, **kwargs)

    return factory


def write_dicom_series(vol: np.ndarray, folder, spacing=(0.9, 0.9, 2.0)) -> str:
    """Write ``vol`` (Z, Y, X) as a CT DICOM series (one file per slice) with the tags DICOM-SEG needs; returns the
    SeriesInstanceUID."""
    import locale
    from pathlib import Path

    import pydicom
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(vol.astype(np.int16))
    img.SetSpacing(spacing)
    series_uid, study_uid, frame_uid = (pydicom.uid.generate_uid() for _ in range(3))
    d = img.GetDirection()
    tags = [
        ("0008|0008", "DERIVED\\SECONDARY"),
        ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
        ("0008|0020", "20240101"),
        ("0008|0030", "120000"),
        ("0008|0060", "CT"),
        ("0008|103e", "synthetic"),
        ("0010|0010", "Test^Patient"),
        ("0010|0020", "PAT1"),
        ("0018|0050", str(spacing[2])),
        ("0020|000d", study_uid),
        ("0020|000e", series_uid),
        ("0020|0011", "1"),
        ("0020|0052", frame_uid),
        ("0020|0037", "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
    ]
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the C locale to "C": put it back
    try:
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for i in range(img.GetDepth()):
            sl = img[:, :, i]
            for key, value in tags:
                sl.SetMetaData(key, value)
            sl.SetMetaData("0020|0032", "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, i))))
            sl.SetMetaData("0020|0013", str(i + 1))
            sl.SetMetaData("0008|0018", f"{series_uid}.{i + 1}")
            writer.SetFileName(str(folder / f"slice{i:03d}.dcm"))
            writer.Execute(sl)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    return series_uid


@pytest.fixture
def dicom_series_fn():
    """:func:`write_dicom_series`."""
    return write_dicom_series
