"""A non-editable install works on its own: a wheel built from a copy of the sources, installed into a fresh venv,
finds the protocols without ``ULTRALIGHT3D_TRANSFORMS_DIR`` and runs ``prepare folder``, ``monai.bundle run
training`` with a bundle from the repository, and ``predict`` with that bundle.

The fresh venv borrows the third-party packages of the running environment through a ``.pth`` path line (so no
download is needed); the running environment's editable ``ultralight3d`` finder is not processed through such a
line, and every subprocess runs outside the repository, so only the installed wheel can be imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for name in ("ultralight3d", "transforms"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k != "ULTRALIGHT3D_TRANSFORMS_DIR"}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", "PIP_NO_INDEX": "1"})
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
          str(src)], cwd=root, env=env)  # fmt: skip
    wheel = next((root / "dist").glob("ultralight3d-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=env)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env)
                   .stdout.strip())  # fmt: skip
    (purelib / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], root, env)
    return {"root": root, "py": py, "bin": venv / "bin", "env": env, "wheel": wheel}


def test_wheel_carries_the_protocol_folder_once(installed: dict) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    shipped = sorted(
        n.split("/")[-1] for n in names if n.startswith("ultralight3d/_protocols/") and n.endswith(".json")
    )
    assert shipped == sorted(p.name for p in (REPO / "transforms").glob("*.json"))
    assert not any(n.startswith("transforms/") for n in names)  # no top-level package named "transforms"


def test_installed_package_finds_protocols_without_env(installed: dict) -> None:
    code = ("import json, ultralight3d; from ultralight3d.transforms import list_protocols, protocol_dir; "
            "print(json.dumps([ultralight3d.__file__, str(protocol_dir()), list_protocols()]))")  # fmt: skip
    out = _run([str(installed["py"]), "-c", code], installed["root"], installed["env"])
    module, folder, protocols = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(installed["root"]) in module, "the editable checkout was imported instead of the wheel"
    assert folder.endswith(os.path.join("ultralight3d", "_protocols"))
    assert {"generic", "feta", "prostate", "synapse"} <= set(protocols)


def test_installed_prepare_train_predict(installed: dict) -> None:
    root, env, bindir = installed["root"], installed["env"], installed["bin"]
    data = root / "data"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        lab = np.zeros((32, 32, 32), np.uint8)
        lab[8 + i : 20 + i, 8:22, 10:24] = 1
        img = (100 + 80 * lab + rng.normal(0, 5, lab.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.diag([1.5, 1.5, 2.0, 1.0])), str(data / f"imagesTr/case{i}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.diag([1.5, 1.5, 2.0, 1.0])), str(data / f"labelsTr/case{i}.nii.gz"))
    _run([str(bindir / "ultralight3d"), "prepare", "folder", "--root", str(data), "--labels", "1=organ",
          "--folds", "3", "--quiet"], root, env)  # fmt: skip
    assert (data / "datalist.json").is_file()

    bundle = root / "bundle"
    shutil.copytree(REPO / "bundles" / "custom_ultralight_unet3d", bundle,
                    ignore=shutil.ignore_patterns("runs", "eval", "*.pt"))  # fmt: skip
    _run([str(installed["py"]), "-m", "monai.bundle", "run", "training",
          "--config_file", str(bundle / "configs" / "train.json"), "--dataset_dir", str(data),
          "--variant", "t", "--patch_size", "[32,32,32]", "--max_iterations", "2", "--val_interval", "2",
          "--checkpoint_interval", "2", "--num_workers", "0", "--cache_rate", "0", "--sw_batch_size", "1"],
         root, env)  # fmt: skip
    assert (bundle / "models" / "model.pt").is_file()

    out = root / "pred"
    image = data / "imagesTr" / "case0_0000.nii.gz"
    log = _run([str(bindir / "ultralight3d"), "predict", "-i", str(image), "-o", str(out), "--bundle", str(bundle),
                "--quiet"], root, env)  # fmt: skip
    assert (out / "case0_0000_seg.nii.gz").is_file(), log.stdout[-2000:] + log.stderr[-2000:]
    seg = nib.load(str(out / "case0_0000_seg.nii.gz"))
    ref = nib.load(str(data / "imagesTr" / "case0_0000.nii.gz"))
    assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine)
