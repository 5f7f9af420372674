"""Overlay: draw labels on frames — blended colours, plain mask or side by side.

Everything is table lookups and whole-image OpenCV calls: colouring is one
palette lookup, blending one `cv2.addWeighted`, the legend (the classes in the
frame) is drawn once per set of classes and pasted. No per-pixel or per-class
Python loops run per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .classes import class_indices, palette_array
from .modelinfo import ModelInfo

VIEWS = ("overlay", "mask", "side-by-side")
FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_SCALE, TEXT_SCALE = 0.35, 0.45
TEXT_PAD = 3  # pixels of dark box around the info line


@dataclass(frozen=True)
class OverlayConfig:
    view: str = "overlay"
    alpha: float = 0.5                      # colour weight: 0 = frame only, 1 = mask only
    legend: bool = True
    classes: tuple[str, ...] | None = None  # draw only these (None: all)
    info_line: bool = True                  # FPS (and live latency) text at the top-left
    colors: tuple[tuple[str, tuple[int, int, int]], ...] = ()  # (class, RGB) overrides, e.g. from --palette


def class_palette(info: ModelInfo, colors: tuple[tuple[str, tuple[int, int, int]], ...]) -> list[tuple[int, int, int]]:
    """The model's palette with the named overrides applied (names match case-insensitively)."""
    override = {name.lower(): tuple(rgb) for name, rgb in colors}
    return [override.get(name.lower(), tuple(rgb)) for name, rgb in zip(info.classes, info.palette, strict=True)]


def class_filter(info: ModelInfo, names: tuple[str, ...] | None) -> np.ndarray:
    """`(256,) bool` lookup: which label values are drawn (`names` as `class_indices` reads them)."""
    drawn = np.zeros(256, dtype=bool)
    if names is None:
        drawn[: info.num_classes] = True
        return drawn
    drawn[class_indices(names, info.classes)] = True
    return drawn


def draw_legend(names: list[str], colors: list[tuple[int, int, int]], width: int,
                scale: float = LEGEND_SCALE) -> np.ndarray:
    """A compact `(h, w, 3) uint8` RGB strip: a small swatch and name per class, in rows of at most `width`."""
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, 1)
    row = text_h + baseline + 4
    rows: list[list[tuple[int, str, tuple[int, int, int]]]] = [[]]
    x = 0
    for name, color in zip(names, colors, strict=True):
        item = row + cv2.getTextSize(name, FONT, scale, 1)[0][0] + 8  # swatch, name, gap
        if rows[-1] and x + item > width:
            rows.append([])
            x = 0
        rows[-1].append((x, name, color))
        x += item
    right = max(left + row + cv2.getTextSize(name, FONT, scale, 1)[0][0] + 4
                for items in rows for left, name, _ in items) if names else 0
    panel = np.full((row * len(rows), right, 3), 32, dtype=np.uint8)
    for i, items in enumerate(rows):
        y = i * row
        for x, name, color in items:
            cv2.rectangle(panel, (x + 3, y + 3), (x + row - 3, y + row - 3), tuple(int(c) for c in color), -1)
            cv2.putText(panel, name, (x + row, y + row - baseline - 1), FONT, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return panel


def draw_text(image: np.ndarray, text: str, scale: float = TEXT_SCALE) -> None:
    """Write one line at the top-left, white on a darkened box so it reads on any scene.

    A box, not an outline: a thicker outline stroke is wider than the text (OpenCV 5
    spaces thick glyphs further apart), so it drew a second, shifted copy of the line.
    """
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    x, y = 2 * TEXT_PAD, 2 * TEXT_PAD + height  # y: the baseline
    box = image[y - height - TEXT_PAD:y + baseline + TEXT_PAD, x - TEXT_PAD:x + width + TEXT_PAD]
    box //= 3
    cv2.putText(image, text, (x, y), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


class Renderer:
    """`(H, W, 3) uint8` frame + `(H, W) uint8` labels → the picture to encode or show."""

    def __init__(self, info: ModelInfo, config: OverlayConfig = OverlayConfig()) -> None:
        if config.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {config.view!r}")
        if not 0.0 <= config.alpha <= 1.0:
            raise ValueError(f"alpha must be within 0..1, got {config.alpha}")
        self.config = config
        self.drawn = class_filter(info, config.classes)
        colors = class_palette(info, config.colors)
        self.palette = palette_array(colors)
        self.palette[~self.drawn] = 0  # undrawn classes (and void) get no colour
        self.names, self.legend_colors = info.classes, colors
        # One strip per (classes present, width): a scene shows few combinations, drawn once each.
        self.legend = lru_cache(maxsize=64)(self._draw_legend)
        self.everything_drawn = bool(self.drawn[: info.num_classes].all())

    def colors(self, labels: np.ndarray) -> np.ndarray:
        return self.palette[labels]

    def blend(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        alpha = self.config.alpha
        blended = cv2.addWeighted(image, 1.0 - alpha, self.colors(labels), alpha, 0.0)
        if self.everything_drawn:
            return blended
        keep = ~self.drawn[labels]  # pixels of hidden classes show the untouched frame
        blended[keep] = image[keep]
        return blended

    def __call__(self, image: np.ndarray, labels: np.ndarray, text: str | None = None) -> np.ndarray:
        view = self.config.view
        if view == "overlay":
            out = self.blend(image, labels)
        elif view == "mask":
            out = self.colors(labels)
        else:
            out = np.hstack([image, self.colors(labels)])
        self.paste_legend(out, labels)
        if text and self.config.info_line:
            draw_text(out, text)
        return out

    def _draw_legend(self, present: tuple[int, ...], width: int) -> np.ndarray:
        return draw_legend([self.names[i] for i in present], [self.legend_colors[i] for i in present], width)

    def paste_legend(self, out: np.ndarray, labels: np.ndarray) -> None:
        """The classes in this frame (of those drawn), in a strip at the bottom-left."""
        if not self.config.legend:
            return
        counts = np.bincount(labels.ravel(), minlength=256)[:len(self.names)]
        present = tuple(np.flatnonzero((counts > 0) & self.drawn[:len(self.names)]).tolist())
        legend = self.legend(present, out.shape[1] - 8)
        h, w = legend.shape[:2]
        if not present or h + 4 > out.shape[0] // 4 or w + 4 > out.shape[1]:
            return  # a frame too small to hold the legend is left clean
        region = out[out.shape[0] - h - 4:out.shape[0] - 4, 4:4 + w]
        region[:] = cv2.addWeighted(region, 0.25, legend, 0.75, 0.0)
