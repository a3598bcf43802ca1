"""Export: ONNX Runtime / TorchScript parity with PyTorch for every variant, bundle export, CLI, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from monai.inferers import sliding_window_inference

from ultralight3d import create_model, list_models
from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.export import (
    OnnxRuntimeModel,
    check_parity,
    export_bundle,
    export_onnx,
    load_state_dict,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ULTRALIGHT = list_models("ultralight*")
BIG = {"ultralight_unet3d_m", "ultralight_unet3d_l"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in ULTRALIGHT])
def test_onnx_parity_96_for_every_ultralight_variant(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model(name, in_channels=1, out_channels=3).eval()
    path = export_onnx(net, tmp_path / "m.onnx", example_size=(64, 64, 64))  # traced at 64³, run at 96³ (dynamic)
    ort_model = OnnxRuntimeModel(path, num_threads=2)
    assert (ort_model.in_channels, ort_model.out_channels, ort_model.divisor) == (1, 3, 32)
    res = check_parity(net, ort_model, size=(96, 96, 96), atol=1e-3)
    assert res.shape == (1, 3, 96, 96, 96)
    assert res.max_abs_diff < 1e-3 and res.passed, res
    assert res.argmax_agreement > 0.999


@pytest.mark.slow
def test_onnx_parity_uxnet_small(tmp_path: Path) -> None:
    """UX-Net (53 M parameters) at 32³ x 48: the exporter's negative Transpose perms are fixed for ONNX Runtime."""
    torch.manual_seed(0)
    net = create_model("uxnet3d", in_channels=1, out_channels=2).eval()
    ort_model = OnnxRuntimeModel(export_onnx(net, tmp_path / "ux.onnx", example_size=(32, 32, 32)))
    assert ort_model.divisor == 16
    res = check_parity(net, ort_model, size=(32, 32, 48))
    assert res.passed and res.max_abs_diff < 1e-3, res


def test_onnx_model_as_sliding_window_engine_and_input_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model("ultralight_unet3d_t", in_channels=2, out_channels=2).eval()
    ort_model = OnnxRuntimeModel(export_onnx(net, tmp_path / "t.onnx", example_size=(32, 32, 32)))
    x = torch.randn(1, 2, 70, 45, 33)  # not a multiple of 32: the sliding window pads each ROI
    with torch.no_grad():
        ref = sliding_window_inference(x, (32, 32, 32), 2, net, overlap=0.25)
    out = sliding_window_inference(x, (32, 32, 32), 2, ort_model, overlap=0.25)
    assert out.shape == (1, 2, 70, 45, 33)
    assert (out - ref).abs().max().item() < 1e-3
    with pytest.raises(UserInputError, match="exported for 2 input channel\\(s\\) but got 1"):
        ort_model(torch.randn(1, 1, 32, 32, 32))
    with pytest.raises(UserInputError, match="multiples of 32, got \\[32, 32, 40\\]"):
        ort_model(torch.randn(1, 2, 32, 32, 40))
    with pytest.raises(UserInputError, match="not found"):
        OnnxRuntimeModel(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="ONNX Runtime cannot load .*bad.onnx"):
        OnnxRuntimeModel(tmp_path / "bad.onnx")


def test_load_state_dict_accepts_both_checkpoint_kinds(tmp_path: Path) -> None:
    net = create_model("ultralight_unet3d_t")
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    torch.save({"model": net.state_dict(), "optimizer": {"state": {}}}, tmp_path / "resume.pt")
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "ddp.pt")
    for name in ("plain.pt", "resume.pt", "ddp.pt"):
        state = load_state_dict(tmp_path / name)
        assert state.keys() == net.state_dict().keys()
    torch.save({"epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(UserInputError, match="other.pt is not a model state dict"):
        load_state_dict(tmp_path / "other.pt")


def test_export_bundle_and_cli(tmp_path: Path) -> None:
    """A trained custom bundle (variant T, random weights) exports to ONNX + TorchScript with parity; the CLI too."""
    bundle = tmp_path / "custom_ultralight_unet3d"
    shutil.copytree(REPO_ROOT / "bundles" / "custom_ultralight_unet3d", bundle,
                    ignore=shutil.ignore_patterns("runs", "*.pt"))  # fmt: skip
    torch.manual_seed(0)
    net = create_model("ultralight_unet3d_t", in_channels=1, out_channels=4)
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    over = {"variant": "t", "num_classes": 4}
    res = export_bundle(bundle, example_size=(32, 32, 64), overrides=over)
    assert res["onnx"] == bundle / "models" / "model.onnx" and res["torchscript"] == bundle / "models" / "model.ts"
    for fmt in ("onnx", "torchscript"):
        assert res["parity"][fmt].passed and res["parity"][fmt].shape == (1, 4, 32, 32, 64)
    ts = torch.jit.load(str(res["torchscript"]), _extra_files={"metadata.json": ""})
    with torch.no_grad():
        y = ts(torch.randn(1, 1, 64, 32, 32))  # scripted: dynamic sizes
    assert y.shape == (1, 4, 64, 32, 32)
    with pytest.raises(UserInputError, match="already exists; pass --overwrite"):
        export_bundle(bundle, formats=["onnx"], example_size=(32, 32, 64), overrides=over)
    with pytest.raises(UserInputError, match="does not fit the network"):
        export_bundle(bundle, formats=["onnx"], output_dir=tmp_path / "x", overrides={"variant": "s", "num_classes": 4})

    out = tmp_path / "cli"
    ckpt = str(bundle / "models" / "model.pt")
    rc = main(["export", "--model", "ultralight_unet3d_t", "--out-channels", "4", "--checkpoint", ckpt, "--format",
               "onnx", "--size", "32", "--output-dir", str(out)])  # fmt: skip
    assert rc == 0 and (out / "model.onnx").is_file()
    meta = OnnxRuntimeModel(out / "model.onnx").metadata
    assert meta["out_channels"] == 4 and meta["network"] == "UltraLightUNet" and meta["divisor"] == 32
    assert main(["export", "--model", "ultralight_unet3d_t", "--output-dir", str(out)]) == 2  # needs a checkpoint


def test_export_cli_options(tmp_path: Path, capsys) -> None:
    """--random-weights / --in-channels / --out-channels / --opset / --atol / --no-parity / --config-file / -i / -o."""
    import onnx

    out = tmp_path / "r"
    rc = main(
        [
            "export",
            "--model",
            "ultralight_unet3d_t",
            "--random-weights",
            "--in-channels",
            "2",
            "--out-channels",
            "3",
            "--format",
            "onnx",
            "--size",
            "32",
            "32",
            "64",
            "--opset",
            "18",
            "--atol",
            "1e-4",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "parity onnx" in printed and "on [1, 3, 32, 32, 64]  OK (atol 0.0001)" in printed
    meta = OnnxRuntimeModel(out / "model.onnx").metadata
    assert (meta["in_channels"], meta["out_channels"], meta["example_size"]) == (2, 3, [32, 32, 64])
    assert {o.domain: o.version for o in onnx.load(str(out / "model.onnx")).opset_import}[""] == 18
    rc = main(
        [
            "export",
            "--model",
            "ultralight_unet3d_t",
            "--random-weights",
            "--format",
            "torchscript",
            "--size",
            "32",
            "--no-parity",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0 and "parity" not in capsys.readouterr().out and (out / "model.ts").is_file()
    assert not (out / "model.json").exists()  # no card without a checkpoint card
    # --config-file merges files in order: the last one sets the variant and classes of these weights
    bundle = tmp_path / "custom"
    shutil.copytree(
        REPO_ROOT / "bundles" / "custom_ultralight_unet3d",
        bundle,
        ignore=shutil.ignore_patterns("runs", "*.pt", "*.onnx", "model.json"),
    )
    torch.manual_seed(0)
    torch.save(create_model("ultralight_unet3d_t", in_channels=1, out_channels=4).state_dict(), tmp_path / "w.pt")
    (tmp_path / "t4.json").write_text('{"variant": "t", "num_classes": 4}')
    rc = main(
        [
            "export",
            "--bundle",
            str(bundle),
            "--config-file",
            str(bundle / "configs" / "inference.json"),
            str(tmp_path / "t4.json"),
            "-i",
            str(tmp_path / "w.pt"),
            "--format",
            "onnx",
            "--size",
            "32",
            "-o",
            str(tmp_path / "b"),
        ]
    )
    assert rc == 0 and OnnxRuntimeModel(tmp_path / "b" / "model.onnx").out_channels == 4
    assert (
        main(
            [
                "export",
                "--model",
                "ultralight_unet3d_t",
                "--random-weights",
                "-i",
                str(tmp_path / "w.pt"),
                "-o",
                str(out),
            ]
        )
        == 2
    )
    assert "drop it or drop --checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "w.pt"), "-o", str(out)]) == 2  # no card, no --model
    assert "w.pt has no model card" in capsys.readouterr().err


def test_export_writes_the_folded_deployment_graph_unless_asked_for_the_plain_one(tmp_path: Path, capsys) -> None:
    """`ultralight3d export` writes the graph OpenVINO runs in predict (no channel-shuffle Transpose, fewer nodes),
    checked against the plain network; --plain-graph writes the modules as they are."""
    import onnx

    argv = ["export", "--model", "ultralight_unet3d_t", "--random-weights", "--format", "onnx", "--size", "32"]
    graphs = {}
    for name, extra in (("folded", []), ("plain", ["--plain-graph"])):
        assert main([*argv, "-o", str(tmp_path / name), *extra]) == 0
        printed = capsys.readouterr().out
        assert "parity onnx" in printed and "OK (atol 0.001)" in printed  # against the plain network
        graphs[name] = [n.op_type for n in onnx.load(str(tmp_path / name / "model.onnx")).graph.node]
    assert "Transpose" in graphs["plain"] and "Transpose" not in graphs["folded"]
    assert len(graphs["folded"]) < len(graphs["plain"])
