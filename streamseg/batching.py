"""Batching: group preprocessed frames into the backend's `(N, 3, h, w)` input (`pipeline.Stages.infer`
hands each frame its row of the answer).

Files are batched `--batch` frames at a time and the last, partial batch is
run as it is (or padded for backends that only take one batch size). Live
sources use batch 1: waiting for N frames would add N-1 frames of latency.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from .backends import Backend
from .decode import Frame


def batch_frames(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive groups holding `size` keyframes each, in order; the last group may hold fewer.

    Frames whose labels are propagated (`keyframe` False) ride along in order
    with the keyframes around them; one that arrives while no keyframe is
    waiting goes out at once, so live sources gain no latency.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    batch: list[Frame] = []
    keys = 0
    for frame in frames:
        if keys and frame.tensor is not None and frame.tensor.shape != _shape(batch):
            yield batch  # the source changed size mid-stream (--aspect keep follows it): one shape per batch
            batch, keys = [], 0
        batch.append(frame)
        keys += frame.keyframe
        if keys == size or keys == 0:
            yield batch
            batch, keys = [], 0
    if batch:
        yield batch


def _shape(batch: list[Frame]) -> tuple[int, ...]:
    """The input shape of the batch's keyframes (propagated frames carry no tensor)."""
    return next(frame.tensor.shape for frame in batch if frame.keyframe)


def stack(frames: list[Frame], pad_to: int | None = None) -> np.ndarray:
    """Frames' tensors → `(N, 3, h, w) float32`; repeat the last one up to `pad_to` rows."""
    batch = np.stack([frame.tensor for frame in frames])
    if pad_to is not None and len(frames) < pad_to:
        batch = np.concatenate([batch, np.repeat(batch[-1:], pad_to - len(frames), axis=0)])
    return batch


def effective_batch(requested: int, backend: Backend, live: bool) -> int:
    """The batch the runner will use: 1 for live sources, capped by the backend's limit."""
    if live:
        return 1
    if backend.max_batch is not None:
        return max(1, min(requested, backend.max_batch))
    return requested
