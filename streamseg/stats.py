"""Stats: per-stage timers, end-to-end and network-only FPS, drops, class shares.

Each stage's timer is written by that stage's thread only; the summary is
read once the run is over. The first calls of every stage are warm-up
(allocator, thread pools, first-batch kernel selection) and are not counted.
Samples are kept in a fixed-size reservoir so memory stays flat however long
the video is; p50/p95 over a long video are then estimates from 4096 samples.
"""
from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("decode", "preprocess", "inference", "postprocess", "render", "encode")
PROPAGATION_STAGES = ("motion", "propagate")   # timed and reported only with --keyframe-interval other than 1
RESERVOIR = 4096
WARMUP_CALLS = 2


@dataclass
class StageTimer:
    """Durations (seconds) of one stage, per call and per frame, warm-up excluded."""
    name: str
    warmup: int = WARMUP_CALLS
    calls: int = 0
    frames: int = 0          # frames covered by the counted calls (a batch covers several)
    total: float = 0.0
    samples: list[float] = field(default_factory=list)  # per-frame ms
    warm: list[tuple[float, int]] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add(self, seconds: float, frames: int = 1) -> None:
        self.calls += 1
        if self.calls <= self.warmup:
            self.warm.append((seconds, frames))  # used only if the run ends inside warm-up
            return
        self.frames += frames
        self.total += seconds
        self._keep(seconds * 1000.0 / frames)

    def _keep(self, per_frame_ms: float) -> None:
        # Reservoir sampling (Vitter's algorithm R): a uniform sample of bounded size.
        counted = self.calls - self.warmup
        if len(self.samples) < RESERVOIR:
            self.samples.append(per_frame_ms)
        elif (slot := self._rng.randrange(counted)) < RESERVOIR:
            self.samples[slot] = per_frame_ms

    @contextmanager
    def time(self, frames: int = 1):
        start = time.perf_counter()
        yield
        self.add(time.perf_counter() - start, frames)

    def rate(self) -> float:
        """Frames per second of this stage alone (warm-up included only if that is all there is)."""
        total, frames = (self.total, self.frames) if self.frames else \
            (sum(s for s, _ in self.warm), sum(n for _, n in self.warm))
        return frames / total if total > 0 else 0.0

    def summary(self) -> dict[str, float]:
        values = np.asarray(self.samples or [1000.0 * s / n for s, n in self.warm])
        if not values.size:
            return {"mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}
        rate = self.rate()
        return {"mean_ms": 1000.0 / rate if rate else 0.0,
                "p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}


class ClassShares:
    """Running per-class pixel counts over a video, for the summary's class shares."""

    def __init__(self, classes: tuple[str, ...]) -> None:
        self.classes = classes
        self.counts = np.zeros(256, dtype=np.int64)

    def add(self, labels: np.ndarray) -> None:
        # Counted at model resolution: nearest-neighbour resizing keeps the proportions,
        # and the map is several times smaller than the frame.
        self.counts += np.bincount(labels.ravel(), minlength=256)[:256]

    def shares(self) -> dict[str, float]:
        total = int(self.counts.sum())
        if total == 0:
            return {}
        return {name: float(self.counts[i]) / total for i, name in enumerate(self.classes)}


class RunStats:
    """Everything the end-of-run summary and `--stats-json` report."""

    def __init__(self, classes: tuple[str, ...] = (), warmup: int = WARMUP_CALLS) -> None:
        self.timers = {name: StageTimer(name, warmup) for name in (*STAGES, *PROPAGATION_STAGES, "latency")}
        self.timers["inference"].warmup = 1  # counted in batches: the first one pays for allocation
        self.shares = ClassShares(classes)
        self.frames = 0
        self.dropped = 0       # live frames replaced by a newer one before processing
        self.corrupt = 0       # packets the decoder rejected
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.steady_start: float | None = None  # when the warm-up frames were done
        self.warmup_frames = warmup
        self.batch_shape: tuple[int, ...] | None = None
        self.live = False  # a camera or stream: per-frame latency is lag worth showing
        self.keyframes: int | None = None   # frames the network ran on, when labels are propagated

    def count_keyframe(self) -> None:
        self.keyframes = (self.keyframes or 0) + 1

    def __getitem__(self, stage: str) -> StageTimer:
        return self.timers[stage]

    def frame_done(self, born: float) -> None:
        now = time.perf_counter()
        self.frames += 1
        self.timers["latency"].add(now - born)
        if self.frames == self.warmup_frames:
            self.steady_start = now
        self.finished = now

    def summary(self) -> dict[str, Any]:
        wall = (self.finished or time.perf_counter()) - self.started
        steady = self.frames - self.warmup_frames
        steady_time = (self.finished - self.steady_start) if self.steady_start and self.finished else 0.0
        shown = (*STAGES, *PROPAGATION_STAGES, "latency") if self.keyframes is not None else (*STAGES, "latency")
        summary = {
            "frames": self.frames, "wall_s": wall, "dropped": self.dropped, "corrupt": self.corrupt,
            "fps_end_to_end": self.frames / wall if wall > 0 else 0.0,
            "fps_steady": steady / steady_time if steady > 0 and steady_time > 0 else 0.0,
            "fps_network": self.timers["inference"].rate(),
            "batch_shape": list(self.batch_shape) if self.batch_shape else None,
            "stages": {name: self.timers[name].summary() for name in shown},
            "class_shares": self.shares.shares(),
        }
        if self.keyframes is not None:
            summary["keyframes"] = self.keyframes
            summary["frames_per_keyframe"] = self.frames / self.keyframes if self.keyframes else 0.0
        return summary

    def live_text(self) -> str | None:
        """The line drawn on frames while running; None until a frame is done (nothing measured yet).

        Latency is shown for live sources only: a file is read ahead as fast as the
        queues allow, so a file frame's age is time spent waiting in them, not lag.
        """
        if self.frames == 0:
            return None
        fps = f"{self.frames / (time.perf_counter() - self.started):.1f} fps end-to-end"
        if not self.live:
            return fps
        return f"{fps} | latency {self.timers['latency'].summary()['p50_ms']:.0f} ms"

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Human-readable lines in the shape people know from other tools."""
    stages = summary["stages"]
    timed = [name for name in (*STAGES, *PROPAGATION_STAGES) if name in stages]
    speed = ", ".join(f"{stages[name]['mean_ms']:.1f}ms {name}" for name in timed)
    shape = f" at shape {tuple(summary['batch_shape'])}" if summary["batch_shape"] else ""
    lines = [
        f"{summary['frames']} frames in {summary['wall_s']:.1f} s: {summary['fps_end_to_end']:.1f} fps end-to-end "
        f"({summary['fps_steady']:.1f} after warm-up), {summary['fps_network']:.1f} fps network-only",
        f"Speed: {speed} per frame{shape}",
        "p50/p95 ms: " + ", ".join(f"{name} {stages[name]['p50_ms']:.1f}/{stages[name]['p95_ms']:.1f}"
                                   for name in (*timed, "latency")),
    ]
    if "keyframes" in summary:
        lines.append(f"keyframes: {summary['keyframes']} of {summary['frames']} frames "
                     f"({summary['frames_per_keyframe']:.1f} frames per keyframe; the rest propagated)")
    if summary["dropped"] or summary["corrupt"]:
        lines.append(f"dropped {summary['dropped']} stale live frames, skipped {summary['corrupt']} corrupt packets")
    if summary["class_shares"]:
        top = sorted(summary["class_shares"].items(), key=lambda kv: -kv[1])[:6]
        lines.append("pixels: " + ", ".join(f"{name} {share:.0%}" for name, share in top))
    return lines
