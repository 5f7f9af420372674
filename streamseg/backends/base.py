"""The one interface every inference backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..modelinfo import ModelInfo


class BackendError(RuntimeError):
    """A backend that cannot be used here (missing package, device, or a bad file)."""


class Backend(ABC):
    """Runs a segmentation network on normalised batches.

    `name` is the backend ("torch", "onnx", "tensorrt"), `device` where it runs,
    `info` the model's self-description (classes, palette, mean/std, size).
    `max_batch` is the largest batch the backend accepts (None: any);
    `fixed_size` the only `(H, W)` input it accepts (None: any).
    """

    name: str
    device: str
    info: ModelInfo
    max_batch: int | None = None
    fixed_size: tuple[int, int] | None = None

    @abstractmethod
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """`(N, 3, H, W) float32` normalised → `(N, C, H, W) float32` logits."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """`(N, 3, H, W) float32` → `(N, H, W) uint8` class indices.

        Backends override this to take the argmax on their device, so only a
        small label map crosses back to the host.
        """
        return self.logits(batch).argmax(axis=1).astype(np.uint8)

    def describe(self) -> str:
        return f"{self.name} on {self.device}"
