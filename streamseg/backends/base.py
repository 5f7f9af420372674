"""The one interface every inference backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..modelinfo import ModelInfo


def labels_of(logits: np.ndarray) -> np.ndarray:
    """`(N, C, H, W)` logits → `(N, H, W) uint8` class ids (first maximum on ties, as ONNX ArgMax)."""
    return logits.argmax(axis=1).astype(np.uint8)


class BackendError(RuntimeError):
    """A backend that cannot be used here (missing package, device, or a bad file)."""


class Backend(ABC):
    """Runs a segmentation network on normalised batches.

    `name` is the backend ("torch", "onnx", "tensorrt"), `device` where it runs,
    `info` the model's self-description (classes, palette, mean/std, size).
    `max_batch` is the largest batch the backend accepts (None: any);
    `min_batch` the smallest (a static-batch file or engine: `min_batch == max_batch`);
    `fixed_size` the only `(H, W)` input it accepts (None: any).
    """

    name: str
    device: str
    info: ModelInfo
    max_batch: int | None = None
    min_batch: int = 1
    fixed_size: tuple[int, int] | None = None

    @abstractmethod
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """`(N, 3, H, W) float32` normalised → `(N, C, H, W) float32` logits."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """`(N, 3, H, W) float32` → `(N, H, W) uint8` class indices.

        Backends override this to take the argmax in their graph or on their
        device, so only a small label map crosses back to the host. This
        fallback is numpy's argmax (on CPU several times faster than torch's
        for one `(1, C, H, W)` array, measured in issue 13).
        """
        return labels_of(self.logits(batch))

    def describe(self) -> str:
        return f"{self.name} on {self.device}"
