"""Overlay: draw labels on frames — blended colours, plain mask or side by side.

Everything is table lookups and whole-image OpenCV calls: colouring is one
palette lookup, blending one `cv2.addWeighted`, the legend is drawn once and
pasted. No per-pixel or per-class Python loops run per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .checkpoint import ModelInfo
from .classes import palette_array

VIEWS = ("overlay", "mask", "side-by-side")
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.45
TEXT_PAD = 3  # pixels of dark box around the info line


@dataclass(frozen=True)
class OverlayConfig:
    view: str = "overlay"
    alpha: float = 0.5                      # colour weight: 0 = frame only, 1 = mask only
    legend: bool = True
    classes: tuple[str, ...] | None = None  # draw only these (None: all)
    info_line: bool = True                  # FPS / latency text at the top-left
    colors: tuple[tuple[str, tuple[int, int, int]], ...] = ()  # (class, RGB) overrides, e.g. from --palette


def class_palette(info: ModelInfo, colors: tuple[tuple[str, tuple[int, int, int]], ...]) -> list[tuple[int, int, int]]:
    """The model's palette with the named overrides applied (names match case-insensitively)."""
    override = {name.lower(): tuple(rgb) for name, rgb in colors}
    return [override.get(name.lower(), tuple(rgb)) for name, rgb in zip(info.classes, info.palette, strict=True)]


def class_filter(info: ModelInfo, names: tuple[str, ...] | None) -> np.ndarray:
    """`(256,) bool` lookup: which label values are drawn. Names match case-insensitively."""
    drawn = np.zeros(256, dtype=bool)
    if names is None:
        drawn[: info.num_classes] = True
        return drawn
    lookup = {name.lower(): i for i, name in enumerate(info.classes)}
    unknown = [name for name in names if name.lower() not in lookup]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}; the model has {', '.join(info.classes)}")
    drawn[[lookup[name.lower()] for name in names]] = True
    return drawn


def draw_legend(names: list[str], colors: list[tuple[int, int, int]], scale: float = 0.4) -> np.ndarray:
    """A small `(h, w, 3) uint8` RGB panel: one colour swatch and name per class."""
    thickness, row = 1, int(22 * scale / 0.4)
    text_w = max((cv2.getTextSize(n, FONT, scale, thickness)[0][0] for n in names), default=0)
    panel = np.full((row * len(names) + 6, text_w + row + 12, 3), 32, dtype=np.uint8)
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        y = 3 + i * row
        cv2.rectangle(panel, (4, y + 3), (4 + row - 6, y + row - 3), tuple(int(c) for c in color), -1)
        cv2.putText(panel, name, (row + 6, y + row - 6), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
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
        shown = [i for i in range(info.num_classes) if self.drawn[i]]
        self.legend = draw_legend([info.classes[i] for i in shown], [colors[i] for i in shown])
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
        self.paste_legend(out)
        if text and self.config.info_line:
            draw_text(out, text)
        return out

    def paste_legend(self, out: np.ndarray) -> None:
        h, w = self.legend.shape[:2]
        if not self.config.legend or h + 4 > out.shape[0] or w + 4 > out.shape[1]:
            return  # a frame too small to hold the legend is left clean
        region = out[4:4 + h, out.shape[1] - w - 4:out.shape[1] - 4]
        region[:] = cv2.addWeighted(region, 0.25, self.legend, 0.75, 0.0)
