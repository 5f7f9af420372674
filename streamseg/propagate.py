"""Propagate: the network runs on keyframes; the frames between get keyframe labels warped by motion.

Two stages around the network (see `pipeline.py`):
- `KeyframeSelector`, right after decode: each frame's motion (`motion.py`)
  is chained back to the last keyframe, giving a map into it and a trust
  map (the product of every step's `valid`, and whether the keyframe's grey
  levels, carried along the chain, still match this frame). It decides
  which frames are keyframes: every `interval`-th, or with `auto` when the
  labels carried along could no longer be trusted.
- `Propagator`, after postprocess: keyframes pass through with the
  network's labels; the others get a nearest-neighbour backward warp
  (`cv2.remap`) of keyframe labels. Files warp from both neighbouring
  keyframes and keep, per pixel, the one with more trust per frame of
  distance (the frames wait for the next keyframe); live sources warp
  forward only, so they add no latency.

How `auto` reads the signals: a scene cut or an intra-coded frame leaves
the frame's own motion valid almost nowhere (`cut_trust`); intra blocks,
motion that leaves the frame, motion that does not explain the picture
(large or incoherent), and drift accumulated along the chain all lower the
chain's trust (`min_trust`); `max_interval` bounds the rest.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .decode import Frame
from .motion import PHOTO_TOLERANCE, MotionEstimator, MotionField, inside, pixel_grid, sample
from .source import VideoInfo

AUTO = "auto"
MOTIONS = ("auto", "mv", "flow")
FUSIONS = ("trust", "nearer", "forward")
MV_CODECS = ("h264", "mpeg4", "mpeg2video", "mpeg1video")   # FFmpeg decoders that export vectors (not hevc)
MAX_INTERVAL = 30   # files hold the frames between two keyframes in memory
# Block vectors are trusted on less of the frame than flow (intra blocks, block edges), so they get a lower
# bar. Tuned on CamSeq01 with fcn: 0.75 / 0.8 give 4.4 / 7.8 frames per keyframe at -0.8 / -0.7 pt mIoU.
MIN_TRUST = {"mv": 0.75, "flow": 0.8}


@dataclass(frozen=True)
class PropagateConfig:
    interval: int | str = 1     # a keyframe every N frames, or "auto"; 1 = the network on every frame
    motion: str = "auto"        # mv | flow | auto (= flow, measured faster and more accurate)
    max_interval: int = 10      # auto: never more frames than this from one keyframe to the next
    min_trust: float | None = None  # auto: new keyframe once less of the frame than this follows back to the
    #                                 last one; None: MIN_TRUST for the motion source used
    cut_trust: float = 0.5      # auto: a frame whose own motion explains less than this is a scene cut
    fuse: str = "trust"         # files: trust (per pixel, trust / distance), nearer keyframe, or forward only

    def __post_init__(self) -> None:
        if self.interval != AUTO and not (isinstance(self.interval, int) and 1 <= self.interval <= MAX_INTERVAL):
            raise ValueError(f"keyframe interval must be 1-{MAX_INTERVAL} or auto, got {self.interval!r}")
        if not 2 <= self.max_interval <= MAX_INTERVAL:
            raise ValueError(f"max keyframe interval must be 2-{MAX_INTERVAL}, got {self.max_interval}")
        if self.motion not in MOTIONS or self.fuse not in FUSIONS:
            raise ValueError(f"motion must be one of {MOTIONS} and fuse one of {FUSIONS}")

    @property
    def enabled(self) -> bool:
        return self.interval != 1


def plan_motion(config: PropagateConfig, info: VideoInfo) -> tuple[str, str | None]:
    """The motion source a run uses, and a one-line note when it is not the one asked for."""
    # auto = flow: on CamSeq01 (benchmarks/temporal.py) DIS flow beat the decoder's vectors
    # in both mIoU and end-to-end fps for fcn and deeplab, because turning block vectors
    # into a trustworthy dense field (refinement over neighbouring blocks) costs more than flow.
    if config.motion in ("auto", "flow"):
        return "flow", None
    if info.codec in MV_CODECS:
        return "mv", None
    if info.codec is None:
        why = "cameras have no motion vectors"
    else:
        why = f"FFmpeg's {info.codec} decoder exports no motion vectors"
    return "flow", f"{why}: propagating labels with optical flow (--motion flow)"


@dataclass(eq=False)
class Track:
    """A frame's motion and, for non-keyframes, its way back to the last keyframe (working pixels)."""
    field: MotionField
    to_keyframe: np.ndarray | None = None   # (h, w, 2) float32 position in the keyframe
    trust: np.ndarray | None = None         # (h, w) float32 in [0, 1]
    distance: int = 0                       # frames since the keyframe


class KeyframeSelector:
    """Per frame, in order: estimate motion, follow it back to the last keyframe, mark keyframes."""

    def __init__(self, config: PropagateConfig, motion: str, on_keyframe: Callable[[], None] | None = None) -> None:
        self.config, self.on_keyframe = config, on_keyframe
        self.min_trust = config.min_trust if config.min_trust is not None else MIN_TRUST[motion]
        self.estimator = MotionEstimator(motion)
        self.last: Track | None = None
        self.key_grey: np.ndarray | None = None

    def __call__(self, frame: Frame) -> None:
        field = self.estimator(frame)
        track = self._follow(field)
        frame.keyframe = self._is_keyframe(track)
        if frame.keyframe:
            track, self.key_grey = Track(field), field.grey
            if self.on_keyframe is not None:
                self.on_keyframe()
        frame.motion = self.last = track

    def _follow(self, field: MotionField) -> Track | None:
        last = self.last
        if last is None or last.field.grey.shape != field.grey.shape:
            return None
        step = pixel_grid(field.grey.shape) + field.backward
        valid = field.valid * inside(step)
        if last.to_keyframe is None:   # the previous frame is the keyframe
            points, trust = step, valid
        else:
            points = sample(last.to_keyframe, step)
            trust = sample(last.trust, step, cv2.BORDER_CONSTANT) * valid
        # Drift: the keyframe's grey levels, carried all the way, must still match this frame.
        carried = sample(self.key_grey, points)
        trust = trust * (cv2.absdiff(carried, field.grey) <= PHOTO_TOLERANCE)
        return Track(field, points, trust.astype(np.float32), last.distance + 1)

    def _is_keyframe(self, track: Track | None) -> bool:
        if track is None:
            return True
        if self.config.interval != AUTO:
            return track.distance >= self.config.interval
        return (track.distance >= self.config.max_interval or track.field.trust < self.config.cut_trust
                or float(track.trust.mean()) < self.min_trust)


def warp_labels(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`(H, W) uint8` labels of a keyframe, read at `points` (a working-size map): nearest neighbour."""
    height, width = labels.shape
    full = cv2.resize(points, (width, height), interpolation=cv2.INTER_LINEAR)
    # Both are pixel-centre grids: working x ↔ frame (x + 0.5) * W / w - 0.5.
    full = (full + 0.5) * np.array([width / points.shape[1], height / points.shape[0]], np.float32) - 0.5
    return cv2.remap(labels, full[..., 0], full[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def invert_step(backward: np.ndarray, iterations: int = 2) -> np.ndarray:
    """The next frame's backward field → where each pixel of this frame is in the next one.

    Solves q + backward(q) = p by fixed-point iteration from q = p - backward(p)."""
    grid = pixel_grid(backward.shape[:2])
    points = grid - backward
    for _ in range(iterations):
        points = grid - sample(backward, points)
    return points


def follow_forward(frames: list[Frame], key: Frame) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of `frames` (consecutive, just before the keyframe `key`): (map into `key`, trust)."""
    chains, points, trust, after = [], None, None, key
    for frame in reversed(frames):
        step = invert_step(after.motion.field.backward)
        valid = sample(after.motion.field.valid, step, cv2.BORDER_CONSTANT) * inside(step)
        if points is None:
            points, trust = step, valid
        else:
            points, trust = sample(points, step), sample(trust, step, cv2.BORDER_CONSTANT) * valid
        carried = sample(key.motion.field.grey, points)
        chains.append((points, trust * (cv2.absdiff(carried, frame.motion.field.grey) <= PHOTO_TOLERANCE)))
        after = frame
    return chains[::-1]


class Propagator:
    """Give every non-keyframe labels warped from its keyframes; frames come out in order."""

    def __init__(self, config: PropagateConfig, live: bool, timer: object,
                 finish: Callable[[Frame], None] | None = None) -> None:
        self.config, self.live, self.timer, self.finish = config, live, timer, finish

    def __call__(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        key: Frame | None = None
        pending: list[Frame] = []
        for frame in frames:
            if frame.keyframe:
                if pending:
                    yield from self._fill(key, pending, frame)
                    pending = []
                key = frame
                yield frame
            elif self.live:
                yield from self._fill(key, [frame], None)
            else:
                pending.append(frame)
        if pending:   # the end (or a stop) came before another keyframe: forward only
            yield from self._fill(key, pending, None)

    def _fill(self, key: Frame, frames: list[Frame], next_key: Frame | None) -> list[Frame]:
        with self.timer.time(len(frames)):
            both = next_key is not None and self.config.fuse != "forward"
            backward = follow_forward(frames, next_key) if both else [None] * len(frames)
            for frame, (chain, count) in zip(frames, zip(backward, range(len(frames), 0, -1)), strict=True):
                labels = warp_labels(key.labels, frame.motion.to_keyframe)
                if chain is not None:
                    labels = self._fuse(labels, frame.motion, warp_labels(next_key.labels, chain[0]), chain[1], count)
                frame.labels = labels
                if self.finish is not None:
                    self.finish(frame)
        return frames

    def _fuse(self, forward: np.ndarray, track: Track, backward: np.ndarray, trust: np.ndarray,
              distance: int) -> np.ndarray:
        if self.config.fuse == "nearer":
            return backward if distance < track.distance else forward
        later = trust / distance > track.trust / track.distance   # ties (equal distance, both trusted) go forward
        later = cv2.resize(later.astype(np.uint8), forward.shape[::-1], interpolation=cv2.INTER_NEAREST)
        return np.where(later > 0, backward, forward)
