"""Issue 15: start-up stays cheap. ``import ultralight3d``, building the whole CLI parser and ``--help`` of every
subcommand import none of the heavy libraries; the lazy exports of every package are the real objects; the static
facts the CLI states instead of importing them agree with their sources.

The import checks run in fresh interpreters (this test process has torch imported by ``conftest.py``). Times are not
asserted here: they go to the issue's report and ``benchmarks/predict_cpu.py``.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ultralight3d
from ultralight3d.cli import VARIANTS, build_parser, iter_parsers

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "monai", "SimpleITK", "itk", "nibabel", "pydicom", "highdicom", "onnxruntime", "matplotlib")

# In a fresh interpreter: the heavy modules loaded after each step, as one JSON object.
_PROBE = r"""
import contextlib, io, json, sys
HEAVY = sys.argv[1].split(",")
def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)
out = {}
import ultralight3d
out["import ultralight3d"] = heavy()
from ultralight3d.cli import build_parser, iter_parsers, main
commands = [c for c, _ in iter_parsers(build_parser())]
out["build_parser"] = heavy()
for command in commands:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*command.split(), "--help"])
    assert code == 0, (command, code)
    out[f"{command} --help".strip()] = heavy()
print(json.dumps(out))
"""


def _fresh(code: str | list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` (or ``python *code``) in a fresh interpreter; it must succeed."""
    argv = [sys.executable, *(["-c", code] if isinstance(code, str) else code)]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_import_parser_and_every_help_import_nothing_heavy():
    steps = json.loads(_fresh(["-c", _PROBE, ",".join(HEAVY)]).stdout.strip().splitlines()[-1])
    commands = {c for c, _ in iter_parsers(build_parser())}
    assert {"predict", "evaluate", "export", "profile", "demo", "prepare folder"} <= commands
    assert set(steps) == {"import ultralight3d", "build_parser"} | {f"{c} --help".strip() for c in commands}
    assert {step: mods for step, mods in steps.items() if mods} == {}


@pytest.mark.parametrize("argv", [["-m", "ultralight3d", "predict", "--help"], ["-m", "ultralight3d.cli", "--help"]])
def test_module_entry_points_start_without_heavy_imports(argv):
    """``python -m ultralight3d`` (and the older ``-m ultralight3d.cli``): the real entry points, as ``-X importtime``
    lists every module they import."""
    out = _fresh(["-X", "importtime", *argv])
    assert "usage: ultralight3d" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "ultralight3d.cli" in imported  # the probe sees the CLI's own imports...
    assert sorted(imported & set(HEAVY)) == []  # ...and none of the heavy ones


def test_console_script_runs():
    script = Path(sys.executable).with_name("ultralight3d")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"ultralight3d {ultralight3d.__version__}"


_CONSOLE_PROBE = r"""
import gc, json, sys
from ultralight3d.cli import console, main
sys.argv = ["ultralight3d", "--version"]
before = gc.get_freeze_count()
assert main(["--version"]) == 0
after_main = gc.get_freeze_count()
assert console() == 0
print(json.dumps({"before": before, "after_main": after_main, "after_console": gc.get_freeze_count()}))
"""


def test_the_console_entry_skips_the_exit_collection_and_main_does_not():
    """The console script (and ``python -m ultralight3d``) freezes the objects alive at its end, so the interpreter's
    exit does not walk them for cycles; ``main()`` called by a process that goes on leaves its GC alone."""
    out = subprocess.run([sys.executable, "-c", _CONSOLE_PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] == 0 and got["after_main"] == 0
    assert got["after_console"] > 1000
    assert 'ultralight3d = "ultralight3d.cli:console"' in (REPO / "pyproject.toml").read_text()
    assert "console()" in (REPO / "ultralight3d" / "__main__.py").read_text()


def _packages() -> list[str]:
    """ultralight3d and every subpackage (the protocol data folder aside)."""
    found = pkgutil.walk_packages(ultralight3d.__path__, "ultralight3d.")
    return ["ultralight3d"] + [i.name for i in found if i.ispkg and i.name != "ultralight3d._protocols"]


def _lazy_packages() -> list[str]:
    """Every package (and CLI module) whose public names are lazy exports (a table ``_EXPORTS``)."""
    return [p for p in _packages() if "_EXPORTS" in vars(importlib.import_module(p))] + ["ultralight3d.cli.evaluate"]


def _type_checking_imports(module_file: Path) -> dict[str, list[str]]:
    """``{".submodule": [names]}`` of the ``if TYPE_CHECKING:`` block of a module."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                found.setdefault("." * imp.level + (imp.module or ""), []).extend(a.name for a in imp.names)
    return found


def test_lazy_packages_are_found():
    assert {
        "ultralight3d",
        "ultralight3d.inference",
        "ultralight3d.bundle",
        "ultralight3d.io",
        "ultralight3d.evaluation",
        "ultralight3d.transforms",
        "ultralight3d.data",
    } <= set(_lazy_packages())


@pytest.mark.parametrize("package", _lazy_packages())
def test_lazy_exports_are_the_real_objects(package):
    mod = importlib.import_module(package)
    table = mod._EXPORTS
    assert set(mod.__all__) >= {n for names in table.values() for n in names}
    assert set(dir(mod)) >= set(mod.__all__)
    for source, names in table.items():
        real = importlib.import_module(source, package if source.startswith(".") else None)
        for name in names:
            assert getattr(mod, name) is getattr(real, name), (package, name)
    if Path(mod.__file__).name == "__init__.py":  # the TYPE_CHECKING block (types for mypy) lists the same names
        typed = _type_checking_imports(Path(mod.__file__))
        assert {k: sorted(v) for k, v in typed.items()} == {k: sorted(v) for k, v in table.items()}


@pytest.mark.parametrize("package", _packages())
def test_every_public_name_resolves(package):
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    assert names, f"{package} has no __all__"
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == []
    assert len(set(names)) == len(names)


def test_unknown_attribute_and_submodule_access():
    import ultralight3d.inference as inference

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = inference.no_such_name
    assert inference.records is importlib.import_module("ultralight3d.inference.records")  # submodule by attribute
    assert ultralight3d.bundle is importlib.import_module("ultralight3d.bundle")
    from ultralight3d import create_model
    from ultralight3d.registry import create_model as real

    assert create_model is real


def test_registry_fills_itself_without_the_package_import():
    """``ultralight3d.registry`` alone (no ``import ultralight3d.networks``) lists every family."""
    code = "from ultralight3d.registry import list_models; print(','.join(list_models('ultralight_unet3d_*')))"
    names = _fresh(code).stdout.strip().split(",")
    assert names == [f"ultralight_unet3d_{v}" for v in VARIANTS]


def test_static_cli_facts_match_their_sources():
    from ultralight3d.cli import evaluate as cli_evaluate
    from ultralight3d.evaluation import DEFAULT_TOLERANCE_MM, OUTPUT_FILES
    from ultralight3d.registry import list_models

    assert VARIANTS == tuple(sorted(n.removeprefix("ultralight_unet3d_") for n in list_models("ultralight_unet3d_*")))
    assert cli_evaluate.HELP_TOLERANCE_MM == DEFAULT_TOLERANCE_MM
    assert cli_evaluate.HELP_OUTPUT_FILES == tuple(OUTPUT_FILES.values())
    assert cli_evaluate.pair_files is importlib.import_module("ultralight3d.evaluation").pair_files


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps", "xpu:0"])
def test_devices_accepted_without_torch_are_torch_devices(device):
    import torch

    from ultralight3d.cli.predict import _device

    assert _device(device) == device
    torch.device(device)  # what --device lets through, torch understands


_QUICK_EXIT_PROBE = r"""
import atexit, sys
import numpy as np, nibabel as nib, torch
from ultralight3d import create_model
from ultralight3d.checkpoint import ModelCard, write_model_card
from ultralight3d.cli import console
tmp = sys.argv[1]
torch.manual_seed(0)
net = create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=2)
torch.save(net.state_dict(), tmp + "/m.pt")
write_model_card(tmp + "/m.pt", ModelCard(model_name="ultralight_unet3d_t", network_kwargs={}, in_channels=1,
                                          out_channels=2, patch_size=[32, 32, 32]))
nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(40, 36, 33)).astype(np.float32), np.eye(4)),
         tmp + "/scan.nii.gz")
atexit.register(lambda: print("atexit handler ran", flush=True))
sys.argv = ["ultralight3d", "predict", "-i", tmp + "/scan.nii.gz", "-o", tmp + "/out", "--checkpoint", tmp + "/m.pt",
            "--quiet", *sys.argv[2:]]
code = console()
print("console returned", code)  # only without the quick exit
sys.exit(code)
"""


@pytest.mark.parametrize(
    "extra, code, quick",
    [([], 0, True), (["--roi-size", "30", "30", "30"], 1, True), (["--overlap", "1.5"], 2, False)],
)
def test_predict_from_the_console_ends_without_tear_down_and_keeps_its_exit_code(tmp_path, extra, code, quick):
    """After a predict run the console entry ends the process with its exit code right after the ``atexit``
    handlers (no module tear-down: ``console()`` does not return), a failed case's 1 included; the outputs and the
    last line are there. A bad argument (exit 2) stops before predict asks for it and returns as usual."""
    out = subprocess.run(
        [sys.executable, "-c", _QUICK_EXIT_PROBE, str(tmp_path), *extra], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == code, out.stderr[-2000:]
    assert "atexit handler ran" in out.stdout
    assert ("console returned" not in out.stdout) == quick  # os._exit: console() never came back
    if code == 0:
        assert "1/1 case(s) segmented" in out.stdout
        assert (tmp_path / "out" / "scan_seg.nii.gz").is_file() and (tmp_path / "out" / "summary.json").is_file()
    elif code == 1:
        assert "0/1 case(s) segmented" in out.stdout and "FAILED scan" in out.stderr
    else:
        assert f"console returned {code}" in out.stdout
