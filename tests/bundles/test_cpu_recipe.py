"""The CPU recipe override (``configs/cpu.json`` of the generic bundle): it parses merged after train.json, sets the
measured recipe, and trains 2 iterations through the real runner on a tiny synthetic set."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bundle_helpers_ul3d import BUNDLES_DIR, bundle_cmd, copy_bundle, make_dataset, runner_env
from monai.bundle import ConfigParser

from ultralight3d.checkpoint import read_model_card

NAME = "custom_ultralight_unet3d"


def test_cpu_json_parses_after_train_json_and_sets_the_recipe(tmp_path: Path) -> None:
    root = BUNDLES_DIR / NAME / "configs"
    cpu = json.loads((root / "cpu.json").read_text())
    assert {"variant", "patch_size", "num_samples", "learning_rate", "max_iterations", "device"} <= set(cpu)
    assert all(int(s) % 32 == 0 for s in cpu["patch_size"])
    parser = ConfigParser()
    parser.read_config([str(root / "train.json"), str(root / "cpu.json")])
    parser["bundle_root"] = str(tmp_path)
    assert parser.get_parsed_content("model_name") == f"ultralight_unet3d_{cpu['variant']}"
    assert parser.get_parsed_content("patch_size") == cpu["patch_size"]
    assert parser.get_parsed_content("validate#inferer#roi_size") == cpu["patch_size"]
    assert parser.get_parsed_content("optimizer#lr") == cpu["learning_rate"]
    assert str(parser.get_parsed_content("device")) == "cpu"


def test_cpu_json_trains_two_iterations_through_the_runner(tmp_path: Path) -> None:
    bundle = copy_bundle(NAME, tmp_path)
    data = make_dataset(tmp_path / "data", num_classes=3, channels=1, n_cases=2, n_folds=2)
    configs = [str(bundle / "configs/train.json"), str(bundle / "configs/cpu.json")]
    cmd = bundle_cmd(configs, "--dataset_dir", str(data), "--patch_size", "[32,32,32]", "--max_iterations", "2",
                     "--val_interval", "2", "--checkpoint_interval", "2", "--num_workers", "0", "--cache_rate", "0",
                     "--sw_batch_size", "1", "--run_name", "cpu")  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=runner_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = bundle / "runs" / "cpu"
    assert (run / "FINISHED").read_text().strip() == "iteration=2"
    card = read_model_card(bundle / "models" / "model.pt")
    cpu = json.loads((bundle / "configs/cpu.json").read_text())
    assert card is not None and card.model_name == f"ultralight_unet3d_{cpu['variant']}" and card.iteration == 2
