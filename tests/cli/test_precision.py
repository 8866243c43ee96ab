"""bf16 autocast only where the CPU has bf16 hardware: elsewhere the CLI trains in float32."""

from pathlib import Path

import pytest

import casebook.cli
from casebook.cli import CasebookCLI
from casebook.hardware import cpu, native_bf16

REPO = Path(__file__).resolve().parents[2]


def trainer_precision(tmp_path, precision: str) -> str:
    cli = CasebookCLI(
        args=[
            "--config", str(REPO / "configs" / "ppo_trader.yaml"),
            "--config", str(REPO / "configs" / "presets" / "csv.yaml"),
            f"--trainer.precision={precision}", "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )  # fmt: skip
    return type(cli.trainer.precision_plugin).__name__


@pytest.mark.parametrize("has_bf16", [True, False])
def test_bf16_mixed_runs_in_float32_with_one_line_on_a_cpu_that_would_emulate_it(
    has_bf16, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(casebook.cli, "native_bf16", lambda: has_bf16)
    plugin = trainer_precision(tmp_path, "bf16-mixed")
    said = capsys.readouterr().err
    if has_bf16:
        assert plugin == "MixedPrecision" and "bf16" not in said
    else:
        assert plugin == "Precision"  # Lightning's 32-true
        lines = [line for line in said.splitlines() if "no bf16 hardware" in line]
        assert len(lines) == 1 and "using 32-true" in lines[0]
    assert trainer_precision(tmp_path, "32-true") == "Precision"  # float32 asked: left alone
    assert "no bf16 hardware" not in capsys.readouterr().err


def test_bf16_hardware_is_read_from_the_cpus_flags(tmp_path):
    flags = "fpu sse avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile"
    xeon = tmp_path / "xeon"
    xeon.write_text(f"processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: {flags}\n")
    epyc = tmp_path / "epyc"
    epyc.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n")
    assert cpu(str(xeon)) == (
        "Intel Xeon",
        ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"),
    )
    assert native_bf16(str(xeon)) and not native_bf16(str(epyc))
    assert cpu(str(tmp_path / "absent")) == ("unknown", ())
