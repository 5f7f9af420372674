"""Thread plan: each core spent once across inference, decode, x264 and OpenCV."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamseg import threads
from streamseg.encode import EncodeConfig, VideoWriter
from streamseg.source import open_source
from streamseg.threads import physical_cores, plan_threads


@pytest.mark.parametrize("cores, inference, helpers", [(1, 1, 1), (2, 2, 1), (4, 3, 1), (8, 6, 2), (16, 13, 3),
                                                        (64, 51, 4)])
def test_plan_reserves_a_fifth_of_the_cores_from_three_up(cores: int, inference: int, helpers: int) -> None:
    plan = plan_threads(cores)
    assert (plan.inference, plan.decode, plan.encode, plan.opencv) == (inference, helpers, helpers, 1)
    assert plan.inference + (cores - plan.inference) == cores and plan.inference >= 1


def test_plan_follows_the_measured_share_and_this_machine() -> None:
    assert plan_threads(10, other_share=0.5).inference == 5
    assert plan_threads(10, other_share=0.0).inference == 10
    assert plan_threads().cores == physical_cores()


def test_decoder_and_encoder_get_their_thread_counts(make_clip, tmp_path) -> None:
    source = open_source(str(make_clip("c.mp4", frames=2)))
    assert source.stream.thread_count == plan_threads().decode
    writer = VideoWriter(tmp_path / "out.mp4", EncodeConfig(threads=1))
    frames = list(source.frames())
    for frame in frames:
        writer.write(frame, frame.image)
    assert writer.stream.codec_context.thread_count == 1  # x264 would start 1.5x the cores
    writer.close()
    source.close()


def test_physical_cores_is_sane() -> None:
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("cpus, siblings, expected", [
    (8, "0,4", 4),        # SMT-2, siblings listed as a pair
    (8, "0-1", 4),        # SMT-2, siblings as a range
    (256, "0-3", 64),     # SMT-4 on a large machine: no cap at 64
    (1, "0,1", 1),        # one allowed logical CPU still gets one thread
    (12, "0", 12),        # no SMT
])
def test_physical_cores_divides_allowed_cpus_by_smt_siblings(monkeypatch: pytest.MonkeyPatch, cpus: int,
                                                             siblings: str, expected: int) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(threads.Path, "read_text", lambda self, *a, **k: siblings + "\n")
    assert physical_cores() == expected


def test_physical_cores_without_topology_counts_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(self: Path, *args: object, **kwargs: object) -> str:
        raise OSError("no sysfs")

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(threads.Path, "read_text", unreadable)
    assert physical_cores() == 6


def test_a_core_limit_caps_every_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(threads, "_threads_per_core", lambda: 1)
    try:
        threads.limit_cores(2.0)  # a fleet worker's Ray share of an 8-core node
        assert physical_cores() == 2 and plan_threads().inference == 2
        threads.limit_cores(0.5)  # a fractional share still gets one thread
        assert plan_threads().inference == 1
        threads.limit_cores(16)   # a limit above the machine changes nothing
        assert physical_cores() == 8
    finally:
        threads.limit_cores(None)
    assert physical_cores() == 8
