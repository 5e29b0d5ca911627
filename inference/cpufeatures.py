"""What the CPU computes natively (bf16, int8 dot products), read from /proc/cpuinfo flags, never assumed."""

from __future__ import annotations

from pathlib import Path

#: flags that mean bf16 arithmetic in hardware (AMX tiles, AVX-512 BF16)
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
#: flags that mean int8 dot products in hardware (VNNI in AVX-512 or AVX2 form, AMX int8)
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The first CPU's feature flags (empty when /proc/cpuinfo can't be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX-512 BF16), per /proc/cpuinfo flags."""
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool:
    """True when the CPU has int8 dot-product instructions (VNNI or AMX int8), per /proc/cpuinfo flags."""
    return bool(cpu_flags(cpuinfo) & INT8_FLAGS)


def feature_summary(cpuinfo: str | None = None) -> str:
    """The flags that decide precision, for logs: e.g. 'avx512_bf16 avx512_vnni' or 'none of bf16/VNNI/AMX'."""
    found = sorted(cpu_flags(cpuinfo) & (BF16_FLAGS | INT8_FLAGS))
    return " ".join(found) if found else "no bf16/VNNI/AMX flags"
