"""Issue 14: every command-line flag is exercised by at least one test, and argument errors are one line.

The first test builds the whole ``ultralight3d`` parser (every subcommand, nested ones included), collects every
option string and looks for it in the other test files, so a new flag without a test fails here.
"""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

import pytest

from ultralight3d import __version__
from ultralight3d.cli import build_parser, iter_parsers, main

TESTS = Path(__file__).resolve().parent
# Flags that no test exercises yet, as (subcommand, flag); a stale entry is reported as a warning. Keep it empty.
KNOWN_UNTESTED: set[tuple[str, str]] = set()


def _options() -> list[tuple[str, str]]:
    found = []
    for command, parser in iter_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue  # argparse's own -h/--help and --version (tested below)
            found += [(command, opt) for opt in action.option_strings]
    return found


def _pattern(option: str) -> re.Pattern[str]:
    if option.startswith("--"):  # the flag as a word of its own: "--tta" is not found in "--ttas"
        return re.compile(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])")
    return re.compile(r"[\"']" + re.escape(option) + r"[\"']")  # short flags: only as a quoted argument, "-o"


def test_every_flag_is_exercised_by_a_test():
    texts = [p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py") if p.resolve() != Path(__file__).resolve()]
    options = _options()
    assert {c for c, _ in options} >= {"predict", "evaluate", "export", "profile", "plot-training"}
    untested = {(c, o) for c, o in options if not any(_pattern(o).search(t) for t in texts)}
    assert untested - KNOWN_UNTESTED == set(), f"flags no test exercises: {sorted(untested - KNOWN_UNTESTED)}"
    stale = KNOWN_UNTESTED - untested
    if stale:
        warnings.warn(f"now tested (or gone): remove {sorted(stale)} from KNOWN_UNTESTED", stacklevel=1)


def test_version_help_and_required_input(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ultralight3d {__version__}"
    assert main([]) == 2 and "COMMAND" in capsys.readouterr().out
    predict = dict(iter_parsers(build_parser()))["predict"]
    usage = predict.format_usage()
    assert "-i INPUT" in usage and "[-i INPUT]" not in usage and "-o OUTPUT" in usage
    assert main(["predict", "-o", "out"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("the following arguments are required: -i/--input (see ultralight3d predict -h)")
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["predict", "-i", "x", "-o", "y", "--sw-batch-size", "0"],
            "argument --sw-batch-size: must be a positive integer, got 0",
        ),
        (
            ["predict", "-i", "x", "-o", "y", "--sw-batch-size", "-2"],
            "argument --sw-batch-size: must be a positive integer, got -2",
        ),
        (["predict", "-i", "x", "-o", "y", "--sw-batch-size", "two"], "must be a positive integer, got 'two'"),
        (["predict", "-i", "x", "-o", "y", "--overlap", "1"], "argument --overlap: must be a number in [0, 1), got 1"),
        (["predict", "-i", "x", "-o", "y", "--roi-size", "96", "0", "96"], "argument --roi-size: must be a positive"),
        (
            ["predict", "-i", "x", "-o", "y", "--variant", "zz"],
            "argument --variant: unknown variant 'zz'; choose one of base, l, m, s, t",
        ),
        (["predict", "-i", "x", "-o", "y", "--device", "gpu7"], "argument --device: unknown device 'gpu7'"),
        (["predict", "-i", "x", "-o", "y", "--threads", "0"], "argument --threads: must be a positive integer, got 0"),
        (
            ["predict", "-i", "x", "-o", "y", "--min-volume-ml", "-0.5"],
            "argument --min-volume-ml: must be a positive number, got -0.5",
        ),
        (["predict", "-i", "x", "-o", "y", "--roi-subset"], "argument --roi-subset: expected at least one argument"),
        (
            ["predict", "-i", "x", "-o", "y", "--continue", "--overwrite"],
            "argument --overwrite: not allowed with argument --continue",
        ),
        (["export", "--bundle", "b", "--size", "0"], "argument --size: must be a positive integer, got 0"),
        (["export", "--bundle", "b", "--atol", "-1"], "argument --atol: must be a positive number, got -1"),
        (["export", "--bundle", "b", "--opset", "0"], "argument --opset: must be a positive integer, got 0"),
        (["evaluate", "-i", "p", "-r", "l", "--tolerance", "0"], "argument --tolerance: must be a positive number"),
        (["profile", "--repeats", "0"], "argument --repeats: must be a positive integer, got 0"),
        (["plot-training", "run", "--width", "0"], "argument --width: must be a positive integer, got 0"),
    ],
)
def test_bad_numbers_and_names_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ultralight3d {argv[0]}: error: ") and message in err, err


def test_predict_combinations_are_checked_before_building(tmp_path, capsys):
    base = ["predict", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "--checkpoint", "m.pt"]
    assert main(base + ["--no-postprocessing", "--largest-component"]) == 2
    assert capsys.readouterr().err == (
        "error: --no-postprocessing cannot be combined with --largest-component or --min-volume-ml; drop one of them\n"
    )
    assert main(base + ["--checkpoint", "m.pt"]) == 2
    assert capsys.readouterr().err == (
        "error: --checkpoint: the same file is given twice; an ensemble needs different checkpoints\n"
    )
    assert main(base + ["--roi-subset", " "]) == 2
    assert capsys.readouterr().err == "error: --roi-subset: empty class name; give class names or label values\n"


def test_predict_needs_a_bundle_or_a_described_checkpoint(tmp_path, capsys):
    assert main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "error: give --bundle DIR, or --checkpoint model.pt whose model card "
        "(model.json beside it) describes the network\n"
    )
    assert (
        main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "--checkpoint", "m.pt", "--set", "a=1"]) == 2
    )
    assert "--set changes ids of a bundle's inference.json; it needs --bundle DIR" in capsys.readouterr().err
