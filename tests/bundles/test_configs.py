"""Config-level checks of every bundle: files, generator sync, metadata schema, network I/O, in-process training."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out

from ultralight3d.training import find_bundle_root, latest_checkpoint, resolve_run_dir
from ultralight3d.training.bundle import _config_files_from_argv

from bundle_helpers_ul3d import BUNDLE_NAMES, BUNDLES_DIR, REPO_ROOT, SCHEMA, TINY_UXNET, copy_bundle

EXPECTED = {
    "prostate_ultralight_unet3d", "prostate_uxnet3d", "feta_ultralight_unet3d", "feta_uxnet3d",
    "synapse_ultralight_unet3d", "synapse_uxnet3d", "custom_ultralight_unet3d",
}  # fmt: skip
REQUIRED_META = ["schema", "version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
                 "task", "description", "authors", "copyright", "network_data_format"]  # fmt: skip


def test_all_bundles_exist_and_match_the_generator() -> None:
    assert set(BUNDLE_NAMES) == EXPECTED
    res = subprocess.run([sys.executable, str(BUNDLES_DIR.parent / "tools" / "generate_bundles.py"), "--check"], capture_output=True,
                         text=True)  # fmt: skip
    assert res.returncode == 0, f"bundles out of date with tools/generate_bundles.py:\n{res.stdout}"


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_files_and_label_tables(name: str) -> None:
    root = BUNDLES_DIR / name
    for rel in ["configs/train.json", "configs/evaluate.json", "configs/inference.json", "configs/metadata.json",
                "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md", "models/labels.csv",
                f"docs/{name}_labels.ctbl", "LICENSE"]:  # fmt: skip
        assert (root / rel).is_file(), f"{name}: missing {rel}"
    train = json.loads((root / "configs/train.json").read_text())
    meta = json.loads((root / "configs/metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert len(channel_def) == train["num_classes"] == meta["network_data_format"]["outputs"]["pred"]["num_channels"]
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == train["in_channels"]
    assert meta["required_packages_version"]["ultralight3d"] == meta["version"] == "0.1.0"
    with open(root / "models/labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, train["num_classes"]))
    assert [r[1] for r in rows[1:]] == [channel_def[str(i)] for i in range(1, train["num_classes"])]
    assert all(0 <= int(v) <= 255 for r in rows[1:] for v in r[2:])
    ctbl = (root / f"docs/{name}_labels.ctbl").read_text().splitlines()
    assert ctbl[0].startswith("# Color table file")
    entries = [line.split() for line in ctbl if not line.startswith("#")]
    assert entries[0][:2] == ["0", "background"] and len(entries) == train["num_classes"]
    assert all(len(e) == 6 and "_" not in e[0] for e in entries)
    assert train["training"] == "%run" and train["train"]["trainer"]["max_epochs"]  # TrainProperties id


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_verify_metadata_and_net_in_out(name: str, tmp_path: Path) -> None:
    root = BUNDLES_DIR / name
    meta_file = str(root / "configs/metadata.json")
    if SCHEMA.is_file():
        verify_metadata(meta_file=meta_file, filepath=str(SCHEMA), create_dir=False)
    else:  # vendored schema absent (e.g. a user's clone): check the required fields
        meta = json.loads(Path(meta_file).read_text())
        assert all(k in meta for k in REQUIRED_META)
    overrides = TINY_UXNET if "uxnet" in name else {}
    verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=str(root / "configs/inference.json"),
                      device="cpu", n=1, **overrides)  # fmt: skip


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_network_def_builds_the_registered_default(name: str) -> None:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / name / "configs/train.json"))
    cfg = parser.get("network_def")
    expected = "uxnet3d" if "uxnet" in name else "ultralight_unet3d_m"
    assert parser.get_parsed_content("model_name") == expected
    if "uxnet" not in name:  # UX-Net (53 M parameters) is built by test_verify_metadata_and_net_in_out, shrunk
        net = parser.get_parsed_content("network_def")
        assert sum(p.numel() for p in net.parameters()) > 1_000_000
        assert cfg["out_channels"] == "@num_classes"


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_in_process_training_one_iteration(name: str, tmp_path: Path, synthetic_data) -> None:
    """ConfigWorkflow (the runner's engine) trains 1 iteration with validation; checkpoints and logs appear."""
    bundle = copy_bundle(name, tmp_path)
    train = json.loads((bundle / "configs/train.json").read_text())
    data = synthetic_data(train["num_classes"], train["in_channels"])
    overrides = {
        "dataset_dir": str(data), "patch_size": [32, 32, 32], "max_iterations": 1, "val_interval": 1,
        "checkpoint_interval": 1, "num_workers": 0, "cache_rate": 0.0, "run_name": "test", "sw_batch_size": 1,
    }  # fmt: skip
    overrides.update(TINY_UXNET if "uxnet" in name else {"variant": "t"})
    if "synapse" in name:  # synthetic labels are already 0..8
        overrides["transform_params"] = {"label_map": {}}
    if "prostate" in name:  # keep the 1 mm synthetic grid (0.5 mm would make 8x more voxels); tested in transforms/
        overrides["transform_params"] = {"spacing": [1.0, 1.0, 1.0]}
    wf = ConfigWorkflow(config_file=str(bundle / "configs/train.json"), workflow_type="train", logging_file=False,
                        **overrides)  # fmt: skip
    wf.initialize()
    assert not wf.check_properties()  # every required TrainProperties id is present
    assert wf.parser.get_parsed_content("bundle_root") == str(bundle.resolve())
    wf.run()
    wf.finalize()
    run = bundle / "runs" / "test"
    assert (run / "FINISHED").read_text().strip() == "iteration=1"
    assert (run / "model.pt").is_file() and (bundle / "models" / "model.pt").is_file()
    assert latest_checkpoint(run) is not None and any(run.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader(open(run / "training_log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1] and torch.isfinite(torch.tensor(float(rows[0]["loss"])))
    val = list(csv.DictReader(open(run / "validation_log.csv")))
    assert len(val) == 1 and 0.0 <= float(val[0]["mean_dice"]) <= 1.0
    state = torch.load(run / "model.pt", map_location="cpu")
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def test_find_bundle_root_from_argv_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["x", "run", "--config_file", "['bundles/feta_uxnet3d/configs/train.json','b.json']"]
    assert _config_files_from_argv(argv) == ["bundles/feta_uxnet3d/configs/train.json", "b.json"]
    assert _config_files_from_argv(["x", "--config_file=configs/train.json"]) == ["configs/train.json"]
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", argv)
    assert find_bundle_root() == str(BUNDLES_DIR / "feta_uxnet3d")
    monkeypatch.chdir(BUNDLES_DIR / "feta_uxnet3d")
    monkeypatch.setattr(sys, "argv", ["x", "run", "--config_file", "configs/train.json"])
    assert find_bundle_root() == str(BUNDLES_DIR / "feta_uxnet3d")
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.chdir(BUNDLES_DIR / "feta_uxnet3d" / "configs")
    assert find_bundle_root() == str(BUNDLES_DIR / "feta_uxnet3d")


def test_auto_run_name_resumes_the_unfinished_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = Path(resolve_run_dir(runs, "auto"))
    assert first.parent == runs and first.name.startswith("run_")
    assert Path(resolve_run_dir(runs, "auto")) != first  # no checkpoint yet: a new run
    (first / "checkpoint_iteration=20.pt").write_bytes(b"x")
    (first / "checkpoint_final_iteration=35.pt").write_bytes(b"x")
    assert latest_checkpoint(first) == str(first / "checkpoint_final_iteration=35.pt")
    assert Path(resolve_run_dir(runs, "auto")) == first
    assert Path(resolve_run_dir(runs, "auto", resume=False)) != first
    (first / "FINISHED").write_text("iteration=35\n")
    assert Path(resolve_run_dir(runs, "auto")) != first
    assert Path(resolve_run_dir(runs, "mine")) == runs / "mine"


def test_missing_datalist_names_the_file_and_the_fix(tmp_path: Path) -> None:
    from ultralight3d.errors import UserInputError
    from ultralight3d.training import load_split

    with pytest.raises(UserInputError, match=r"datalist .*datalist.json not found; run `ultralight3d prepare"):
        load_split(tmp_path)
