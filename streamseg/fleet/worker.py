"""The Ray actors of a fleet run: clip workers, and one small actor that tracks progress.

A `ClipWorker` loads its backend once (chosen as `auto` chooses on its own
machine) and then segments whole clips with the library's `pipeline.run`, so
a clip's frames stay in order on one worker and audio is copied as in a
single run. While a clip runs, a thread reports its frame count to
`Progress` every `REPORT_EVERY_S` and learns from the answer whether the
driver asked everyone to stop (Ctrl-C).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray

from ..encode import EncodeConfig, VideoWriter
from ..jobs import ModelConfig
from ..pipeline import PipelineConfig, run
from ..runtime import load_backend
from ..source import VideoSource, open_source
from ..stats import RunStats
from ..threads import limit_cores
from .manifest import Clip, Row, sweep_partials

REPORT_EVERY_S = 0.25  # often enough for a live bar, rare enough to cost nothing next to a frame


@dataclass(frozen=True)
class WorkerConfig:
    """Everything that decides what a clip's output looks like (as `jobs.run_many` takes it),
    plus where ONNX exports are cached."""
    model: ModelConfig = field(default_factory=ModelConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    engines_dir: str = field(default="engines", compare=False)  # a cache: does not change outputs


class Interrupted(Exception):
    """The driver asked the workers to stop; the clip's temporary file is gone, it is redone next run."""


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class WholeClipWriter(VideoWriter):
    """A fleet output is the whole clip or nothing: a stopped clip is aborted, not finalised short,
    so the output folder never holds a file the manifest would have to call incomplete."""

    def close(self, *, complete: bool = True) -> Path:
        if not complete:
            self.abort()
            raise Interrupted
        return super().close()


@ray.remote(num_cpus=0)
class Progress:
    """Frames done / expected per clip across the cluster, attempt counts, and the stop flag."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.stopping = False

    def started(self, key: str, expected: int | None) -> tuple[int, bool]:
        """A (re)started clip counts from zero again, so a retry does not inflate the totals."""
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.done[key], self.expected[key] = 0, expected or 0
        return self.attempts[key], self.stopping

    def advance(self, key: str, frames: int) -> bool:
        self.done[key] = frames
        self.expected[key] = max(self.expected.get(key, 0), frames)
        return self.stopping

    def stop(self) -> None:
        self.stopping = True

    def totals(self) -> tuple[int, int]:
        return sum(self.done.values()), sum(self.expected.values())


class ClipWorker:
    """One long-lived worker: the backend is loaded in `__init__`, which Ray reruns after a restart."""

    def __init__(self, config: WorkerConfig, progress: str) -> None:
        # The progress actor by name, not by handle: a handle argument is kept in the object store,
        # and Ray warns that a restart fails if it is lost; a name is a plain value.
        self.config, self.progress = config, ray.get_actor(progress)
        # This worker's CPUs from Ray, not the node's: each worker would otherwise plan threads for every core.
        limit_cores(ray.get_runtime_context().get_assigned_resources().get("CPU"))
        model = config.model
        self.backend, self.reason = load_backend(model.model, model.backend, model.device,
                                                 batch=config.pipeline.batch, engines_dir=config.engines_dir)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def describe(self) -> str:
        return f"{self.name}: {self.backend.describe()} ({self.reason})"

    def process(self, clip: Clip, settings: str) -> Row | None:
        """Segment one clip → its manifest row, or None when stopped (nothing written; redone next run).

        Errors of the clip's own (unreadable, undecodable, unwritable) come back
        as a row with `error`; only a dying process escapes, and that is Ray's to retry.
        """
        sweep_partials(clip.output)  # a worker killed mid-clip left its temporary file
        Path(clip.output).parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        base = Row(clip.input, clip.output, settings=settings, worker=self.name, backend=self.backend.describe())
        try:
            source = open_source(clip.input)
        except Exception as error:  # noqa: BLE001 — any failure of this clip is this clip's row
            return _failed(base, error, started)
        try:
            return self._segment(clip, source, base, started)
        finally:
            source.close()

    def _segment(self, clip: Clip, source: VideoSource, base: Row, started: float) -> Row | None:
        stop, finished = threading.Event(), threading.Event()
        attempt, stopping = ray.get(self.progress.started.remote(clip.input, source.info.frames))
        base = replace(base, attempt=attempt, rate=float(source.info.rate) if source.info.rate else None,
                       input_bytes=Path(clip.input).stat().st_size)
        stats = RunStats(self.backend.info.classes)
        reporter = threading.Thread(target=self._report, args=(clip.input, stats, stop, finished), daemon=True)
        reporter.start()
        try:
            if stopping:
                raise Interrupted
            writer = WholeClipWriter(clip.output, self.config.encode, rate=source.info.rate,
                                     audio_from=clip.input if source.info.audio else None)
            run(source, self.backend, writer, self.config.pipeline, stats=stats, stop=stop, progress=False)
        except Exception as error:  # noqa: BLE001
            if stop.is_set() or isinstance(error, Interrupted):
                return None
            return _failed(replace(base, frames=stats.frames), error, started)
        finally:
            finished.set()
            reporter.join()
        self.progress.advance.remote(clip.input, stats.frames)
        summary = stats.summary()
        return replace(base, frames=stats.frames, fps=round(summary["fps_end_to_end"], 2),
                       class_shares={k: round(v, 5) for k, v in summary["class_shares"].items()},
                       bytes=Path(clip.output).stat().st_size, seconds=round(time.perf_counter() - started, 3))

    def _report(self, key: str, stats: RunStats, stop: threading.Event, finished: threading.Event) -> None:
        while not finished.wait(REPORT_EVERY_S):
            if ray.get(self.progress.advance.remote(key, stats.frames)):
                stop.set()  # the pipeline drains; WholeClipWriter then drops the file


def _failed(row: Row, error: BaseException, started: float) -> Row:
    return replace(row, error=one_line(error), seconds=round(time.perf_counter() - started, 3))


def worker_options(gpus: float, cpus: float, max_restarts: int, max_task_retries: int) -> dict:
    """The Ray actor options of this run's workers: resources and fault tolerance.

    `max_restarts` brings a dead worker back (its `__init__` reloads the model);
    `max_task_retries` reruns the clip it was on. Both are bounded, so a clip
    that kills every process that touches it ends as an error row, not a loop.
    """
    return {"num_gpus": gpus, "num_cpus": cpus, "max_restarts": max_restarts, "max_task_retries": max_task_retries}


RemoteClipWorker = ray.remote(ClipWorker)
