"""Overlay: the burned-in stats line and the legend (issue 12, items 2, 4 and 10)."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from streamseg.checkpoint import ModelInfo
from streamseg.overlay import FONT, TEXT_PAD, TEXT_SCALE, OverlayConfig, Renderer, draw_text
from streamseg.pipeline import segment_frames
from streamseg.source import FileSource
from streamseg.stats import RunStats

LINE = "12.3 fps end-to-end | latency 850 ms"


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels that differ, bottom/right exclusive."""
    ys, xs = np.nonzero((before != after).any(axis=-1))
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def test_info_line_draws_nothing_beyond_its_own_text():
    # A shadow stroked thicker than the text is wider (OpenCV 5 spaces thick glyphs
    # further apart): its glyphs showed past the text's end as a ghost copy of the line.
    image = np.full((360, 480, 3), 128, np.uint8)
    out = image.copy()
    draw_text(out, LINE)
    (width, height), baseline = cv2.getTextSize(LINE, FONT, TEXT_SCALE, 1)
    top, bottom, left, right = changed_box(image, out)
    assert right - left <= width + 2 * TEXT_PAD
    assert bottom - top <= height + baseline + 2 * TEXT_PAD
    assert (out[top:bottom, left:right] > 200).all(axis=-1).sum() > 50  # the text itself is there, bright


def test_no_stats_line_until_something_was_measured():
    stats = RunStats(("a",))
    assert stats.live_text() is None  # frame 0 said "0.0 fps | latency 0 ms"
    info = ModelInfo.for_model("unet")
    image, labels = np.full((48, 64, 3), 90, np.uint8), np.zeros((48, 64), np.uint8)
    renderer = Renderer(info, OverlayConfig(legend=False, alpha=0.0))
    np.testing.assert_array_equal(renderer(image, labels, stats.live_text()), image)
    stats.frame_done(time.perf_counter())
    assert renderer(image, labels, stats.live_text())[:20].std() > 0  # now a line is drawn


@pytest.mark.parametrize("live", [False, True])
def test_latency_is_shown_for_live_sources_only(live):
    # A file is read ahead as fast as the queues allow: its frames' age is queue time, not lag.
    stats = RunStats(("a",))
    stats.live = live
    stats.frame_done(time.perf_counter() - 0.85)
    text = stats.live_text()
    assert "fps" in text
    assert ("latency 850 ms" in text) == live and ("latency" in text) == live


@pytest.mark.parametrize("live", [False, True])
def test_the_pipeline_tells_the_stats_line_whether_the_source_is_live(tiny_model, make_clip, live):
    source = FileSource(str(make_clip(frames=3)), live=live)  # a file read as a stream reads as live
    stats = RunStats()
    try:
        frames = list(segment_frames(source, str(tiny_model), stats=stats))
    finally:
        source.close()
    stats.frame_done(frames[-1].born)
    assert stats.live == live and ("latency" in stats.live_text()) == live


def legend_only(labels: np.ndarray, size: tuple[int, int] = (360, 480)) -> np.ndarray:
    """The legend alone: alpha 0 on a black frame leaves every other pixel black."""
    renderer = Renderer(ModelInfo.for_model("unet"), OverlayConfig(alpha=0.0, info_line=False))
    return renderer(np.zeros((*size, 3), np.uint8), labels)


def swatch_pixels(out: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """Pixels of a swatch of colour `rgb` as pasted (75% legend over the frame)."""
    pasted = cv2.addWeighted(np.zeros((1, 1, 3), np.uint8), 0.25, np.uint8([[rgb]]), 0.75, 0.0)[0, 0]
    return int((out == pasted).all(axis=-1).sum())


def test_legend_is_compact():
    info = ModelInfo.for_model("unet")
    every = np.tile(np.arange(info.num_classes, dtype=np.uint8).repeat(480 // info.num_classes + 1)[:480], (360, 1))
    out = legend_only(every)
    top, bottom, left, right = changed_box(np.zeros_like(out), out)
    assert (bottom - top) * (right - left) <= 0.10 * 360 * 480  # was ~20% of the width by 70% of the height
    assert bottom == 360 - 4 and top >= 360 * 3 // 4  # along the bottom edge, clear of the scene's middle
    few = legend_only(np.where(every > 2, 0, every))
    top, bottom, _, _ = changed_box(np.zeros_like(few), few)
    assert bottom - top <= 20  # three classes: one row of small swatches


def test_legend_lists_only_the_classes_in_the_frame():
    info = ModelInfo.for_model("unet")
    present = [info.classes.index(name) for name in ("Sky", "Road", "Car")]
    labels = np.zeros((360, 480), np.uint8)
    for i, value in enumerate(present):
        labels[:, i * 160:(i + 1) * 160] = value
    out = legend_only(labels)
    for value, rgb in enumerate(info.palette):
        found = swatch_pixels(out, tuple(rgb))
        assert (found >= 25) if value in present else (found == 0), (info.classes[value], found)
