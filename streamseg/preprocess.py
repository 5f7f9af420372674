"""Preprocess: frame → the model's input size and normalisation.

Aspect handling is explicit (`--aspect`):
- `keep` (default): scale so the frame's short side is the short side of the
  model's input size (ModelInfo.input_size), keeping the aspect ratio, and run the
  model at that shape (both sides rounded to multiples of 32), as mmsegmentation's
  keep-ratio resize does. The models are fully convolutional and never saw padding
  in training: a letterbox band on 16:9 footage turned clear sky into Road. Backends bound to
  one input size (a static ONNX export, a TensorRT engine built for another
  shape) get `pad` instead, with a warning that says how to rebuild them.
- `pad`: scale so the whole frame fits the model's input size keeping its
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
ASPECTS = ("keep", "pad", "stretch")
# The deepest stride of the zoo's backbones (FCN and ResNet/MobileNet at 32; UNet
# and DeepLab's dilated ones less): at a multiple of it every feature map is whole.
SIZE_MULTIPLE = 32
# The shipped models run CamVid's 360-row frames at 416 rows on purpose (`input_size`, trained
# with --input-scale 1.125); only frames enlarged beyond that margin get the soft-mask warning.
UPSCALE_WARNING = 1.25


@dataclass(frozen=True)
class PreprocessConfig:
    aspect: str = "keep"  # objects keep the shapes and scale the model saw in training


@dataclass(frozen=True)
class Geometry:
    """Where a frame lands inside the model input: rows/cols `[top:top+height, left:left+width]`."""
    frame_size: tuple[int, int]   # (H, W) of the frame
    input_size: tuple[int, int]   # (h, w) the model runs at
    top: int
    left: int
    height: int
    width: int

    def enlarged_beyond(self, factor: float) -> bool:
        return self.height > self.frame_size[0] * factor or self.width > self.frame_size[1] * factor

    @property
    def padded(self) -> bool:
        return (self.height, self.width) != tuple(self.input_size)


def to_multiple(length: float) -> int:
    """The nearest multiple of `SIZE_MULTIPLE` (at least one) to `length` pixels."""
    return max(SIZE_MULTIPLE, round(length / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def scaled_size(frame_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The model input for `(H, W)` frames enlarged `scale` times, each side a multiple of 32:
    CamVid's 360x480 at 1.125 → 416x544 (what training's `--input-scale` records)."""
    return to_multiple(frame_size[0] * scale), to_multiple(frame_size[1] * scale)


def keep_size(frame_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int]:
    """The `keep` model input for an `(H, W)` frame: its short side at the model's input short
    side, the long side in proportion, both rounded to multiples of 32. Rounding the short side
    too matters: at 360 rows the stride-32 features are 11.25 cells high, the decoders' upsampled
    maps (12 → 23 rows, not 2x) drift against their skips, and val mIoU drops 0.008–0.017 against
    352 rows (README, Input size); training never saw such sizes (its crops are multiples of 32)."""
    short = to_multiple(min(input_size))
    frame_h, frame_w = frame_size
    if frame_h <= frame_w:
        return short, to_multiple(frame_w * short / frame_h)
    return to_multiple(frame_h * short / frame_w), short


def plan_geometry(frame_size: tuple[int, int], input_size: tuple[int, int], aspect: str = "keep",
                  fixed: tuple[int, int] | None = None) -> Geometry:
    """How to place an `(H, W)` frame into the model input for the given aspect mode.

    `input_size` is the model's own input size (ModelInfo.input_size); `fixed` the only input size
    the backend accepts (None: any). `keep` falls back to `pad` when the two differ.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    if aspect == "keep":
        size = keep_size(frame_size, input_size)
        if fixed is None or size == tuple(fixed):
            return Geometry(frame_size, size, 0, 0, *size)
        aspect = "pad"
    input_size = tuple(fixed or input_size)
    (frame_h, frame_w), (in_h, in_w) = frame_size, input_size
    if aspect == "stretch":
        return Geometry(frame_size, input_size, 0, 0, in_h, in_w)
    scale = min(in_h / frame_h, in_w / frame_w)
    height, width = max(1, round(frame_h * scale)), max(1, round(frame_w * scale))
    return Geometry(frame_size, input_size, (in_h - height) // 2, (in_w - width) // 2, height, width)


class Preprocessor:
    """`(H, W, 3) uint8` RGB frame → `(3, h, w) float32` normalised model input."""

    def __init__(self, info: ModelInfo, config: PreprocessConfig = PreprocessConfig(), *,
                 fixed: tuple[int, int] | None = None) -> None:
        self.input_size, self.fixed = tuple(info.input_size), fixed
        self.config = config
        # (x / 255 - mean) / std folded into one multiply and one subtract per pixel.
        std = np.asarray(info.std, dtype=np.float32)
        self.scale = (1.0 / (255.0 * std)).reshape(1, 1, 3)
        self.offset = (np.asarray(info.mean, dtype=np.float32) / std).reshape(1, 1, 3)
        self._geometry: Geometry | None = None

    def geometry(self, frame_size: tuple[int, int]) -> Geometry:
        if self._geometry is None or self._geometry.frame_size != frame_size:
            self._geometry = plan_geometry(frame_size, self.input_size, self.config.aspect, self.fixed)
            if self.config.aspect == "keep" and self._geometry.padded:
                want = keep_size(frame_size, self.input_size)
                log.warning("this backend takes %dx%d inputs only: %dx%d frames are letterboxed (as --aspect pad); "
                            "for masks at the frame's own aspect ratio use a dynamic ONNX export (`streamseg "
                            "export`) or a TensorRT engine built for %dx%d (`streamseg export --fp16 --height %d "
                            "--width %d`)", self.fixed[1], self.fixed[0], frame_size[1], frame_size[0],
                            want[1], want[0], want[0], want[1])
            if self._geometry.enlarged_beyond(UPSCALE_WARNING):
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
        out = np.zeros((3, *g.input_size), dtype=np.float32)  # zero = the mean colour after normalising
        out[:, g.top:g.top + g.height, g.left:g.left + g.width] = content.transpose(2, 0, 1)
        return out
