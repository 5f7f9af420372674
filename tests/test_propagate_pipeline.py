"""Keyframes through the whole pipeline: order, batching, masks, stats, cameras, the CLI and Ctrl-C."""
from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_propagate import write_square_clip
from test_webcam import FakeCapture

from streamseg.cli import main
from streamseg.pipeline import PipelineConfig, segment_frames
from streamseg.propagate import PropagateConfig
from streamseg.runtime import load_backend
from streamseg.source import open_source
from streamseg.stats import RunStats, format_summary

INTERVALS = [1, 2, 3, 5, 8, "auto"]


@pytest.fixture(scope="module")
def backend(tiny_model):
    return load_backend(str(tiny_model), "torch", "cpu")[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_square_clip(tmp_path_factory.mktemp("clips") / "square.mp4", frames=17))


def segment(clip, backend, interval, motion="auto", batch=1, stats=None, **options):
    config = PipelineConfig(batch=batch, propagate=PropagateConfig(interval, motion), **options)
    return list(segment_frames(clip, backend, config, stats=stats))


@pytest.mark.parametrize("motion", ["mv", "flow"])
@pytest.mark.parametrize("interval", INTERVALS)
def test_every_frame_once_in_order(clip, backend, interval, motion):
    stats = RunStats()
    frames = segment(clip, backend, interval, motion, stats=stats)
    assert [f.index for f in frames] == list(range(17))
    assert all(f.labels is not None and f.labels.shape == (128, 160) for f in frames)
    keys = [f.index for f in frames if f.keyframe]
    if interval == 1:
        assert keys == list(range(17)) and all(f.motion is None for f in frames)  # nothing propagated
        assert stats.keyframes is None
    elif interval != "auto":
        assert keys == list(range(0, 17, interval))
        assert stats.keyframes == len(keys)
    else:
        assert keys[0] == 0 and stats.keyframes == len(keys) < 17


def test_keyframes_batched_give_the_same_labels_as_unbatched(clip, backend):
    one, four = (segment(clip, backend, 3, batch=batch) for batch in (1, 4))
    assert [f.keyframe for f in one] == [f.keyframe for f in four]
    np.testing.assert_array_equal(np.stack([f.labels for f in one]), np.stack([f.labels for f in four]))


def test_keyframes_get_the_networks_labels(clip, backend):
    every = segment(clip, backend, 1)
    for frame in segment(clip, backend, 5, batch=2):
        if frame.keyframe:
            np.testing.assert_array_equal(frame.labels, every[frame.index].labels)


def test_propagated_masks_are_saved_and_stats_name_the_stage(clip, backend, tmp_path):
    stats = RunStats()
    frames = segment(clip, backend, 4, stats=stats, save_masks=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"{i:06d}.png" for i in range(17)]
    for frame in frames:
        saved = np.array(Image.open(tmp_path / f"{frame.index:06d}.png"))   # palettised: values are class ids
        np.testing.assert_array_equal(saved, frame.labels)
    stats.frames = len(frames)
    summary = stats.summary()
    assert summary["keyframes"] == 5 and summary["frames_per_keyframe"] == pytest.approx(17 / 5)
    assert {"motion", "propagate"} <= set(summary["stages"]) and summary["stages"]["propagate"]["mean_ms"] > 0
    lines = format_summary(summary)
    assert "ms propagate" in lines[1] and any(line.startswith("keyframes: 5 of 17") for line in lines)


def test_stop_drains_and_every_frame_has_labels(clip, backend):
    stop = threading.Event()
    frames = []
    config = PipelineConfig(propagate=PropagateConfig(5))
    for frame in segment_frames(clip, backend, config, stop=stop):
        frames.append(frame)
        if len(frames) == 3:
            stop.set()
    assert [f.index for f in frames] == list(range(len(frames))) and all(f.labels is not None for f in frames)


def test_cameras_fall_back_to_flow_with_a_one_line_note(backend, caplog):
    source = open_source("0", capture_factory=lambda index: FakeCapture(index, frames=7))
    config = PipelineConfig(propagate=PropagateConfig(3, "mv"))
    with caplog.at_level(logging.WARNING, logger="streamseg"):
        frames = list(segment_frames(source, backend, config))
    source.close()
    notes = [r.getMessage() for r in caplog.records if "motion vectors" in r.getMessage()]
    assert notes == ["cameras have no motion vectors: propagating labels with optical flow (--motion flow)"]
    assert [f.index for f in frames] == list(range(7)) and frames[0].keyframe


def test_cli_keyframe_interval(clip, tiny_model, tmp_path):
    stats = tmp_path / "stats.json"
    args = ["run", clip, "-m", str(tiny_model), "--backend", "torch", "--no-progress", "-o", str(tmp_path / "o.mp4")]
    result = CliRunner().invoke(main, [*args, "--keyframe-interval", "auto", "--motion", "flow",
                                       "--stats-json", str(stats), "--save-masks", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "frames per keyframe" in result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 17 and 1 <= summary["keyframes"] < 17
    assert len(list((tmp_path / "m").glob("*.png"))) == 17
    bad = CliRunner().invoke(main, [*args, "--overwrite", "-k", "0"])
    assert bad.exit_code == 2 and "from 1 to 30, or auto" in bad.output
