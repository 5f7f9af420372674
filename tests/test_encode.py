"""Encode: every container we offer keeps each frame's time (issue 12, item 1)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamseg.decode import Frame
from streamseg.encode import VideoWriter

MP4_TIME_BASE = Fraction(1, 15360)  # what FFmpeg gives a 15 fps MP4, as in samples/camseq01.mp4


def frames_at(ticks: list[int], time_base: Fraction = MP4_TIME_BASE) -> list[Frame]:
    """Frames at `ticks * time_base` with changing content, so the encoder codes P- and B-frames."""
    ys, xs = np.mgrid[0:48, 0:64]
    return [Frame(i, np.stack([(xs * 4 + i * 9) % 256, (ys * 4) % 256, np.full_like(xs, i * 5 % 256)], -1)
                  .astype(np.uint8), tick, time_base) for i, tick in enumerate(ticks)]


def encode(path: Path, frames: list[Frame], rate: Fraction) -> Path:
    writer = VideoWriter(path, rate=rate, audio_from=None)
    for frame in frames:
        writer.write(frame, frame.image)
    return writer.close()


def output_times(path: Path) -> tuple[list[Fraction], Fraction]:
    """Each decoded frame's time as the container stores it, and the stream's time base.

    AVI stores no presentation times: frame n is shown at slot n (its dts). FFmpeg's demuxer
    invents H.264 pts one slot late there, so the slot is the AVI frame's time.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        slot = container.format.name == "avi"
        times = [(frame.dts if slot else frame.pts) * frame.time_base for frame in container.decode(stream)]
        return times, stream.time_base


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".avi"])
def test_every_container_keeps_each_frames_time(tmp_path, suffix):
    # 40 frames: well past x264's lookahead, where the muxer has written its header and
    # (Matroska) replaced the stream's time base, which used to squash later frames 1 ms apart.
    frames = frames_at([i * 1024 for i in range(40)])  # 15 fps in 1/15360
    times, time_base = output_times(encode(tmp_path / f"out{suffix}", frames, Fraction(15)))
    assert len(times) == len(frames)
    for frame, time in zip(frames, times):
        assert abs(time - frame.pts * frame.time_base) <= time_base, (frame.index, float(time), time_base)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_variable_rate_times_pass_through(tmp_path, suffix):
    # A camera's irregular frame times (1/90000, as RTP gives them) survive in containers that store times.
    rng = np.random.default_rng(0)
    ticks = np.cumsum(rng.integers(2000, 9000, size=30)).tolist()
    frames = frames_at(ticks, Fraction(1, 90000))
    times, time_base = output_times(encode(tmp_path / f"vfr{suffix}", frames, Fraction(20)))
    assert len(times) == len(frames)
    for frame, time in zip(frames, times):
        assert abs(time - frame.pts * frame.time_base) <= time_base, (frame.index, float(time), time_base)


def test_avi_header_has_the_source_rate(tmp_path):
    # AVI times are slots of 1/fps: a finer time base would write a header of hundreds of fps
    # and fill the gaps with empty frames.
    path = encode(tmp_path / "out.avi", frames_at([i * 1024 for i in range(20)]), Fraction(15))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 15
        assert stream.frames == 20
