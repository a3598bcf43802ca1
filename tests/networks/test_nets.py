"""Every registered network: shapes (2D and 3D), backward, determinism, TorchScript round trip, bad input."""

from __future__ import annotations

import io

import pytest
import torch

from ultralight3d import create_model, get_model_cfg, list_models
from ultralight3d.networks.nets.ultralight_unet import PAPER_TABLE10, TABLE10_SETTINGS, VARIANTS, UltraLightUNet

ALL = list_models()
ULTRA = list_models("ultralight_unet3d_*")


def _size(name: str) -> int:
    return get_model_cfg(name).divisor * (2 if get_model_cfg(name).divisor < 32 else 1)  # 32 for both families


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_registry_lists_all_variants() -> None:
    assert ULTRA == [f"ultralight_unet3d_{v}" for v in sorted(VARIANTS)]
    assert "uxnet3d" in ALL
    with pytest.raises(ValueError, match="unknown model 'nope'.*ultralight_unet3d_m"):
        create_model("nope")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_forward_shape_and_backward(name: str, spatial_dims: int) -> None:
    torch.manual_seed(0)
    net = create_model(name, spatial_dims=spatial_dims, in_channels=2, out_channels=3)
    s = _size(name)
    x = torch.randn((2, 2) + (s,) * spatial_dims, requires_grad=True)
    y = net(x)  # training mode, batch 2 so batch norm works at the 1-voxel bottleneck
    assert y.shape == (2, 3) + (s,) * spatial_dims
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for pname, p in net.named_parameters():
        if pname.startswith("aux_heads."):  # deep-supervision heads are unused unless deep_supervision=True
            assert p.grad is None
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert x.grad is not None and x.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        assert net(x[:1]).shape == (1, 3) + (s,) * spatial_dims


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_seed(name: str) -> None:
    x = torch.randn(1, 1, 32, 32, 32)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = create_model(name, out_channels=2).eval()
        with torch.no_grad():
            outs.append(net(x))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(7)
    other = create_model(name, out_channels=2).eval()
    with torch.no_grad():
        assert not torch.equal(outs[0], other(x))


@pytest.mark.parametrize("name", ALL)
def test_torchscript_round_trip(name: str) -> None:
    torch.manual_seed(0)
    net = create_model(name, in_channels=1, out_channels=2).eval()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    x = torch.randn(1, 1, 64, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_bad_spatial_size_and_channels(name: str) -> None:
    net = create_model(name, in_channels=2, out_channels=2).eval()
    div = get_model_cfg(name).divisor
    bad = 2 * div + div // 2  # not a multiple of the divisor
    with pytest.raises(ValueError, match=rf"multiple of {div}.*got \[{bad}, 32, 32\]"):
        net(torch.randn(1, 2, bad, 32, 32))
    with pytest.raises(ValueError, match="built for in_channels=2 but the input has 1 channels"):
        net(torch.randn(1, 1, 32, 32, 32))
    with pytest.raises(ValueError, match=r"got shape \[1, 2, 32, 32\]"):
        net(torch.randn(1, 2, 32, 32))


def test_param_counts_increase_with_variant() -> None:
    counts = [_n_params(create_model(f"ultralight_unet3d_{v}")) for v in ("t", "s", "base", "m", "l")]
    assert counts == sorted(counts) and len(set(counts)) == 5


def _mkir(i: int, o: int) -> int:  # spec §1.6, faithful port (BN in every MKDC branch)
    ex = 2 * i
    return ex * (i + o + 161) + 2 * o + (i * o if i != o else 0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_faithful_port_matches_analytic_formula(variant: str) -> None:
    c = VARIANTS[variant]
    classes, cin = 2, 1
    enc = sum(_mkir(i, o) for i, o in zip([cin] + c[:4], c, strict=True))
    dec = sum(_mkir(i, o) for i, o in [(c[4], c[3]), (c[3], c[2]), (c[2], c[1]), (c[1], c[0]), (c[0], c[0])])
    ca = sum(
        2 * ch * (ch // min(r, ch)) for ch, r in zip([c[4], c[3], c[2], c[1], c[0]], (16, 16, 16, 8, 4), strict=True)
    )
    gag = sum(int(57.5 * f + 3) for f in (c[3], c[2], c[1], c[0]))
    heads = classes * (c[2] + c[1] + 2 * c[0]) + 4 * classes
    expected = enc + dec + ca + 686 + gag + heads
    assert _n_params(create_model(f"ultralight_unet3d_{variant}", in_channels=cin, out_channels=classes)) == expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_table10_settings_reproduce_paper(variant: str) -> None:
    from ptflops import get_model_complexity_info

    paper_params, paper_gflops = PAPER_TABLE10[variant]
    net = create_model(f"ultralight_unet3d_{variant}", **TABLE10_SETTINGS).eval()
    params = _n_params(net)
    assert abs(params / 1e6 - paper_params) / paper_params < 0.02
    if variant in ("t", "base"):  # FLOPs counting runs a 96³ forward: keep the suite quick with two variants
        macs, _ = get_model_complexity_info(net, (1, 96, 96, 96), as_strings=False, print_per_layer_stat=False)
        assert abs(macs / 1e9 - paper_gflops) / paper_gflops < 0.02


def test_uxnet_parameter_count() -> None:
    n = _n_params(create_model("uxnet3d", in_channels=1, out_channels=14))
    assert abs(n - 53.0e6) / 53.0e6 < 0.005
    # spec §2.4: 53,006,069 with 5 classes, every extra class adds a 48->1 conv with bias (49 params)
    assert n == 53_006_069 + 9 * 49


def test_deep_supervision_heads() -> None:
    net = UltraLightUNet(spatial_dims=3, in_channels=1, out_channels=3, channels=VARIANTS["t"], deep_supervision=True)
    x = torch.randn(2, 1, 64, 64, 64)
    out = net(x)
    assert out.shape == (2, 4, 3, 64, 64, 64)
    net.eval()
    with torch.no_grad():
        main = net(x)
    assert main.shape == (2, 3, 64, 64, 64)
    plain = UltraLightUNet(spatial_dims=3, in_channels=1, out_channels=3, channels=VARIANTS["t"])
    assert _n_params(plain) == _n_params(net)  # the heads exist either way, as in the reference


def test_input_repeat_is_equivalent_to_repeated_input() -> None:
    torch.manual_seed(0)
    rep = UltraLightUNet(in_channels=1, out_channels=2, channels=VARIANTS["t"], input_repeat=3).eval()
    torch.manual_seed(0)
    three = UltraLightUNet(in_channels=3, out_channels=2, channels=VARIANTS["t"]).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rep(x), three(x.repeat(1, 3, 1, 1, 1)))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="5 stage widths"):
        UltraLightUNet(channels=[4, 8, 16])
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        UltraLightUNet(spatial_dims=1)
