"""The profile tool: counts beside the paper, table contents, report files and the CLI."""

from __future__ import annotations

import json

import pytest

from ultralight3d.cli import main
from ultralight3d.profile import format_table, profile_models, write_report


def test_profile_counts_and_report(tmp_path) -> None:
    rows = profile_models(["ultralight_unet3d_t"], peers=[], size=32, latency=False, progress=False)
    assert [(r.model, r.setting) for r in rows] == [
        ("ultralight_unet3d_t", "default"),
        ("ultralight_unet3d_t", "paper"),
    ]
    default, paper = rows
    assert paper.params_m == pytest.approx(0.061016, abs=1e-6)  # Table-10 settings: 61,016 parameters
    assert abs(paper.params_diff_pct) < 2 and default.params_diff_pct > paper.params_diff_pct
    # the 1->3 input repeat only changes the stem: FLOPs grow, and at 32³ they are (32/96)³ of the 96³ numbers
    assert paper.gflops > default.gflops > 0
    table = format_table(rows, 32)
    assert "| ultralight_unet3d_t | paper | 0.0610 | 0.061 | +0.0% |" in table
    out = write_report(rows, tmp_path / "profile.md", 32)
    assert "torch threads" in out.read_text() and "| ultralight_unet3d_t |" in out.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["rows"][1]["params_m"] == pytest.approx(0.061016, abs=1e-6)


def test_profile_latency_and_cli(tmp_path, capsys) -> None:
    out = tmp_path / "p.md"
    code = main(
        [
            "profile",
            "--models",
            "ultralight_unet3d_t",
            "--peers",
            "",
            "--size",
            "32",
            "--repeats",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| ultralight_unet3d_t | default"))
    latency = float(row.split("|")[9])
    assert latency > 0
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_profile_cli_options(tmp_path, capsys) -> None:
    """--no-latency skips timing; --plain times the plain modules (--threads, -o as given)."""
    out = tmp_path / "counts.md"
    assert (
        main(
            [
                "profile",
                "--models",
                "ultralight_unet3d_t",
                "--peers",
                "",
                "--size",
                "32",
                "--no-latency",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| ultralight_unet3d_t | def"))
    assert row.split("|")[9].strip() == "–" and out.is_file()
    assert (
        main(
            [
                "profile",
                "--models",
                "ultralight_unet3d_t",
                "--peers",
                "",
                "--size",
                "32",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--plain",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| ultralight_unet3d_t | default"))
    assert float(row.split("|")[9]) > 0 and row.rstrip(" |").endswith("plain") and "1 threads" in printed
    assert main(["profile", "--models", "nothing*", "--peers", ""]) == 2
    assert "matches no registered model" in capsys.readouterr().err


def test_egeunet_paper_row_is_counted_on_the_papers_2d_input():
    """The paper row of EGE-UNet is counted on its own input (3×256², 1 class) and held against the paper; the 3D
    default row is not compared with the 2D paper's numbers."""
    from ultralight3d.profile import profile_models

    rows = {r.setting: r for r in profile_models(["egeunet"], peers=[], latency=False, progress=False)}
    paper, default = rows["paper"], rows["default"]
    assert paper.params_m == pytest.approx(0.053374, abs=1e-6)
    assert paper.gflops == pytest.approx(0.0799, abs=0.001)  # ptflops also counts norms, GELU and resizing
    assert paper.params_diff_pct is not None and abs(paper.params_diff_pct) < 2
    assert default.gflops is not None and default.gflops > 0.5  # 96³ in 3D
    assert default.paper_params_m is None and default.gflops_diff_pct is None


def test_cpu_name_names_the_vector_extensions(monkeypatch) -> None:
    """Benchmark tables name the extensions (a VM reports one model name with and without AVX-512)."""
    from ultralight3d import profile

    def fake(flags: str):
        text = f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\nprocessor\t: 1\nmodel name\t: other\n"
        return lambda _path: type("P", (), {"read_text": lambda self: text})()

    monkeypatch.setattr(profile, "Path", fake("fpu sse avx avx2 fma"))
    assert profile.cpu_name() == "AMD EPYC (AVX2)"
    monkeypatch.setattr(profile, "Path", fake("avx2 avx512f avx512_vnni avx512_bf16 fma"))
    assert profile.cpu_name() == "AMD EPYC (AVX2, AVX-512, AVX512_VNNI, AVX512_BF16)"
    monkeypatch.setattr(profile, "Path", fake("fpu sse"))
    assert profile.cpu_name() == "AMD EPYC"
