"""PyTorch backend: CPU, or CUDA with channels_last and FP16 autocast where it is faster."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..checkpoint import ModelInfo
from .base import Backend, BackendError, labels_of

# FP16 must beat float32 by this much to be chosen: a near tie is timing noise, and float32 is exact.
FP16_MARGIN = 0.95


def pick_device(device: str = "auto") -> torch.device:
    """`auto` → CUDA when there is one, else CPU; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} asked for, but CUDA is not available on this machine; "
                           "use --device cpu")
    return torch.device(device)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: nn.Module, info: ModelInfo, device: str = "auto", *, fp16: bool | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        """`fp16`: True / False force FP16 autocast on or off on CUDA; None times both on the first
        batch of each shape, keeps the faster and tells `log` the times (on an H200 FP16 lost at
        batch 8, 0.70x for fcn, and won at batch 32, 1.15x: docs/results/cuda_inference.txt).
        CPU always runs float32."""
        self.torch_device = pick_device(device)
        self.device = str(self.torch_device)
        self.info = info
        self.cuda = self.torch_device.type == "cuda"
        self.fp16 = fp16 if self.cuda else False  # FP16 autocast only pays off (and is safe) on CUDA
        self.fp16_by_shape: dict[tuple[int, ...], bool] = {}
        self.log = log or (lambda _: None)
        self.model = model.to(self.torch_device).eval()
        self._pinned: dict[tuple, torch.Tensor] = {}
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
            # Frame sizes are fixed within a run: let cuDNN time its algorithms once per shape.
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.cuda:
            # Through a reused page-locked buffer: only then is the host→GPU copy truly asynchronous.
            key = (tuple(x.shape), x.dtype)
            if key not in self._pinned:
                self._pinned[key] = torch.empty(key[0], dtype=x.dtype, pin_memory=True)
            x = self._pinned[key].copy_(x).to(self.torch_device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
        return self._run(x, self._use_fp16(x))

    def _run(self, x: torch.Tensor, fp16: bool) -> torch.Tensor:
        with torch.autocast(self.torch_device.type, dtype=torch.float16, enabled=fp16):
            return self.model(x)

    def _use_fp16(self, x: torch.Tensor) -> bool:
        if self.fp16 is not None:
            return self.fp16
        shape = tuple(x.shape)
        if shape not in self.fp16_by_shape:
            half, full = self._seconds(x, True), self._seconds(x, False)
            self.fp16_by_shape[shape] = half < FP16_MARGIN * full
            self.log(f"precision check on {self.device} at batch {shape[0]}: float32 {full * 1e3:.1f} ms, FP16 autocast "
                     f"{half * 1e3:.1f} ms → {'FP16 autocast' if self.fp16_by_shape[shape] else 'float32'}")
        return self.fp16_by_shape[shape]

    def _seconds(self, x: torch.Tensor, fp16: bool, rounds: int = 3) -> float:
        """Seconds per forward pass at this precision; the first two calls (cuDNN's search) untimed."""
        for _ in range(2):
            self._run(x, fp16)
        self._synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            self._run(x, fp16)
        self._synchronize()
        return (time.perf_counter() - start) / rounds

    def _synchronize(self) -> None:
        if self.cuda:  # kernels run asynchronously: time them, not their launches
            torch.cuda.synchronize(self.torch_device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).float().cpu().numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if not self.cuda:  # on CPU numpy's argmax beats torch's (issue 13: 5 ms vs 30 ms per frame)
            return labels_of(self._forward(batch).float().numpy())
        return self._forward(batch).argmax(dim=1).to(torch.uint8).cpu().numpy()

    def describe(self) -> str:
        if self.fp16 is not None:  # forced, or a CPU
            return f"torch on {self.device}" + (" (FP16 autocast)" if self.fp16 else "")
        chosen = ", ".join(f"{'FP16 autocast' if fp16 else 'float32'} at batch {shape[0]}"
                           for shape, fp16 in self.fp16_by_shape.items())
        return f"torch on {self.device} ({chosen or 'float32 or FP16 autocast, timed on the first batch'})"
