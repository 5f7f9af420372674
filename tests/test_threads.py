"""Thread plan: each core spent once across inference, decode, x264 and OpenCV."""
from __future__ import annotations

import pytest

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
