"""Spend each core once: thread counts per stage, from the cores this process may use.

The pipeline runs every stage on its own thread at once, and each library
brings its own pool: ONNX Runtime/OpenVINO intra-op threads, FFmpeg's decoder
threads, x264's frame threads (1.5x the cores by default), OpenCV's pool.
Left at their defaults they ask for several times the cores there are, and an
inference op split over N threads waits for its slowest one (issue 13: on 2
cores the inference stage ran at a third of the runtime's own speed).

The split follows the measured single-thread costs (benchmarks/pipeline.py):
the stages around inference — decode, resize + normalise, label resize,
blend, x264 veryfast — take about a fifth of a frame's CPU time with the
shipped models at 480x360, so a fifth of the cores, rounded, is reserved for
them and inference gets the rest. Below 3 cores nothing is reserved: the
other stages' short bursts interleave with inference, whose threads do not
spin while idle. OpenCV runs one thread per call: its calls are small and
already run on their own pipeline threads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OTHER_STAGES_SHARE = 0.2   # decode+preprocess+postprocess+render+encode / all of a frame's single-thread CPU time
_core_limit: int | None = None  # set by `limit_cores`


@dataclass(frozen=True)
class ThreadPlan:
    cores: int
    inference: int   # intra-op threads of the runtime
    decode: int      # FFmpeg decoder threads
    encode: int      # x264/x265 threads
    opencv: int      # cv2.setNumThreads


def _threads_per_core() -> int:
    try:
        siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read_text().strip()
        return max(1, sum(int(last) - int(first) + 1 if last else 1
                          for first, _, last in (part.partition("-") for part in siblings.split(","))))
    except (OSError, ValueError):
        return 1


def physical_cores() -> int:
    """Cores this process may use, counting each physical core once.

    ONNX Runtime's default spins one thread per logical CPU; with SMT that
    oversubscribes the FPU units and is slower for convolutions.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = max(1, usable // _threads_per_core())
    return min(cores, _core_limit) if _core_limit else cores


def limit_cores(cores: float | None) -> None:
    """Plan every later stage for at most `cores` (None or 0: the whole machine again).

    For a process that owns only a share of the machine: a fleet worker is one
    of several on a node, each given its CPUs by Ray, and planning for every
    core in each of them would oversubscribe the node by the worker count."""
    global _core_limit
    _core_limit = max(1, int(cores)) if cores else None


def plan_threads(cores: int | None = None, other_share: float = OTHER_STAGES_SHARE) -> ThreadPlan:
    cores = max(1, cores or physical_cores())
    reserved = round(cores * other_share) if cores >= 3 else 0
    helpers = max(1, min(reserved, 4))  # decode/x264 gain little beyond 4 threads at video sizes we run
    return ThreadPlan(cores=cores, inference=max(1, cores - reserved), decode=helpers, encode=helpers, opencv=1)


def apply_opencv_threads(plan: ThreadPlan) -> None:
    import cv2

    cv2.setNumThreads(plan.opencv)
