"""What this CPU is and can do, read once from /proc/cpuinfo: model name and feature flags.

One home for these machine facts: the OpenVINO precision, the `--backend auto`
cache key, training's bf16 autocast and the ablation report all ask here.
Numpy-free and torch-free, so any stage can import it.
"""
from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 arithmetic


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # macOS, Windows: no /proc
        return ""


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AMX or AVX512_BF16), where oneDNN's bf16 kernels run."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in BF16_FLAGS)
