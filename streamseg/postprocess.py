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

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .classes import palette_array
from .preprocess import Geometry, plan_geometry


class Postprocessor:
    """`(h, w) uint8` labels in model-input coordinates → `(H, W) uint8` labels for the frame."""

    def __init__(self, input_size: tuple[int, int], aspect: str = "keep", *,
                 fixed: tuple[int, int] | None = None) -> None:
        self.input_size, self.fixed = tuple(input_size), fixed
        self.aspect = aspect
        self._geometry: Geometry | None = None

    def geometry(self, frame_size: tuple[int, int]) -> Geometry:
        if self._geometry is None or self._geometry.frame_size != frame_size:
            self._geometry = plan_geometry(frame_size, self.input_size, self.aspect, self.fixed)
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


def save_mask(directory: Path, index: int, labels: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> Path:
    """Write `(H, W) uint8` class indices as a palettised PNG named by frame index.

    Mode "P", as PASCAL VOC stores its masks: the pixel values stay the class ids
    (PIL's `Image.open` returns them), while image viewers show the class colours
    instead of a black picture of values 0..10. Void and unknown ids are black.
    Written under a temporary name and renamed, so a mask file is never half-written.
    """
    path = directory / f"{index:06d}.png"
    partial = directory / f".{path.name}.partial"
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # mode "L"
    image.putpalette(palette_array(palette).tobytes())  # "L" + palette → "P", values unchanged
    image.save(partial, format="PNG")
    os.replace(partial, path)
    return path
