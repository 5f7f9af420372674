"""Overlay: the burned-in stats line (issue 12, item 2)."""
from __future__ import annotations

import time

import cv2
import numpy as np

from streamseg.checkpoint import ModelInfo
from streamseg.overlay import FONT, TEXT_PAD, TEXT_SCALE, OverlayConfig, Renderer, draw_text
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
