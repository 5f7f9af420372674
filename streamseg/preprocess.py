"""Preprocess: frame → the model's input size and normalisation.

Aspect handling is explicit (`--aspect`):
- `pad` (default): scale so the whole frame fits the model input keeping its
  aspect ratio, and fill the rest with the mean colour (zero after
  normalisation); postprocess crops the padding off again.
- `stretch`: resize to the input size exactly; shapes are distorted when the
  aspect ratios differ, but no input pixel is spent on padding.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from .modelinfo import ModelInfo

log = logging.getLogger("streamseg")
ASPECTS = ("pad", "stretch")


@dataclass(frozen=True)
class PreprocessConfig:
    aspect: str = "pad"  # keeps objects' shapes as the model saw them in training


@dataclass(frozen=True)
class Geometry:
    """Where a frame lands inside the model input: rows/cols `[top:top+height, left:left+width]`."""
    frame_size: tuple[int, int]   # (H, W) of the frame
    input_size: tuple[int, int]   # (h, w) the model runs at
    top: int
    left: int
    height: int
    width: int

    @property
    def upscaled(self) -> bool:
        return self.height > self.frame_size[0] or self.width > self.frame_size[1]


def plan_geometry(frame_size: tuple[int, int], input_size: tuple[int, int], aspect: str = "pad") -> Geometry:
    """How to place an `(H, W)` frame into an `(h, w)` input for the given aspect mode."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    (frame_h, frame_w), (in_h, in_w) = frame_size, input_size
    if aspect == "stretch":
        return Geometry(frame_size, input_size, 0, 0, in_h, in_w)
    scale = min(in_h / frame_h, in_w / frame_w)
    height, width = max(1, round(frame_h * scale)), max(1, round(frame_w * scale))
    return Geometry(frame_size, input_size, (in_h - height) // 2, (in_w - width) // 2, height, width)


class Preprocessor:
    """`(H, W, 3) uint8` RGB frame → `(3, h, w) float32` normalised model input."""

    def __init__(self, info: ModelInfo, config: PreprocessConfig = PreprocessConfig()) -> None:
        self.input_size = tuple(info.input_size)
        self.config = config
        # (x / 255 - mean) / std folded into one multiply and one subtract per pixel.
        std = np.asarray(info.std, dtype=np.float32)
        self.scale = (1.0 / (255.0 * std)).reshape(1, 1, 3)
        self.offset = (np.asarray(info.mean, dtype=np.float32) / std).reshape(1, 1, 3)
        self._geometry: Geometry | None = None

    def geometry(self, frame_size: tuple[int, int]) -> Geometry:
        if self._geometry is None or self._geometry.frame_size != frame_size:
            self._geometry = plan_geometry(frame_size, self.input_size, self.config.aspect)
            if self._geometry.upscaled:
                log.warning("frames of %dx%d are upscaled to %dx%d for the model; expect softer masks",
                            frame_size[1], frame_size[0], self._geometry.width, self._geometry.height)
        return self._geometry

    def __call__(self, image: np.ndarray) -> np.ndarray:
        g = self.geometry(image.shape[:2])
        if (g.height, g.width) != image.shape[:2]:
            # INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR when enlarging.
            shrink = g.height < image.shape[0]
            image = cv2.resize(image, (g.width, g.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        content = image.astype(np.float32)
        content *= self.scale
        content -= self.offset
        out = np.zeros((3, *self.input_size), dtype=np.float32)  # zero = the mean colour after normalising
        out[:, g.top:g.top + g.height, g.left:g.left + g.width] = content.transpose(2, 0, 1)
        return out
