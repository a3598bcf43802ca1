"""Config-level checks of every bundle: files, generator sync, label tables from the protocols, metadata schema,
network I/O, splits, bundle root, and one in-process training iteration per bundle through MONAI's ConfigWorkflow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from bundle_helpers_ul3d import BUNDLE_NAMES, BUNDLES_DIR, REPO_ROOT, SCHEMA, TINY_UXNET, copy_bundle, make_dataset
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out

import ultralight3d
from ultralight3d.bundle import find_bundle_root, latest_checkpoint, load_split, resolve_run_dir
from ultralight3d.bundle.paths import config_files_from_argv
from ultralight3d.checkpoint import read_model_card
from ultralight3d.errors import UserInputError
from ultralight3d.transforms import get_protocol

EXPECTED = {
    "prostate_ultralight_unet3d", "prostate_uxnet3d", "feta_ultralight_unet3d", "feta_uxnet3d",
    "synapse_ultralight_unet3d", "synapse_uxnet3d", "custom_ultralight_unet3d",
    "chaos_t2_ultralight_unet3d", "fetal_brain_ultralight_unet3d",
}  # fmt: skip
REQUIRED_META = ["schema", "version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
                 "task", "description", "authors", "copyright", "network_data_format"]  # fmt: skip
PROTOCOL = {
    "prostate": "prostate",
    "feta": "feta",
    "synapse": "synapse",
    "custom": "generic",
    "chaos": "chaos_t2",
    "fetal": "fetal_sb_atlas",
}
#: bundles shipping weights trained on the CPU: their train.json defaults are the CPU recipe (variant s)
SHIPPED_VARIANT = {"chaos_t2_ultralight_unet3d": "s", "fetal_brain_ultralight_unet3d": "s"}


def _protocol(name: str) -> str:
    return PROTOCOL[name.split("_")[0]]


def test_all_bundles_exist_and_match_the_generator() -> None:
    assert set(BUNDLE_NAMES) == EXPECTED
    res = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "generate_bundles.py"), "--check"],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, f"bundles out of date with tools/generate_bundles.py:\n{res.stdout}{res.stderr}"
    assert not list(REPO_ROOT.joinpath("ultralight3d").glob("training")), "the bundle glue is ultralight3d.bundle"


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_files_and_label_tables_come_from_the_protocol(name: str) -> None:
    root = BUNDLES_DIR / name
    for rel in ["configs/train.json", "configs/evaluate.json", "configs/inference.json", "configs/metadata.json",
                "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md", "models/labels.csv",
                f"docs/{name}_labels.ctbl", "LICENSE"]:  # fmt: skip
        assert (root / rel).is_file(), f"{name}: missing {rel}"
    assert (root / "configs/distill.json").is_file() == ("ultralight" in name)
    train = json.loads((root / "configs/train.json").read_text())
    meta = json.loads((root / "configs/metadata.json").read_text())
    proto = get_protocol(_protocol(name))
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def == {str(k): v for k, v in proto["labels"].items()}
    assert len(channel_def) == train["num_classes"] == meta["network_data_format"]["outputs"]["pred"]["num_channels"]
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == train["in_channels"]
    assert list(meta["network_data_format"]["inputs"]["image"]["channel_def"].values()) == proto["channels"]
    assert meta["required_packages_version"]["ultralight3d"] == ultralight3d.__version__
    assert meta["version"] in meta["changelog"]
    with open(root / "models/labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == ["LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A"]
    # the protocol's terminology travels into the colour table (Slicer's columns), one code per class
    assert ("Category_CodeValue" in rows[0]) == bool(proto.get("terminology"))
    assert [int(r[0]) for r in rows[1:]] == list(range(1, train["num_classes"]))
    assert [r[1] for r in rows[1:]] == [channel_def[str(i)] for i in range(1, train["num_classes"])]
    assert all(0 <= int(v) <= 255 for r in rows[1:] for v in r[2:6])
    ctbl = (root / f"docs/{name}_labels.ctbl").read_text().splitlines()
    assert ctbl[0].startswith("# Color table file")
    entries = [line.split() for line in ctbl if not line.startswith("#")]
    assert entries[0][:2] == ["0", "background"] and len(entries) == train["num_classes"]
    assert all(len(e) == 6 and "_" not in e[0] for e in entries)
    assert train["training"] == "%run" and train["train"]["trainer"]["max_epochs"]  # TrainProperties id
    assert train["train"]["handlers"][0]["_target_"] == "ultralight3d.bundle.TrainingState"  # before validation
    assert train["train"]["state"] == "@train#handlers#0"
    text = "".join(p.read_text() for p in (root / "configs").glob("*.json"))
    assert "ultralight3d.training" not in text and "find_bundle_root()" in text


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_verify_metadata_and_net_in_out(name: str, tmp_path: Path) -> None:
    root = BUNDLES_DIR / name
    meta_file = str(root / "configs/metadata.json")
    if SCHEMA.is_file():
        verify_metadata(meta_file=meta_file, filepath=str(SCHEMA), create_dir=False)
    else:  # vendored schema absent (e.g. a user's clone): check the required fields
        meta = json.loads(Path(meta_file).read_text())
        assert all(k in meta for k in REQUIRED_META)
    overrides: dict[str, Any] = TINY_UXNET if "uxnet" in name else {}
    verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=str(root / "configs/inference.json"),
                      device="cpu", n=1, **overrides)  # fmt: skip


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_network_def_builds_the_registered_default(name: str) -> None:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / name / "configs/train.json"))
    parser["bundle_root"] = str(BUNDLES_DIR / name)
    cfg = parser.get("network_def")
    expected = "uxnet3d" if "uxnet" in name else f"ultralight_unet3d_{SHIPPED_VARIANT.get(name, 'm')}"
    assert parser.get_parsed_content("model_name") == expected
    assert cfg["out_channels"] == "@network_out_channels" and cfg["_target_"] == "ultralight3d.bundle.create_network"
    assert parser.get_parsed_content("network_out_channels") == parser.get("num_classes")  # no datalist: shipped
    if "uxnet" not in name:  # UX-Net (53 M parameters) is built by test_verify_metadata_and_net_in_out, shrunk
        net = parser.get_parsed_content("network_def")
        assert sum(p.numel() for p in net.parameters()) > (100_000 if name in SHIPPED_VARIANT else 1_000_000)


def test_synapse_defaults_to_the_papers_protocol_with_folds_and_13_organs_as_options(tmp_path: Path) -> None:
    train = json.loads((BUNDLES_DIR / "synapse_ultralight_unet3d/configs/train.json").read_text())
    assert train["split"] == "fixed" and train["organs"] == 8
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / "synapse_ultralight_unet3d/configs/train.json"))
    parser["bundle_root"] = str(tmp_path)
    assert parser.get_parsed_content("network_out_channels") == 9
    assert parser.get_parsed_content("class_names")[1] == "aorta"
    parser["organs"] = 13
    parser.parse(reset=True)
    assert parser.get_parsed_content("network_out_channels") == 14
    names = parser.get_parsed_content("class_names")
    assert len(names) == 13 and names[1] == "spleen" and names[13] == "left adrenal gland"
    pipeline = ultralight3d.transforms.get_pipeline(
        parser.get_parsed_content("protocol"), "validate", **parser.get_parsed_content("transform_params")
    )
    assert not any(type(t).__name__ == "MapLabelValued" for t in pipeline.transforms)  # 13 organs as stored
    parser["organs"] = 7
    parser.parse(reset=True)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("protocol")
    assert "--organs must be 8" in str(info.value.__cause__ or info.value)

    # a datalist like `prepare synapse` writes: 18 training cases with folds, the 12 test cases as "validation"
    data = make_dataset(tmp_path / "syn", num_classes=3, channels=1, n_cases=6, n_folds=2)
    dl = json.loads((data / "datalist.json").read_text())
    dl["validation"] = [dict(dl["training"].pop(0), fold=None) for _ in range(2)]
    (data / "datalist.json").write_text(json.dumps(dl))
    train_cases, val_cases = load_split(data, split="fixed")
    assert [c["case"] for c in val_cases] == ["case0", "case1"] and len(train_cases) == 4
    train_cases, val_cases = load_split(data, fold=1, split="folds")
    assert len(train_cases) + len(val_cases) == 4 and all(c["fold"] == 1 for c in val_cases)
    with pytest.raises(UserInputError, match=r"fold 7 does not exist"):
        load_split(data, fold=7, split="folds")
    with pytest.raises(UserInputError, match=r"--split 'cv' is not one of folds, fixed"):
        load_split(data, split="cv")


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_in_process_training_one_iteration(name: str, tmp_path: Path, synthetic_data) -> None:
    """ConfigWorkflow (the runner's engine) trains 1 iteration with validation; checkpoint, logs and cards appear."""
    bundle = copy_bundle(name, tmp_path)
    train = json.loads((bundle / "configs/train.json").read_text())
    data = synthetic_data(train["num_classes"], train["in_channels"])
    overrides: dict[str, Any] = {
        "bundle_root": str(bundle), "dataset_dir": str(data), "patch_size": [32, 32, 32], "max_iterations": 1,
        "val_interval": 1, "checkpoint_interval": 1, "num_workers": 0, "cache_rate": 0.0, "run_name": "test",
        "sw_batch_size": 1, "split": "folds",
    }  # fmt: skip
    overrides.update(TINY_UXNET if "uxnet" in name else {"variant": "t"})
    if "synapse" in name:  # synthetic labels are already 0..8
        overrides["transform_params"] = {"label_map": {}}
    if "fetal" in name:  # shipped default 1 x 64^3; at 32^3 the 1-voxel bottleneck needs 2 samples for its norm
        overrides["num_samples"] = 2
    if "prostate" in name:  # keep the 1 mm synthetic grid (0.5 mm would make 8x more voxels); tested in transforms/
        overrides["transform_params"] = {"spacing": [1.0, 1.0, 1.0]}
    wf = ConfigWorkflow(config_file=str(bundle / "configs/train.json"), workflow_type="train", logging_file=False,
                        **overrides)  # fmt: skip
    wf.initialize()
    assert not wf.check_properties()  # every required TrainProperties id is present
    assert wf.parser.get_parsed_content("bundle_root") == str(bundle)
    wf.run()
    wf.finalize()
    run = bundle / "runs" / "test"
    assert (run / "FINISHED").read_text().strip() == "iteration=1"
    assert (run / "model.pt").is_file() and (bundle / "models" / "model.pt").is_file()
    assert latest_checkpoint(run) == str(run / "checkpoint_final_iteration=1.pt")
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    rows = list(csv.DictReader(open(run / "training_log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1] and torch.isfinite(torch.tensor(float(rows[0]["loss"])))
    val = list(csv.DictReader(open(run / "validation_log.csv")))
    assert len(val) == 1 and 0.0 <= float(val[0]["mean_dice"]) <= 1.0
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    card = read_model_card(bundle / "models" / "model.pt")
    assert card is not None and card.iteration == 1 and card.protocol == _protocol(name)
    assert card.out_channels == train["num_classes"] and card.in_channels == train["in_channels"]
    assert card.model_name == ("uxnet3d" if "uxnet" in name else "ultralight_unet3d_t")
    assert card.network_kwargs.get("feature_size", [8, 16, 32, 64]) == [8, 16, 32, 64]  # overrides recorded
    net = ultralight3d.create_model(card.model_name, **card.network_kwargs)
    net.load_state_dict(state)  # the card rebuilds exactly the trained network


def test_find_bundle_root_from_the_command_line_or_the_current_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["x", "run", "--config_file", "['bundles/feta_uxnet3d/configs/train.json','b.json']"]
    assert config_files_from_argv(argv) == ["bundles/feta_uxnet3d/configs/train.json", "b.json"]
    assert config_files_from_argv(["x", "--config_file=configs/train.json"]) == ["configs/train.json"]
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", argv)
    assert find_bundle_root() == str(BUNDLES_DIR / "feta_uxnet3d")
    monkeypatch.chdir(BUNDLES_DIR / "feta_uxnet3d")
    monkeypatch.setattr(sys, "argv", ["x", "run", "--config_file", "configs/train.json"])
    assert find_bundle_root() == str(BUNDLES_DIR / "feta_uxnet3d")
    monkeypatch.setattr(sys, "argv", ["x", "run", "--bundle_root", str(BUNDLES_DIR / "prostate_uxnet3d")])
    assert find_bundle_root() == str(BUNDLES_DIR / "prostate_uxnet3d")
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.chdir(BUNDLES_DIR / "feta_uxnet3d" / "configs")
    assert find_bundle_root() == str(BUNDLES_DIR / "feta_uxnet3d")
    import ultralight3d.bundle.paths as paths

    assert "_getframe" not in Path(paths.__file__).read_text()


def test_auto_run_name_resumes_the_unfinished_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = Path(resolve_run_dir(runs, "auto"))
    assert first.parent == runs and first.name.startswith("run_")
    assert Path(resolve_run_dir(runs, "auto")) != first  # no checkpoint yet: a new run
    (first / "checkpoint_iteration=20.pt").write_bytes(b"x")
    (first / "checkpoint_final_iteration=35.pt").write_bytes(b"x")
    (first / ".checkpoint_iteration=40.abc.pt").write_bytes(b"half")  # an interrupted write is not a checkpoint
    assert latest_checkpoint(first) == str(first / "checkpoint_final_iteration=35.pt")
    assert Path(resolve_run_dir(runs, "auto")) == first
    assert Path(resolve_run_dir(runs, "auto", resume=False)) != first
    (first / "FINISHED").write_text("iteration=35\n")
    assert Path(resolve_run_dir(runs, "auto")) != first
    assert Path(resolve_run_dir(runs, "mine")) == runs / "mine"


def test_resume_skips_unreadable_checkpoints_and_takes_the_newest_valid(tmp_path: Path) -> None:
    from ultralight3d.bundle import find_resume_point

    good = {"model": {"w": torch.zeros(2)}, "trainer": {"iteration": 4},
            "training": {"last_validated": 2, "last_loss": 0.5}}  # fmt: skip
    torch.save(good, tmp_path / "checkpoint_iteration=4.pt")
    (tmp_path / "checkpoint_iteration=6.pt").write_bytes(b"")  # the 0-byte file of an old, non-atomic save
    (tmp_path / ".checkpoint_iteration=8.x1y2.pt").write_bytes(b"PK\x03")  # temporary file of a killed write
    rp = find_resume_point(tmp_path, resume=True, val_interval=2)
    assert rp is not None and rp.path.name == "checkpoint_iteration=4.pt" and rp.iteration == 4
    assert rp.revalidate and rp.purge_step == 4 and rp.last_loss == 0.5  # validation of 4 was not complete
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_iteration=4.pt",
        "checkpoint_iteration=6.pt.unreadable",
    ]
    assert find_resume_point(tmp_path, resume=False) is None
