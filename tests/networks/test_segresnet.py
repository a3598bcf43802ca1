"""The registered SegResNet baseline is MONAI's SegResNet (same state-dict keys, same output) plus the input check."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SegResNet

from ultralight3d import create_model, get_model_cfg


def test_segresnet_is_monais_default_segresnet() -> None:
    torch.manual_seed(0)
    ours = create_model("segresnet", in_channels=1, out_channels=5).eval()
    ref = SegResNet(spatial_dims=3, in_channels=1, out_channels=5).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 1, 32, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_segresnet_divisor_follows_its_downsamplings() -> None:
    assert get_model_cfg("segresnet").divisor == 8
    net = create_model("segresnet", blocks_down=(1, 2, 2), blocks_up=(1, 1)).eval()
    assert net.divisor == 4
    with torch.no_grad():
        assert net(torch.randn(1, 1, 12, 12, 12)).shape == (1, 2, 12, 12, 12)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(1, 1, 10, 12, 12))
