"""Postprocess: model-resolution label map → class indices at the frame's size.

Why argmax happens at model resolution and the labels are then resized with
nearest neighbour: every model in the zoo already upsamples its logits
bilinearly to its input size before it returns them (the fix for blocky,
stride-16 masks). Taking the argmax there, on the device, means only an
`(h, w) uint8` map crosses to the host instead of `C` float planes. Upsampling
the logits again to the frame size would cost `C`x the memory and time for a
boundary that moves by less than one model-input pixel. Labels are
categories, so they are resized with nearest neighbour, never interpolated.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .preprocess import Geometry, plan_geometry


class Postprocessor:
    """`(h, w) uint8` labels in model-input coordinates → `(H, W) uint8` labels for the frame."""

    def __init__(self, input_size: tuple[int, int], aspect: str = "pad") -> None:
        self.input_size = tuple(input_size)
        self.aspect = aspect
        self._geometry: Geometry | None = None

    def geometry(self, frame_size: tuple[int, int]) -> Geometry:
        if self._geometry is None or self._geometry.frame_size != frame_size:
            self._geometry = plan_geometry(frame_size, self.input_size, self.aspect)
        return self._geometry

    def crop(self, small_labels: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """The part of the model's label map that shows the frame (padding removed)."""
        g = self.geometry(frame_size)
        return small_labels[g.top:g.top + g.height, g.left:g.left + g.width]

    def __call__(self, small_labels: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        content = self.crop(small_labels, frame_size)
        height, width = frame_size
        if content.shape == (height, width):
            return np.ascontiguousarray(content)
        return cv2.resize(content, (width, height), interpolation=cv2.INTER_NEAREST)


def save_mask(directory: Path, index: int, labels: np.ndarray) -> Path:
    """Write `(H, W) uint8` class indices as a single-channel PNG named by frame index."""
    path = directory / f"{index:06d}.png"
    if not cv2.imwrite(str(path), labels):
        raise OSError(f"could not write mask {path}")
    return path
