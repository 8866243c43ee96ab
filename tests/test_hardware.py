"""The ISA report every benchmark table carries: the CPU model and the int8/bf16 extensions,
read from /proc/cpuinfo-style text."""

import pytest

from casebook.hardware import cpu, cpu_line, int8_tier, native_bf16

# two logical CPUs, as /proc/cpuinfo lists them; only the first one's fields are read
CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c {flags}
bugs\t\t: spectre_v1

processor\t: 1
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu vme sse sse2 {flags}
"""

AMD_AVX2 = ("AuthenticAMD", "AMD EPYC 7B12", "avx2 fma bmi2")
AMD_VNNI = (
    "AuthenticAMD",
    "AMD EPYC 9B14",
    "avx2 avx512f avx512dq avx512_bf16 avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg",
)
XEON_AMX = (
    "GenuineIntel",
    "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
    "avx2 avx_vnni avx512f avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8",
)


def write_cpuinfo(tmp_path, vendor: str, model: str, flags: str) -> str:
    path = tmp_path / f"cpuinfo-{model.split()[-1]}"
    path.write_text(CPUINFO.format(vendor=vendor, model=model, flags=flags))
    return str(path)


@pytest.mark.parametrize(
    ("machine", "isa", "tier", "bf16"),
    [
        (AMD_AVX2, ("avx2",), "avx2", False),
        (AMD_VNNI, ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), "vnni", True),
        (
            XEON_AMX,
            ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16")
            + ("amx_tile", "amx_int8", "amx_bf16"),
            "amx",
            True,
        ),
    ],
    ids=["avx2-only", "avx512_vnni", "amx"],
)
def test_isa_report_names_the_model_and_the_int8_and_bf16_flags(tmp_path, machine, isa, tier, bf16):
    path = write_cpuinfo(tmp_path, *machine)
    model, flags = cpu(path)
    assert model == machine[1]
    assert flags == isa  # in ISA_FLAGS order; avx512dq, avx512_vbmi2, avx512_fp16... left out
    assert cpu_line(path) == f"{machine[1]} ({' '.join(isa)})"
    assert int8_tier(path) == tier
    assert native_bf16(path) is bf16


def test_avx512_vnni_is_not_mistaken_for_amx_or_avx_vnni(tmp_path):
    """Flags are whole words: avx512_vnni is neither avx_vnni nor amx_int8."""
    path = write_cpuinfo(tmp_path, "AuthenticAMD", "AMD EPYC", "avx2 avx512f avx512_vnni")
    assert "avx_vnni" not in cpu(path)[1]
    assert int8_tier(path) == "vnni"


def test_a_machine_without_cpuinfo_reports_unknown(tmp_path):
    missing = str(tmp_path / "no-cpuinfo")
    assert cpu(missing) == ("unknown", ())
    assert cpu_line(missing) == "unknown (no AVX2)"
    assert int8_tier(missing) == "none"
    assert not native_bf16(missing)
