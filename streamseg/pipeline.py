"""The pipeline: source → decode → preprocess → batch/infer → postprocess → render → encode.

Each stage runs on its own thread and hands frames to the next through a
small bounded queue, so decoding, inference and encoding overlap (FFmpeg,
OpenCV and PyTorch all release the GIL) while memory stays flat however long
the video is. A single thread per stage keeps frames in order, and every
decoded frame comes out exactly once. Live sources instead keep only the
newest decoded frame (older ones are dropped and counted) and use queues of
one, so latency cannot build up.

Python API::

    for frame in segment_frames("drive.mp4", "runs/x/best.safetensors"):
        frame.image, frame.labels   # (H, W, 3) uint8 RGB, (H, W) uint8 class ids
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from .backends import Backend, load_backend
from .batching import batch_frames, effective_batch, infer
from .decode import Frame
from .encode import VideoWriter
from .overlay import OverlayConfig, Renderer
from .postprocess import Postprocessor, save_mask
from .preprocess import PreprocessConfig, Preprocessor
from .source import SourceError, VideoSource, open_source
from .stats import RunStats, StageTimer

T = TypeVar("T")
_END = object()


@dataclass(frozen=True)
class PipelineConfig:
    preprocess: PreprocessConfig = PreprocessConfig()
    overlay: OverlayConfig = OverlayConfig()
    batch: int = 1
    queue_size: int = 4             # frames between two stages: enough to absorb jitter, little memory
    save_masks: Path | None = None  # write (H, W) uint8 class-id PNGs here


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def threaded(items: Iterable[T], halt: threading.Event, maxsize: int,
             on_drop: Callable[[], None] | None = None) -> Iterator[T]:
    """Iterate `items` on a background thread and yield them here, through a bounded queue.

    With `on_drop`, an item the consumer has not taken yet is replaced by the
    next one (live sources: only the newest frame matters) and `on_drop` is called.
    """
    slots: queue.Queue = queue.Queue(maxsize)

    def put(item: object, droppable: bool) -> None:
        while not halt.is_set():
            try:
                slots.put(item, timeout=0.05)
                return
            except queue.Full:
                if droppable and on_drop is not None:
                    try:
                        slots.get_nowait()
                        on_drop()
                    except queue.Empty:
                        pass

    def produce() -> None:
        try:
            for item in items:
                put(item, droppable=True)
                if halt.is_set():
                    return
            put(_END, droppable=False)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failure(error), droppable=False)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    finished = False
    try:
        while not halt.is_set():
            try:
                item = slots.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is _END:
                finished = True
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        if not finished:
            # Closed early or failed: stop every stage, and wait for this one's thread so
            # nobody closes a container while it is still decoding from it.
            halt.set()
            producer.join(timeout=30)


def timed(items: Iterable[T], timer: StageTimer) -> Iterator[T]:
    """Time how long each item takes to arrive (for generators doing the work lazily)."""
    iterator = iter(items)
    while True:
        with timer.time():
            item = next(iterator, _END)
        if item is _END:
            return
        yield item


def each(frames: Iterable[Frame], work: Callable[[Frame], None], timer: StageTimer) -> Iterator[Frame]:
    for frame in frames:
        with timer.time():
            work(frame)
        yield frame


def segment_frames(source: VideoSource | str, backend: Backend | str, config: PipelineConfig = PipelineConfig(),
                   *, stats: RunStats | None = None, stop: threading.Event | None = None,
                   renderer: Renderer | None = None) -> Iterator[Frame]:
    """Yield every frame of `source` with `.labels` (and `.rendered` given a renderer), in order.

    `stop` ends reading gracefully: frames already decoded still come out.
    """
    source = open_source(source) if isinstance(source, str) else source
    backend = load_backend(backend)[0] if isinstance(backend, str) else backend
    stats = stats if stats is not None else RunStats(backend.info.classes)
    live, halt = source.info.live, threading.Event()
    size = 1 if live else config.queue_size
    batch = effective_batch(config.batch, backend, live)
    preprocess = Preprocessor(backend.info, config.preprocess)
    postprocess = Postprocessor(backend.info.input_size, config.preprocess.aspect)
    pad_to = batch if getattr(backend, "fixed_batch", False) else None  # engines built for one batch size

    def prepare(frame: Frame) -> None:
        frame.tensor = preprocess(frame.image)

    def run_batches(frames: Iterable[Frame]) -> Iterator[Frame]:
        for group in batch_frames(frames, batch):
            if stats.batch_shape is None:
                stats.batch_shape = (len(group), *group[0].tensor.shape)
            with stats["inference"].time(len(group)):
                infer(backend, group, pad_to=pad_to)
            yield from group

    def finish(frame: Frame) -> None:
        stats.shares.add(postprocess.crop(frame.small_labels, frame.image.shape[:2]))
        frame.labels = postprocess(frame.small_labels, frame.image.shape[:2])
        frame.small_labels = None
        if config.save_masks is not None:
            save_mask(config.save_masks, frame.index, frame.labels)

    def render(frame: Frame) -> None:
        frame.rendered = renderer(frame.image, frame.labels, stats.live_text())

    def count_drop() -> None:
        stats.dropped += 1

    frames = threaded(timed(source.frames(stop), stats["decode"]), halt, size, count_drop if live else None)
    frames = threaded(each(frames, prepare, stats["preprocess"]), halt, size)
    frames = threaded(run_batches(frames), halt, max(size, batch))
    frames = threaded(each(frames, finish, stats["postprocess"]), halt, size)
    if renderer is not None:
        frames = threaded(each(frames, render, stats["render"]), halt, size)
    try:
        yield from frames
    finally:
        halt.set()
        stats.corrupt = source.report.corrupt


def run(source: VideoSource, backend: Backend, writer: VideoWriter, config: PipelineConfig = PipelineConfig(),
        *, stats: RunStats | None = None, stop: threading.Event | None = None, progress: bool = True) -> RunStats:
    """Segment `source` into `writer`; on `stop`, drain what is in flight and finalise the file."""
    stats = stats if stats is not None else RunStats(backend.info.classes)
    stop = stop if stop is not None else threading.Event()
    renderer = Renderer(backend.info, config.overlay)
    bar = tqdm(total=source.info.frames, unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        for frame in segment_frames(source, backend, config, stats=stats, stop=stop, renderer=renderer):
            with stats["encode"].time():
                writer.write(frame, frame.rendered)
            stats.frame_done(frame.born)
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
