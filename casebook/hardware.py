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

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
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


def cpu_line() -> str:
    """`AMD EPYC (avx2 avx512f avx512_vnni avx512_bf16)`, for a table's caption or a message."""
    model, flags = cpu()
    return f"{model} ({' '.join(flags) or 'no AVX2'})"


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU multiplies bf16 matrices in hardware. Without it oneDNN emulates bf16: one
    training step of the speech teacher took 17x as long under bf16 autocast as in float32
    (AVX2 code path forced with ONEDNN_MAX_CPU_ISA=AVX2 on an AMD EPYC, 2026-12-06)."""
    return any(flag in cpu(cpuinfo)[1] for flag in BF16_FLAGS)
