"""The driver of a fleet run: plan, skip what is done, hand clips to Ray actors, record results.

Placement, restarts and retries are Ray's (actor resources, `max_restarts`,
`max_task_retries`); this module only keeps one clip in flight per ready
worker (`ray.wait`), so a clip is never queued behind a slow one, and writes
each result to the manifest as it arrives.
"""
from __future__ import annotations

import hashlib
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray
from tqdm import tqdm

from .. import __version__
from ..checkpoint import check_model
from ..encode import EncodeError
from .manifest import Clip, Manifest, Row, is_complete, plan_clips, sweep_partials
from .worker import Progress, RemoteClipWorker, WorkerConfig, one_line, worker_options

POLL_S = 0.25  # how often the bars refresh and Ctrl-C is noticed while clips run
Log = Callable[[str], None]


class FleetError(RuntimeError):
    """The run cannot go on: no worker could load the model, or every worker died for good."""


@dataclass(frozen=True)
class FleetConfig:
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    workers: int | None = None      # default: one per GPU when the cluster has GPUs, else one per cpus_per_worker
    cpus_per_worker: float = 1.0    # clips are the parallelism; one core each keeps every core busy
    max_restarts: int = 3           # a worker process that dies is restarted (model reloaded) this often
    max_task_retries: int = 2       # and the clip it was on is retried this often, then recorded as failed
    overwrite: bool = False         # replace outputs the manifest does not list as done


@dataclass
class FleetReport:
    manifest: Path
    done: list[Row] = field(default_factory=list)
    failed: list[Row] = field(default_factory=list)
    skipped: list[Clip] = field(default_factory=list)   # complete from an earlier run
    left: list[Clip] = field(default_factory=list)      # not finished: stopped, or no worker left
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.left


def stderr_log(line: str) -> None:
    tqdm.write(line, file=sys.stderr)  # above the progress bars, not through them


def fingerprint(config: WorkerConfig) -> str:
    """What decides an output's content; a rerun with other settings redoes the clips."""
    model = Path(config.model.model)
    weights = f"{model.stat().st_size}:{model.stat().st_mtime_ns}" if model.is_file() else ""
    text = f"{__version__} {replace(config, engines_dir='')!r} {weights}"  # a release may ship new weights
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_done(clips: list[Clip], manifest: Manifest, settings: str, overwrite: bool) -> tuple[list[Clip], list[Clip]]:
    """(to do, already complete); refuses to replace a file the manifest does not vouch for."""
    todo, done = [], []
    for clip in clips:
        (done if is_complete(manifest.rows.get(clip.input), clip, settings) else todo).append(clip)
    in_the_way = [clip.output for clip in todo if Path(clip.output).exists()]
    if in_the_way and not overwrite:
        more = f" (and {len(in_the_way) - 1} more)" if len(in_the_way) > 1 else ""
        raise EncodeError(f"{in_the_way[0]}{more} exists but is not a complete output of these settings in "
                          f"{manifest.path}; pass --overwrite to redo it, or choose another output folder")
    return todo, done


def connect(address: str | None) -> bool:
    """Join the cluster at `address` ('auto': the one `ray start` made here); None starts a local one.
    Returns whether this call connected (and so should disconnect)."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=False)
    else:
        ray.init(address=address)
    return True


def start_workers(config: FleetConfig, clips: int, progress: str, tag: str) -> list:
    """Long-lived workers, sized to the cluster: a GPU each when it has GPUs (TensorRT / CUDA), else CPUs."""
    resources = ray.cluster_resources()
    gpus = 1.0 if resources.get("GPU", 0) >= 1 and config.worker.model.device != "cpu" else 0.0
    fits = int(resources["GPU"]) if gpus else int(resources.get("CPU", 1) // config.cpus_per_worker)
    count = max(1, min(config.workers or fits, clips))
    options = worker_options(gpus, config.cpus_per_worker, config.max_restarts, config.max_task_retries)
    return [RemoteClipWorker.options(name=f"streamseg-worker-{tag}-{i}", **options).remote(config.worker, progress)
            for i in range(count)]


class Bars:
    """One bar for clips, one for frames, summed over the cluster from the `Progress` actor."""

    def __init__(self, clips: int, enabled: bool) -> None:
        self.clips = tqdm(total=clips, unit="clip", position=0, disable=not enabled, dynamic_ncols=True)
        self.frames = tqdm(total=0, unit="frame", position=1, disable=not enabled, dynamic_ncols=True)

    def refresh(self, progress: ray.actor.ActorHandle) -> None:
        if self.frames.disable:
            return
        done, expected = ray.get(progress.totals.remote())
        self.frames.total, self.frames.n = max(expected, done), done
        self.frames.refresh()

    def close(self) -> None:
        self.frames.close()
        self.clips.close()


class Dispatch:
    """One clip in flight per ready worker; results and worker deaths handled as `ray.wait` reports them."""

    def __init__(self, workers: list, todo: list[Clip], settings: str, record: Callable[[Row], None], log: Log) -> None:
        self.starting = {worker.describe.remote(): worker for worker in workers}
        self.idle: list = []
        self.busy: dict = {}
        self.todo, self.settings, self.record, self.log = deque(todo), settings, record, log
        self.why_none: str | None = None  # why the last worker could not start

    def running(self, stopping: bool) -> bool:
        return bool(self.busy) or bool(self.todo and not stopping and (self.starting or self.idle))

    def step(self, stopping: bool) -> None:
        while self.idle and self.todo and not stopping:
            worker, clip = self.idle.pop(), self.todo.popleft()
            self.busy[worker.process.remote(clip, self.settings)] = (clip, worker)
        ready, _ = ray.wait([*self.starting, *self.busy], num_returns=1, timeout=POLL_S)
        for ref in ready:
            if ref in self.starting:
                self._started(ref, self.starting.pop(ref))
            else:
                self._finished(ref, *self.busy.pop(ref))

    def _started(self, ref: ray.ObjectRef, worker: object) -> None:
        try:
            self.log(f"worker {ray.get(ref)}")
            self.idle.append(worker)
        except ray.exceptions.RayError as error:  # died loading the model, or for good after a crash
            self.why_none = one_line(getattr(error, "cause", None) or error)
            self.log(f"warning: a worker is gone: {self.why_none}")

    def _finished(self, ref: ray.ObjectRef, clip: Clip, worker: object) -> None:
        try:
            row = ray.get(ref)
        except ray.exceptions.RayActorError as error:
            # Ray restarted the worker and retried the clip as often as allowed: record the clip as failed,
            # and ask the worker to identify itself: it comes back to work only if it is alive.
            row = Row(clip.input, clip.output, error=f"worker died on this clip: {one_line(error)}",
                      settings=self.settings)
            self.starting[worker.describe.remote()] = worker
        else:
            self.idle.append(worker)
        if row is not None:  # None: stopped on request, nothing written
            self.record(row)
        else:
            self.todo.appendleft(clip)


def run_clips(config: FleetConfig, todo: list[Clip], settings: str, manifest: Manifest, report: FleetReport,
              *, stop: threading.Event, progress: bool, log: Log) -> None:
    """Segment `todo` on the connected cluster; each result goes to the manifest and `report` at once."""
    tag = uuid.uuid4().hex[:8]  # names unique to this run: other drivers may share the cluster
    tracker = Progress.options(name=f"streamseg-progress-{tag}").remote()
    workers = start_workers(config, len(todo), f"streamseg-progress-{tag}", tag)
    bars = Bars(len(todo), progress)

    def record(row: Row) -> None:
        manifest.append(row)
        (report.failed if row.error else report.done).append(row)
        bars.clips.update()
        if row.error:
            log(f"failed: {row.input}: {row.error}")

    dispatch = Dispatch(workers, todo, settings, record, log)
    try:
        while dispatch.running(stop.is_set()):
            if stop.is_set() and not report.interrupted:
                report.interrupted = True
                tracker.stop.remote()  # workers drop their clip in flight within REPORT_EVERY_S
            dispatch.step(stop.is_set())
            bars.refresh(tracker)
    finally:
        bars.close()
        for actor in (*workers, tracker):  # owned by this driver; killed now rather than at disconnect
            ray.kill(actor)
    report.left = list(dispatch.todo)
    if report.left and not report.interrupted:
        raise FleetError(f"no worker left for {len(report.left)} clip(s): {dispatch.why_none}")


def run_fleet(sources: str | list[str], output_dir: str | Path, config: FleetConfig = FleetConfig(), *,
              address: str | None = None, stop: threading.Event | None = None, progress: bool = True,
              log: Log = stderr_log) -> FleetReport:
    """Segment every clip matching `sources` (paths or globs) into `output_dir` on a Ray cluster.

    `address`: None starts a local cluster, 'auto' joins the one `ray start`
    made, 'HOST:PORT' or 'ray://HOST:PORT' a remote head (already connected:
    that connection is used). Clips complete from an earlier run are skipped;
    `stop` (e.g. set by Ctrl-C) ends the run keeping every finished clip.
    """
    output_dir = Path(output_dir)
    name = check_model(config.worker.model.model)  # a typo is found here, not by every worker for every clip
    clips = plan_clips(sources, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = replace(config.worker.model, model=_absolute(name))
    worker = replace(config.worker, model=model, engines_dir=str(Path(config.worker.engines_dir).resolve()))
    config, settings = replace(config, worker=worker), fingerprint(worker)
    manifest = Manifest(output_dir)
    try:
        for clip in clips:  # leftovers of a run that was killed; the lock says none is running now
            sweep_partials(clip.output)
        todo, skipped = split_done(clips, manifest, settings, config.overwrite)
        report = FleetReport(manifest.path, skipped=skipped)
        log(f"{len(clips)} clips: {len(skipped)} already done, {len(todo)} to do")
        if todo:
            connected = connect(address)
            try:
                run_clips(config, todo, settings, manifest, report, stop=stop or threading.Event(),
                          progress=progress, log=log)
            finally:
                if connected:
                    ray.shutdown()
    finally:
        manifest.close()
    return report


def _absolute(model: str) -> str:
    """Workers do not share the driver's working folder: a model file is named by its absolute path."""
    return str(Path(model).resolve()) if Path(model).exists() else model
