"""Issue 15: the CPU engines. OpenVINO computes the torch network's logits (float32) or close to them (bf16) and the
same label map; ``auto`` picks it on the CPU; its ONNX graph is exported once per architecture and weights; bad
engines, precisions and files fail with one line; ``predict``'s lean MONAI import holds back what predict never uses.

The OpenVINO tests are skipped when ``openvino`` is not installed (it is a core dependency, so CI has it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ultralight3d import create_model
from ultralight3d.errors import UserInputError
from ultralight3d.inference import Predictor
from ultralight3d.inference.engine_names import openvino_available
from ultralight3d.inference.engines import OpenVINOModel, cached_onnx, resolve_engine

REPO = Path(__file__).resolve().parents[2]
NEEDS_OV = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
ROI = (32, 32, 32)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=3).eval()
    with torch.no_grad():  # logits of a useful size: random heads give near-ties everywhere
        for p in model.parameters():
            p.mul_(1.5)
    return model


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, 44, 37, 33, generator=g)


@NEEDS_OV
def test_openvino_fp32_gives_the_torch_logits(net):
    x = torch.randn(2, 1, *ROI, generator=torch.Generator().manual_seed(0))
    ov_model = OpenVINOModel(cached_onnx(net, ROI), num_threads=1)
    with torch.no_grad():
        want = net(x)
    got = ov_model(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # the smaller last batch of a sliding window gives that window's logits; every batch runs window by window
    # through one compiled shape
    torch.testing.assert_close(ov_model(x[1:]), want[1:], rtol=0, atol=1e-4)
    assert set(ov_model._requests) == {(1, 1, *ROI)}
    assert ov_model.out_channels == 3 and ov_model.divisor == net.divisor  # the export metadata


@NEEDS_OV
def test_the_graph_for_openvino_has_the_channel_shuffle_folded(net, tmp_path):
    import onnx

    from ultralight3d.export.formats import export_onnx

    def ops(path: Path) -> set[str]:
        return {node.op_type for node in onnx.load(str(path)).graph.node}

    plain = ops(export_onnx(net, tmp_path / "plain.onnx", example_size=ROI))
    assert "Transpose" in plain  # the MKIR channel shuffle, a full copy in OpenVINO
    assert "Transpose" not in ops(cached_onnx(net, ROI)) and "Conv" in ops(cached_onnx(net, ROI))


@NEEDS_OV
def test_auto_engine_runs_openvino_from_enough_work_with_the_plain_label_map(net, image, monkeypatch):
    import ultralight3d.inference.predictor as predictor_module

    common = {"roi_size": ROI, "sw_batch_size": 2, "overlap": 0.5, "device": "cpu", "progress": False}
    auto = Predictor(net, precision="fp32", **common)
    plain = Predictor(net, engine="torch", optimize=False, **common)
    assert auto.engine == "auto" and auto.fast_path and plain.engine == "torch"
    work = auto.window_voxels(image.shape[1:])
    assert work == 2 * 2 * 2 * 32**3  # 44, 37, 33 voxels, 32³ windows, step 16: ceil((size - 32) / 16) + 1 = 2 each
    p_plain = plain.predict_probabilities(image)
    # below the threshold: the torch fast path; at it: OpenVINO (compiled once, then kept)
    monkeypatch.setattr(predictor_module, "AUTO_OPENVINO_VOXELS", work + 1)
    p_small = auto.predict_probabilities(image)
    assert auto._case_engine == "torch" and auto._auto_openvino is None
    monkeypatch.setattr(predictor_module, "AUTO_OPENVINO_VOXELS", work)
    p_large = auto.predict_probabilities(image)
    assert auto._case_engine == "openvino" and isinstance(auto._auto_openvino[0], OpenVINOModel)
    for p in (p_small, p_large):
        torch.testing.assert_close(p, p_plain, rtol=0, atol=1e-4)
        assert torch.equal(p.argmax(0), p_plain.argmax(0))


@NEEDS_OV
def test_case_records_name_the_engine_that_ran(net, tmp_path, monkeypatch):
    import nibabel as nib

    import ultralight3d.inference.predictor as predictor_module

    src = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(40, 36, 33)).astype(np.float32), np.eye(4)), src)
    monkeypatch.setattr(predictor_module, "AUTO_OPENVINO_VOXELS", 0)
    run = Predictor(net, roi_size=ROI, device="cpu", progress=False).predict(src, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert run.cases[0].engine == "openvino" and summary["engine"] == "auto"
    assert summary["cases"][0]["engine"] == "openvino"
    from ultralight3d.inference.engines import cpu_has_bf16

    # the default precision "auto": OpenVINO computes in bf16 where the CPU has it, and the record says which
    want = "bf16" if cpu_has_bf16() else "fp32"
    assert summary["precision"] == "auto" and summary["cases"][0]["precision"] == run.cases[0].precision == want


@NEEDS_OV
@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_is_bf16_for_openvino_on_a_bf16_cpu_only(net, image, monkeypatch, has_bf16):
    """``precision="auto"``: OpenVINO runs bf16 where the CPU has bf16 arithmetic (its logits then differ from the
    float32 ones by bf16 rounding, with the label map kept), float32 elsewhere; torch always runs float32 (its CPU
    autocast is no faster), and so do CUDA and ONNX Runtime."""
    from ultralight3d.inference import engines

    if has_bf16 and not engines.cpu_has_bf16():
        pytest.skip("this CPU has no bf16 arithmetic")
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: has_bf16)
    common = {"roi_size": ROI, "sw_batch_size": 2, "device": "cpu", "progress": False}
    auto = Predictor(net, engine="openvino", **common)
    assert auto.precision == "auto" and auto.engine_precision("openvino") == ("bf16" if has_bf16 else "fp32")
    assert auto.models[0].precision == auto.engine_precision("openvino")  # what the compiled engine was given
    assert auto.engine_precision("torch") == "fp32" and auto.engine_precision("onnxruntime") == "fp32"
    fp32 = Predictor(net, engine="openvino", precision="fp32", **common).predict_probabilities(image)
    got = auto.predict_probabilities(image)
    diff = (got - fp32).abs().max().item()
    if has_bf16:
        assert 1e-6 < diff < 0.1, diff
        assert (got.argmax(0) == fp32.argmax(0)).float().mean().item() > 0.97
    else:
        assert diff < 1e-5, diff
    torch_auto = Predictor(net, engine="torch", **common)
    assert torch.equal(
        torch_auto.predict_probabilities(image),
        Predictor(net, engine="torch", precision="fp32", **common).predict_probabilities(image),
    )


@NEEDS_OV
@pytest.mark.parametrize("engine", ["openvino", "torch"])
def test_bf16_is_close_to_fp32_and_changes_the_arithmetic(net, image, engine):
    """bf16 logits differ from fp32 (so the precision really changed) but by bf16 rounding, not more."""
    from ultralight3d.inference.engines import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 arithmetic: bf16 requests run in float32")
    common = {"roi_size": ROI, "sw_batch_size": 2, "device": "cpu", "progress": False, "engine": engine}
    fp32 = Predictor(net, precision="fp32", **common).predict_probabilities(image)
    bf16_predictor = Predictor(net, precision="bf16", **common)
    bf16 = bf16_predictor.predict_probabilities(image)
    assert bf16_predictor.precision == "bf16" and bf16_predictor._run_info()["precision"] == "bf16"
    diff = (bf16 - fp32).abs().max().item()
    assert 1e-6 < diff < 0.1, diff
    assert (bf16.argmax(0) == fp32.argmax(0)).float().mean().item() > 0.97


def test_bf16_on_a_cpu_without_it_runs_float32_and_says_so(net, image, monkeypatch, caplog):
    """Emulated bf16 is slower than float32 and OpenVINO silently computes float32 there: the predictor runs float32,
    warns, and records the precision that ran; the logits are the float32 ones."""
    from ultralight3d.inference import engines

    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: False)
    common = {"roi_size": ROI, "sw_batch_size": 2, "device": "cpu", "progress": False, "engine": "torch"}
    with caplog.at_level("WARNING", logger="ultralight3d.predict"):
        predictor = Predictor(net, precision="bf16", **common)
    assert predictor.precision == "fp32" and predictor._run_info()["precision"] == "fp32"
    assert "no bfloat16 arithmetic" in caplog.text
    fp32 = Predictor(net, precision="fp32", **common).predict_probabilities(image)
    assert torch.equal(predictor.predict_probabilities(image), fp32)


@NEEDS_OV
def test_the_onnx_graph_is_exported_once_per_network_and_weights(net, monkeypatch, tmp_path):
    monkeypatch.setenv("ULTRALIGHT3D_CACHE", str(tmp_path))
    first = cached_onnx(net, ROI)
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path / "onnx" and cached_onnx(net, ROI) == first and first.stat().st_mtime_ns == stamp
    other = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=3).eval()
    other.load_state_dict(net.state_dict())
    assert cached_onnx(other, ROI) == first  # same architecture and weights: the same graph
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert cached_onnx(other, ROI) != first  # new weights: a new graph
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2


def test_engine_choices_and_errors(net, tmp_path):
    assert resolve_engine("torch", "cpu", net) == "torch"
    assert resolve_engine("auto", "cpu", lambda x: x) == "torch"  # a plain callable runs as it is
    assert resolve_engine("auto", "cpu", net) == ("openvino" if openvino_available() else "torch")
    assert resolve_engine("auto", "cuda", net) == "torch"
    with pytest.raises(UserInputError, match="engine must be one of auto, torch, openvino, onnxruntime"):
        Predictor(net, engine="tensorrt", device="cpu")
    with pytest.raises(UserInputError, match="precision must be one of auto, fp32, bf16"):
        Predictor(net, precision="fp16", device="cpu")
    with pytest.raises(UserInputError, match="runs exported .onnx files"):
        Predictor(net, engine="onnxruntime", device="cpu")
    if openvino_available():
        bad = tmp_path / "broken.onnx"
        bad.write_bytes(b"not an onnx graph")
        with pytest.raises(UserInputError, match="OpenVINO cannot read .*broken.onnx") as err:
            OpenVINOModel(bad)
        assert "\n" not in str(err.value)
        with pytest.raises(UserInputError, match="not found; create it with `ultralight3d export`"):
            OpenVINOModel(tmp_path / "missing.onnx")
        with pytest.raises(UserInputError, match="precision must be fp32 or bf16, got 'auto'"):
            OpenVINOModel(tmp_path / "missing.onnx", precision="auto")  # the predictor resolves auto first


_LEAN_PROBE = r"""
import json, sys
import numpy as np
from ultralight3d.inference.startup import LEAN_SKIPPED, import_monai_lean
done = import_monai_lean()
held = sorted(n for n in LEAN_SKIPPED if n in sys.modules)
import torch
from ultralight3d import create_model
from ultralight3d.inference import Predictor
net = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=2).eval()
probs = Predictor(net, roi_size=(32, 32, 32), device="cpu", progress=False, engine="torch").predict_probabilities(
    torch.randn(1, 40, 36, 32, generator=torch.Generator().manual_seed(0)))
import matplotlib  # held back only while MONAI imported
print(json.dumps({"done": done, "held": held, "after": sorted(n for n in LEAN_SKIPPED if n in sys.modules),
                  "sum": float(probs.sum())}))
"""


@pytest.mark.parametrize("full", [False, True])
def test_predict_imports_monai_without_what_it_never_uses(full):
    env = {**__import__("os").environ, "ULTRALIGHT3D_FULL_IMPORT": "1" if full else ""}
    out = subprocess.run(
        [sys.executable, "-c", _LEAN_PROBE], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert np.isclose(got["sum"], 40 * 36 * 32, rtol=1e-4)  # a working predictor: softmax sums to 1 per voxel
    if full:
        assert got["done"] is False and "ignite" in got["held"] and "scipy.signal" in got["held"]
    else:
        assert got["done"] is True and got["held"] == []
        assert "matplotlib" in got["after"] and "ignite" not in got["after"]


@NEEDS_OV
def test_cli_engine_and_precision_reach_the_run(tmp_path):
    import nibabel as nib

    from ultralight3d.checkpoint import ModelCard, write_model_card
    from ultralight3d.cli import main

    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    torch.save(create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=2).state_dict(), ckpt)
    card = ModelCard(
        model_name="ultralight_unet3d_t", network_kwargs={}, in_channels=1, out_channels=2, patch_size=[32, 32, 32]
    )
    write_model_card(ckpt, card)
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(40, 36, 33)).astype(np.float32), np.eye(4)), src)
    out = tmp_path / "out"
    argv = ["predict", "-i", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--quiet"]
    from ultralight3d.inference.engines import cpu_has_bf16

    assert main([*argv, "--engine", "openvino", "--precision", "bf16"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    ran = "bf16" if cpu_has_bf16() else "fp32"  # the summary says what ran (a CPU without bf16 runs float32)
    assert (summary["engine"], summary["precision"], summary["cases"][0]["engine"]) == ("openvino", ran, "openvino")
    assert main([*argv, "--precision", "fp16"]) == 2  # argparse refuses an unknown precision


@NEEDS_OV
def test_the_reshaped_graph_is_kept_as_ir_and_compiled_from_there(net, monkeypatch, tmp_path, caplog):
    """The first compile for a window shape saves the reshaped graph as OpenVINO IR in the cache, and every compile,
    the first included (so OpenVINO's own cache holds the compiled form under that file), reads that file, with the
    torch logits; a damaged entry is written again; a cache that cannot be written compiles the graph as it is."""
    monkeypatch.setenv("ULTRALIGHT3D_CACHE", str(tmp_path))
    onnx_path = cached_onnx(net, ROI)
    x = torch.randn(1, 1, *ROI, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(x)

    def engine() -> tuple[OpenVINOModel, list[str]]:  # an engine noting what each compile was given
        model, compiled_from = OpenVINOModel(onnx_path, num_threads=1), []
        real = model.core

        class RecordingCore:
            def compile_model(self, what, *args):
                compiled_from.append(what if isinstance(what, str) else "graph")
                return real.compile_model(what, *args)

        model.core = RecordingCore()
        return model, compiled_from

    for _ in range(2):  # the first writes the entry, the second finds it
        model, compiled_from = engine()
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-4)
        ir = model._static_ir((1, 1, *ROI))
        assert compiled_from == [str(ir)] and ir.with_suffix(".bin").is_file()
        assert ir.parent == tmp_path / "openvino" / "ir"  # one entry, no temporary folder left beside it
        assert sorted(p.name for p in ir.parent.iterdir()) == sorted([ir.name, ir.with_suffix(".bin").name])
    ir.write_text("<net>broken")  # a damaged entry: written again, then compiled from the file
    with caplog.at_level("WARNING", logger="ultralight3d.inference.engines"):
        model, compiled_from = engine()
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-4)
    assert compiled_from == [str(ir), str(ir)] and "<net>broken" not in ir.read_text()
    assert "could not compile the cached" in caplog.text
    monkeypatch.setattr(OpenVINOModel, "_save_ir", lambda self, shape, path: False)  # a read-only cache
    monkeypatch.setattr(OpenVINOModel, "_static_ir", lambda self, shape: tmp_path / "missing" / "graph.xml")
    model, compiled_from = engine()
    torch.testing.assert_close(model(x), want, rtol=0, atol=1e-4)
    assert compiled_from == ["graph"]
