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


def make_bundle(root, protocol: str = "generic", model_name: str = "ultralight_unet3d_t", labels=None, seed: int = 0,
                **ids):
    """A minimal bundle folder: configs/inference.json from the template, models/labels.csv, random-weight model.pt.

    ``ids`` override template ids (e.g. ``roi_size``, ``transform_params``, ``sw_batch_size``).
    """
    from ultralight3d import create_model
    from ultralight3d.inference import write_inference_config
    from ultralight3d.labels import LabelTable, write_label_csv
    from ultralight3d.transforms import get_protocol

    proto = get_protocol(protocol)
    ids.setdefault("in_channels", proto["in_channels"])
    ids.setdefault("num_classes", proto["num_classes"])
    write_inference_config(root, protocol, model_name, **ids)
    table = labels or LabelTable.from_names({int(k): v for k, v in proto["labels"].items()})
    (root / "models").mkdir(parents=True, exist_ok=True)
    write_label_csv(table, root / "models" / "labels.csv")
    import json

    import monai

    meta = {"version": "0.0.1", "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
            "numpy_version": np.__version__, "description": "test bundle", "network_data_format": {}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(seed)
    net = create_model(model_name, spatial_dims=3, in_channels=proto["in_channels"], out_channels=proto["num_classes"])
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


@pytest.fixture(scope="session")
def make_bundle_fn():
    """:func:`make_bundle` itself (for module-scoped fixtures; ``conftest`` is not importable by name reliably)."""
    return make_bundle


@pytest.fixture
def bundle_factory(tmp_path):
    def factory(name: str = "bundle", **kwargs):
        return make_bundle(tmp_path / name, **kwargs)

    return factory
