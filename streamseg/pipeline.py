"""The pipeline: source → decode → [motion] → preprocess → batch/infer → postprocess → [propagate] → render → encode.

Each stage runs on its own thread and hands frames to the next through a
small bounded queue (`queues.py`), so decoding, inference and encoding overlap (FFmpeg,
OpenCV and PyTorch all release the GIL) while memory stays flat however long
the video is. A single thread per stage keeps frames in order, and every
decoded frame comes out exactly once. Live sources instead keep only the
newest decoded frame (older ones are dropped and counted) and use queues of
one, so latency cannot build up. With a keyframe interval other than 1, the
network runs on keyframes only and `propagate.py` warps their labels to the
frames between (the bracketed stages; at 1 they are not on the path).

Python API::

    for frame in segment_frames("drive.mp4", "runs/x/best.safetensors"):
        frame.image, frame.labels   # (H, W, 3) uint8 RGB, (H, W) uint8 class ids
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .backends import Backend
from .batching import batch_frames, effective_batch, stack
from .decode import Frame
from .encode import VideoWriter
from .overlay import OverlayConfig, Renderer
from .postprocess import Postprocessor, save_mask
from .preprocess import PreprocessConfig, Preprocessor
from .propagate import KeyframeSelector, PropagateConfig, Propagator, plan_motion
from .queues import threaded, timed
from .runtime import load_backend
from .source import SourceError, VideoSource, open_source
from .stats import RunStats, StageTimer
from .threads import apply_opencv_threads, plan_threads

log = logging.getLogger("streamseg")


@dataclass(frozen=True)
class PipelineConfig:
    preprocess: PreprocessConfig = PreprocessConfig()
    overlay: OverlayConfig = OverlayConfig()
    batch: int = 1
    queue_size: int = 4             # frames between two stages: enough to absorb jitter, little memory
    save_masks: Path | None = None  # write (H, W) class-id PNGs (palettised) here
    propagate: PropagateConfig = PropagateConfig()  # keyframe interval 1: the network on every frame


def each(frames: Iterable[Frame], work: Callable[[Frame], None], timer: StageTimer) -> Iterator[Frame]:
    for frame in frames:
        with timer.time():
            work(frame)
        yield frame


class Stages:
    """The per-frame work of the stages between decode and encode, each timed into `stats`.

    The one place that writes a decoded `Frame`'s later fields: `tensor` (preprocess),
    `small_labels` (backend), `labels` (postprocess), `rendered` (overlay)."""

    def __init__(self, backend: Backend, config: PipelineConfig, stats: RunStats, batch: int,
                 renderer: Renderer | None = None) -> None:
        self.backend, self.config, self.stats, self.batch, self.renderer = backend, config, stats, batch, renderer
        fixed = getattr(backend, "fixed_size", None)  # a static ONNX / TensorRT engine takes one size only
        self.preprocessor = Preprocessor(backend.info, config.preprocess, fixed=fixed)
        self.postprocessor = Postprocessor(backend.info.input_size, config.preprocess.aspect, fixed=fixed)
        # Only a backend whose smallest batch exceeds the last, partial batch (a static ONNX,
        # an engine profile with min > 1) gets it padded; the extra rows are dropped after.
        self.pad_to = backend.min_batch if backend.min_batch > 1 else None

    def preprocess(self, frame: Frame) -> None:
        if frame.keyframe:   # the others' labels are propagated (propagate.py)
            frame.tensor = self.preprocessor(frame.image)

    def infer(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        for group in batch_frames(frames, self.batch):
            keys = [frame for frame in group if frame.keyframe]
            if not keys:
                yield from group
                continue
            if self.stats.batch_shape is None:
                self.stats.batch_shape = (len(keys), *keys[0].tensor.shape)
            with self.stats["inference"].time(len(keys)):
                labels = self.backend.predict(stack(keys, self.pad_to))
            for frame, frame_labels in zip(keys, labels, strict=False):  # padding rows, if any, are dropped
                frame.small_labels = frame_labels
                frame.tensor = None  # the input is no longer needed: free it early
            yield from group

    def postprocess(self, frame: Frame) -> None:
        if not frame.keyframe:
            return
        size = frame.image.shape[:2]
        self.stats.shares.add(self.postprocessor.crop(frame.small_labels, size))
        frame.labels, frame.small_labels = self.postprocessor(frame.small_labels, size), None
        self.save(frame)

    def save(self, frame: Frame) -> None:
        if self.config.save_masks is not None:
            save_mask(self.config.save_masks, frame.index, frame.labels, self.backend.info.palette)

    def render(self, frame: Frame) -> None:
        frame.rendered = self.renderer(frame.image, frame.labels, self.stats.live_text())

    def count_drop(self) -> None:
        self.stats.dropped += 1


def segment_frames(source: VideoSource | str, backend: Backend | str, config: PipelineConfig = PipelineConfig(),
                   *, stats: RunStats | None = None, stop: threading.Event | None = None,
                   renderer: Renderer | None = None) -> Iterator[Frame]:
    """Yield every frame of `source` with `.labels` (and `.rendered` given a renderer), in order.

    `source` and `backend` may be objects or what `open_source` / `load_backend`
    take. `stop` ends reading gracefully: frames already decoded still come out.
    """
    apply_opencv_threads(plan_threads())  # one cv2 thread per call: every stage already has its own thread
    owned = isinstance(source, str)  # opened here, so closed here
    source = open_source(source) if owned else source
    backend = load_backend(backend)[0] if isinstance(backend, str) else backend
    stats = stats if stats is not None else RunStats(backend.info.classes)
    live, halt = source.info.live, threading.Event()
    stats.live = live
    size = 1 if live else config.queue_size
    stages = Stages(backend, config, stats, effective_batch(config.batch, backend, live), renderer)
    drop = stages.count_drop if live else None
    propagating = config.propagate.enabled
    motion = _plan_motion(config.propagate, source) if propagating else None
    decoded = source.frames(stop, motion_vectors=True) if motion == "mv" else source.frames(stop)
    frames = threaded(timed(decoded, stats["decode"]), halt, size, drop)                 # decode
    if propagating:                                                                       # motion, keyframes
        stats.keyframes = stats.keyframes or 0
        selector = KeyframeSelector(config.propagate, motion, stats.count_keyframe)
        frames = threaded(each(frames, selector, stats["motion"]), halt, size)
    frames = threaded(each(frames, stages.preprocess, stats["preprocess"]), halt, size)   # preprocess
    frames = threaded(stages.infer(frames), halt, max(size, stages.batch))                # batching → backend
    frames = threaded(each(frames, stages.postprocess, stats["postprocess"]), halt, size)  # postprocess
    if propagating:                                                                       # propagate
        propagator = Propagator(config.propagate, live, stats["propagate"], stages.save)
        frames = threaded(propagator(frames), halt, size)
    if renderer is not None:
        frames = threaded(each(frames, stages.render, stats["render"]), halt, size)       # overlay
    try:
        yield from frames
    finally:
        halt.set()
        stats.corrupt = source.report.corrupt
        if owned:
            source.close()


def _plan_motion(config: PropagateConfig, source: VideoSource) -> str:
    motion, note = plan_motion(config, source.info)
    if note is not None:
        log.warning(note)
    return motion


def run(source: VideoSource, backend: Backend, writer: VideoWriter, config: PipelineConfig = PipelineConfig(),
        *, stats: RunStats | None = None, stop: threading.Event | None = None, progress: bool = True,
        renderer: Renderer | None = None, on_frame: Callable[[Frame], None] | None = None) -> RunStats:
    """Segment `source` into `writer`; on `stop`, drain what is in flight and finalise the file.

    `renderer` replaces the one built from `config.overlay`; `on_frame` sees each finished frame (a viewer).
    """
    stats = stats if stats is not None else RunStats(backend.info.classes)
    stop = stop if stop is not None else threading.Event()
    renderer = renderer if renderer is not None else Renderer(backend.info, config.overlay)
    bar = tqdm(total=source.info.frames, unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        for frame in segment_frames(source, backend, config, stats=stats, stop=stop, renderer=renderer):
            with stats["encode"].time():
                writer.write(frame, frame.rendered)
            stats.frame_done(frame.born)
            if on_frame is not None:
                on_frame(frame)
            bar.update()
        if stats.frames == 0:
            why = "stopped before the first frame" if stop.is_set() else "no frames could be decoded"
            raise SourceError(f"{why} from {source.info.name}; nothing written")
        writer.close(complete=not stop.is_set())
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return stats
