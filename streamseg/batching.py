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
    """Consecutive groups of `size` frames, in order; the last group may be shorter."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    batch: list[Frame] = []
    for frame in frames:
        if batch and frame.tensor is not None and frame.tensor.shape != batch[0].tensor.shape:
            yield batch  # the source changed size mid-stream (--aspect keep follows it): one shape per batch
            batch = []
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
