"""Motion: a dense backward motion field per frame, from the decoder's motion vectors or DIS optical flow.

`propagate.py` warps keyframe labels along these fields. Every frame `t`
gets, at a small working size (longer side `WORK_SIDE`):
- `backward` `(h, w, 2) float32`: the pixel at `p` in frame `t` was at
  `p + backward[p]` in frame `t - 1` (the previous frame *shown*, whatever
  the codec's reference order);
- `valid` `(h, w) float32` in {0, 1}: where that is believable. Intra-coded
  blocks (the encoder found no match), motion that leaves the frame, and
  pixels whose grey level disagrees with the previous frame at the place the
  motion points to are not.

Motion vectors (`mv`) cost nothing to get: the decoder has them anyway. They
are per block (16x16 down to 8x8) and point to a reference picture that may
be several frames back or ahead (B-frames); each is scaled to one frame step
(constant velocity between the frame and its reference). Frames that carry
none (I-frames, or a gap after dropped live frames) get optical flow instead.
DIS flow (`flow`, OpenCV's FAST preset on the grey working-size frames)
works for any source, cameras included.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .decode import Frame

WORK_SIDE = 256        # motion is smooth: a quarter-megapixel grid tracks it, and DIS stays ~1-2 ms
FLOW_SIDE = 128        # longer side of DIS's finest level: small objects' motion, at ~3 ms
CUT_RESIDUAL = 0.25    # mean residual / mean contrast above which a frame does not follow from the last
#                        (a synthetic cut: 0.42; frames that follow: ~0.02)
PHOTO_TOLERANCE = 24   # grey levels (0-255): beyond this the motion does not explain the pixel
CELL = 8               # smallest block the H.264 decoder reports a vector for
MAX_REFERENCE = 6      # frames back an H.264 block may be predicted from, as far as we look
REFINE_MARGIN = 3.0    # grey levels a neighbouring block's vector must explain a pixel better by to replace its own


@dataclass(eq=False)
class MotionField:
    backward: np.ndarray   # (h, w, 2) float32, working pixels, towards the previous frame
    valid: np.ndarray      # (h, w) float32, 1 where the motion is believable
    grey: np.ndarray       # (h, w) uint8, this frame at the working size

    @property
    def trust(self) -> float:
        return float(self.valid.mean())


def working_size(height: int, width: int, side: int | None = None) -> tuple[int, int]:
    scale = min(1.0, (side or WORK_SIDE) / max(height, width))
    return max(8, round(height * scale)), max(8, round(width * scale))


@lru_cache(maxsize=4)
def pixel_grid(size: tuple[int, int]) -> np.ndarray:
    """`(h, w, 2) float32` holding each pixel's own (x, y): the identity map (read-only, shared)."""
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    grid = np.dstack([xs, ys])
    grid.flags.writeable = False
    return grid


def inside(points: np.ndarray) -> np.ndarray:
    """`(h, w) bool`: map entries that land inside an image of the map's own size."""
    height, width = points.shape[:2]
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)


def sample(image: np.ndarray, points: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """`image` read at `points` `(h, w, 2)` (bilinear): a backward warp."""
    return cv2.remap(image, points[..., 0], points[..., 1], cv2.INTER_LINEAR, borderMode=border)


def vectors_to_grid(vectors: np.ndarray | None, references: tuple[int, int],
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Block vectors → `(rows, cols, 2)` backward motion per 8x8 cell (frame pixels per frame) and
    `(rows, cols) bool` cells that had a vector (the rest are intra-coded)."""
    rows, cols = -(-size[0] // CELL), -(-size[1] // CELL)
    sums, counts = np.zeros((rows * cols, 2)), np.zeros(rows * cols)
    if vectors is not None and len(vectors):
        v = vectors
        displacement = np.stack([v["motion_x"], v["motion_y"]], -1) / np.maximum(v["motion_scale"], 1)[:, None]
        # src = dst + displacement lies in the reference picture: n frames back (source < 0)
        # or ahead (source > 0); one frame back is displacement / n, or -displacement / n.
        steps = np.where(v["source"] < 0, references[0], -references[1])
        per_frame = displacement / steps[:, None]
        # dst is the block's centre; a 16x16 block covers 2x2 cells.
        left, top = (v["dst_x"] - v["w"] // 2) // CELL, (v["dst_y"] - v["h"] // 2) // CELL
        wide, tall = np.maximum(v["w"] // CELL, 1), np.maximum(v["h"] // CELL, 1)
        for dy in range(int(tall.max())):
            for dx in range(int(wide.max())):
                x, y = left + dx, top + dy
                keep = (dx < wide) & (dy < tall) & (x >= 0) & (x < cols) & (y >= 0) & (y < rows)
                cells = (y * cols + x)[keep]
                np.add.at(sums, cells, per_frame[keep])
                np.add.at(counts, cells, 1)
    known = counts > 0
    grid = np.zeros_like(sums)
    grid[known] = sums[known] / counts[known, None]
    return _fill_intra(grid.reshape(rows, cols, 2), known.reshape(rows, cols)), known.reshape(rows, cols)


def _fill_intra(grid: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Give intra cells their neighbours' mean motion (normalised convolution), else the frame's median.

    They stay marked invalid; this only keeps their warp close to the scene's motion."""
    if known.all() or not known.any():
        return grid.astype(np.float32)
    weight = cv2.blur(known.astype(np.float32), (5, 5))
    spread = cv2.blur((grid * known[..., None]).astype(np.float32), (5, 5))
    filled = np.where(weight[..., None] > 0, spread / np.maximum(weight, 1e-6)[..., None],
                      np.median(grid[known], axis=0))
    return np.where(known[..., None], grid, filled).astype(np.float32)


def refine_blocks(grid: np.ndarray, known: np.ndarray, frame_size: tuple[int, int], grey: np.ndarray,
                  previous: np.ndarray, rescale: tuple[float, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell vectors → a per-pixel field at the working size, sharp at object edges.

    A block on an object's edge carries one vector for two motions, so near
    edges the labels would be off by up to a block. Each pixel instead takes,
    among its own cell's vector and its 8 neighbours', the one that best
    explains its surroundings (grey difference to the previous frame, mean
    over 5x5). H.264 may also predict a block from an older picture than the
    nearest (x264 keeps 3), and the decoder does not say which: the own
    vector scaled by each of `rescale` competes too. About a millisecond per
    candidate at the working size.
    """
    height, width = grey.shape
    # The cell of each working pixel (pixel centres mapped to frame pixels, 8 per cell).
    rows = np.minimum(((np.arange(height) + 0.5) * frame_size[0] / height) // CELL, grid.shape[0] - 1).astype(int)
    cols = np.minimum(((np.arange(width) + 0.5) * frame_size[1] / width) // CELL, grid.shape[1] - 1).astype(int)
    offsets = sorted(np.ndindex(3, 3), key=lambda o: (o[0] - 1) ** 2 + (o[1] - 1) ** 2)  # own cell first
    candidates = [((dy - 1, dx - 1), 1.0) for dy, dx in offsets] + [((0, 0), factor) for factor in rescale]
    best_error = best = best_known = None
    for (dy, dx), factor in candidates:
        r = np.clip(rows + dy, 0, grid.shape[0] - 1)[:, None]
        c = np.clip(cols + dx, 0, grid.shape[1] - 1)[None, :]
        field = grid[r, c] * np.float32(factor)
        seen = sample(previous, pixel_grid(grey.shape) + field)
        error = cv2.blur(cv2.absdiff(seen, grey).astype(np.float32), (5, 5))
        if best is None:   # the pixel's own cell comes first and keeps it unless clearly beaten
            best_error, best, best_known = error, field, known[r, c]
            continue
        better = error + REFINE_MARGIN < best_error
        best_error = np.where(better, error, best_error)
        best = np.where(better[..., None], field, best)
        best_known = np.where(better, known[r, c], best_known)
    return best.astype(np.float32), best_known


def rotate_field(field: np.ndarray, turns: int) -> np.ndarray:
    """Motion in coded orientation → upright (np.rot90's counter-clockwise turns): (dx, dy) → (dy, -dx)."""
    for _ in range(turns % 4):
        field = np.rot90(field)
        field = np.dstack([field[..., 1], -field[..., 0]])
    return np.ascontiguousarray(field)


class MotionEstimator:
    """Per frame, in display order: its `MotionField` towards the frame before it.

    `source` is "mv" (frames carry the decoder's vectors) or "flow". The
    first frame, and any frame after a gap or a size change, has nothing to
    refer to: zero motion, valid nowhere.
    """

    def __init__(self, source: str) -> None:
        if source not in ("mv", "flow"):
            raise ValueError(f"motion source must be mv or flow, got {source!r}")
        self.source = source
        self.previous: tuple[int, np.ndarray] | None = None   # (frame index, grey)
        self._flow: cv2.DISOpticalFlow | None = None

    def __call__(self, frame: Frame) -> MotionField:
        height, width = frame.image.shape[:2]
        size = working_size(height, width)
        grey = cv2.cvtColor(cv2.resize(frame.image, size[::-1], interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        previous, self.previous = self.previous, (frame.index, grey)
        if previous is None or previous[1].shape != grey.shape:
            return MotionField(np.zeros((*size, 2), np.float32), np.zeros(size, np.float32), grey)
        contiguous = previous[0] == frame.index - 1   # live sources drop frames: vectors then skip some
        if self.source == "mv" and contiguous and frame.motion_vectors is not None and len(frame.motion_vectors):
            backward, known = self._from_vectors(frame, (height, width), size, grey, previous[1])
        else:
            backward, known = self._from_flow(grey, previous[1]), np.ones(size, bool)
        valid = known & self._consistent(grey, previous[1], backward)
        return MotionField(backward, valid.astype(np.float32), grey)

    def _from_vectors(self, frame: Frame, frame_size: tuple[int, int], size: tuple[int, int],
                      grey: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        turns = round(frame.rotation / 90) % 4
        coded = frame_size[::-1] if turns % 2 else frame_size   # vectors are in the coded picture
        grid, known = vectors_to_grid(frame.motion_vectors, frame.references, coded)
        grid, known = rotate_field(grid, turns), np.ascontiguousarray(np.rot90(known, turns))
        grid = grid * np.array([size[1] / frame_size[1], size[0] / frame_size[0]], np.float32)
        # Vectors were scaled as if from the nearest reference; an older one (up to MAX_REFERENCE back) may be meant.
        past = frame.references[0]
        rescale = tuple(past / n for n in range(1, MAX_REFERENCE + 1) if n != past)
        return refine_blocks(grid, known, frame_size, grey, previous, rescale)

    def _from_flow(self, grey: np.ndarray, previous: np.ndarray) -> np.ndarray:
        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
            # FAST stops 4x below the input; stop where the flow is still FLOW_SIDE wide instead
            # (DIS's cost follows the finest level it computes, not the input size).
            self._flow.setFinestScale(max(0, int(np.log2(max(grey.shape) / FLOW_SIDE))))
        # calc(I0, I1) finds f with I0(p) ≈ I1(p + f(p)): from this frame back to the previous one.
        return self._flow.calc(grey, previous, None)

    @staticmethod
    def _consistent(grey: np.ndarray, previous: np.ndarray, backward: np.ndarray) -> np.ndarray:
        """Pixels the motion explains: inside the previous frame and about as bright there.

        None at all when what is left unexplained is nearly as large as the picture's own
        contrast (a scene cut: flow then finds chance matches pixel by pixel)."""
        points = pixel_grid(grey.shape) + backward
        residual = cv2.absdiff(sample(previous, points), grey)
        contrast = float(np.abs(grey.astype(np.float32) - grey.mean()).mean())
        if float(residual.mean()) > CUT_RESIDUAL * max(contrast, 1.0):
            return np.zeros(grey.shape, bool)
        return inside(points) & (residual <= PHOTO_TOLERANCE)
