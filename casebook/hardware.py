"""What this machine's CPU can do fast, read once from /proc/cpuinfo: the model name and the ISA
extensions that decide int8 and bf16 speed. Benchmarks print them with every table; the CLI uses
them to keep bf16 autocast off CPUs that would emulate it.

    from casebook.hardware import cpu, native_bf16
    cpu()          # ("AMD EPYC ...", ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"])
    native_bf16()  # True with AVX-512 BF16 or AMX-BF16
"""

from __future__ import annotations

import functools
from pathlib import Path

ISA_FLAGS = (
    "avx2",
    "avx_vnni",  # VNNI without AVX-512 (Intel since Alder Lake, AMD since Zen 5)
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 matrix products in hardware


@functools.cache
def cpu(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, tuple[str, ...]]:
    """The CPU model and which of `ISA_FLAGS` it has ("unknown" and none off Linux)."""
    model, flags = "unknown", set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, tuple(f for f in ISA_FLAGS if f in flags)


def cpu_line(cpuinfo: str = "/proc/cpuinfo") -> str:
    """`AMD EPYC (avx2 avx512f avx512_vnni avx512_bf16)`, for a table's caption or a message."""
    model, flags = cpu(cpuinfo)
    return f"{model} ({' '.join(flags) or 'no AVX2'})"


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU multiplies bf16 matrices in hardware (avx512_bf16 or amx_bf16). Without it
    oneDNN emulates bf16, many times slower than float32 (bench/README.md, speech_teacher_speed)."""
    return any(flag in cpu(cpuinfo)[1] for flag in BF16_FLAGS)


INT8_TIERS = {  # int8 matrix-product instructions, fastest first
    "amx": ("amx_int8",),  # tile instructions: a block of a matrix product at once
    "vnni": ("avx512_vnni", "avx_vnni"),  # 8-bit dot products accumulated in 32 bits
    "avx2": ("avx2",),  # 8-bit multiply-adds into 16 bits (saturating), then 32
}


def int8_tier(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The fastest int8 instructions the CPU has: "amx", "vnni", "avx2" or "none". The int8 speed
    targets of the speech student hold on "vnni" and "amx"; on "avx2" the benchmarks report the
    Amdahl bound instead (bench/README.md)."""
    flags = cpu(cpuinfo)[1]
    for tier, needs in INT8_TIERS.items():
        if any(flag in flags for flag in needs):
            return tier
    return "none"
