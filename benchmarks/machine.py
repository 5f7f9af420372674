"""What every benchmark prints first: the CPU it ran on (model, core count, the
vector/matrix flags that decide inference and training speed) — CPUs differ
between machines, so a number without them means little."""
from __future__ import annotations

import os
import subprocess

SPEED_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16",
               "amx_int8", "amx_tile", "neon")


def lscpu() -> tuple[str, str]:
    """(model name, all flags) as lscpu prints them."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU", ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return fields.get("Model name", "?").strip(), fields.get("Flags", "").strip()


def cpu_line() -> str:
    """One line: model, CPUs usable here, and the speed-relevant flags present."""
    model, flags = lscpu()
    present = [flag for flag in SPEED_FLAGS if flag in flags.split()]
    return (f"CPU: {model}; {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable here; "
            f"flags {' '.join(present) or '(none of avx/avx512/amx)'}")
