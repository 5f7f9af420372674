"""Ctrl-C and SIGTERM at random points of `streamseg run` (issue 7).

The run must stop reading, flush the frames in flight and finalise the
container: the output plays and holds exactly the frames processed so far,
which are the first N input frames with their own timestamps, N being what
the run reports; the exit code is 128 + the signal (130 / 143). Delays are
drawn from a seeded generator so a failure can be replayed.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import av
import pytest
from corpus import media, models, places
from corpus.cli import Running

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
DELAYS = random.Random(7)  # seeded: the same delays on every run
CASES = [(name, round(DELAYS.uniform(0.05, 1.5), 2)) for name in SIGNALS for _ in range(3)]
CLIP_FRAMES = 2000  # far more than a run gets through in the longest delay at 64x48


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("interrupt")
    return media.clip(folder, "long.mp4", frames=CLIP_FRAMES), models.tiny_checkpoint(folder)


def start(clip: Path, model: Path, folder: Path, *extra: str) -> Running:
    return Running(["run", str(clip), "--model", str(model), "--backend", "torch", "--device", "cpu",
                    "-o", str(folder / "out.mp4"), "--stats-json", str(folder / "stats.json"), *extra], folder)


def wait_for(running: Running, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in running.stderr_so_far():
        assert running.alive(), running.stderr_so_far()
        assert time.monotonic() < deadline, f"no {text!r} after {timeout} s"
        time.sleep(0.02)


def timestamps(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]


@pytest.mark.parametrize(("name", "delay"), CASES, ids=[f"{n}-after-{d}s" for n, d in CASES])
def test_signal_leaves_a_playable_prefix(name, delay, setup, tmp_path):
    clip, model = setup
    running = start(clip, model, tmp_path, "--save-masks", str(tmp_path / "masks"))
    wait_for(running, "backend:")  # the model is loaded; frames start flowing now
    time.sleep(delay)
    os.kill(running.pid, SIGNALS[name])
    result = running.wait(timeout=120)

    assert result.code == 128 + SIGNALS[name], result.output
    assert "Traceback" not in result.output
    kept = re.search(r"interrupted; kept (\d+) frames to (\S+)", result.stderr)
    assert kept, result.stderr
    frames = int(kept.group(1))
    assert 0 < frames < CLIP_FRAMES
    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == frames
    written = timestamps(tmp_path / "out.mp4")
    assert len(written) == frames
    assert written == pytest.approx(timestamps(clip)[:frames], abs=1e-3)  # the first N frames, in order
    masks = {f"masks/{index:06d}.png" for index in range(frames)}  # in-flight frames drained, none extra
    assert places.listing(tmp_path) == {"out.mp4", "stats.json", "masks"} | masks


def test_sigterm_keeps_audio_up_to_the_last_frame(setup, tmp_path):
    """The audio track is copied only as far as the video got, so sound and picture end together."""
    _, model = setup
    clip = media.clip_with_audio(tmp_path, CLIP_FRAMES)
    running = start(clip, model, tmp_path)
    wait_for(running, "backend:")
    time.sleep(0.8)
    os.kill(running.pid, signal.SIGTERM)
    result = running.wait(timeout=120)
    assert result.code == 143, result.output
    with av.open(str(tmp_path / "out.mp4")) as container:
        video = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    with av.open(str(tmp_path / "out.mp4")) as container:
        audio = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.pts is not None]
    frames = json.loads((tmp_path / "stats.json").read_text())["frames"]
    assert 0 < len(video) == frames < CLIP_FRAMES
    assert audio and audio[0] == pytest.approx(0, abs=0.2)
    assert video[-1] - 0.2 <= audio[-1] <= video[-1] + 1024 / 8000  # ends with the picture, within a packet


@pytest.mark.parametrize("name", SIGNALS)
def test_signal_before_the_first_frame_writes_nothing(name, setup, tmp_path):
    """Interrupted while still connecting (a server that never answers): nothing to keep, so no file,
    a one-line note instead of an error, and still 128 + signal, once the open times out at the latest."""
    _, model = setup
    with places.silent_server() as server:
        running = Running(["run", f"http://127.0.0.1:{server.port}/live.mp4", "--model", str(model), "--backend",
                           "torch", "-o", str(tmp_path / "out.mp4")], tmp_path)
        server.wait_for_client(timeout=120)  # the CLI is past start-up, its handlers in place, connecting
        time.sleep(0.2)
        os.kill(running.pid, SIGNALS[name])
        result = running.wait(timeout=90)
    assert result.code == 128 + SIGNALS[name], result.output
    assert "Traceback" not in result.output
    assert "interrupted" in result.stderr.lower()
    assert places.listing(tmp_path) == set()


def test_second_signal_abandons_the_run_cleanly(setup, tmp_path):
    """Ctrl-C twice: stop at once. Whatever the race between the two signals and the drain, the
    folder ends with either no file at all or a finalised output holding the frames reported."""
    clip, model = setup
    running = start(clip, model, tmp_path)
    wait_for(running, "backend:")
    time.sleep(0.5)
    os.kill(running.pid, signal.SIGINT)
    time.sleep(0.01)
    os.kill(running.pid, signal.SIGINT)
    result = running.wait(timeout=120)
    assert result.code == 130, result.output
    assert "Traceback" not in result.output
    kept = re.search(r"interrupted; kept (\d+) frames", result.stderr)
    if kept:  # the drain won the race
        assert len(timestamps(tmp_path / "out.mp4")) == int(kept.group(1))
    else:
        assert "interrupted twice" in result.stderr
        assert places.listing(tmp_path) == set()
