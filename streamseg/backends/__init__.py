"""Inference backends behind one interface, and the choice between them."""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint, shipped_weights
from ..models import PRESETS
from .base import Backend, BackendError
from .torch_backend import TorchBackend


def resolve_checkpoint(model: str) -> Path:
    """`deeplab` → the shipped weights; a path → itself. Errors say what to do."""
    if model in PRESETS:
        path = shipped_weights(model)
        if path is None:
            raise CheckpointError(f"no shipped weights for {model!r}; train one with `python -m train --model {model}` "
                                  "and pass --model runs/.../best.safetensors")
        return path
    path = Path(model)
    if path.suffix in (".safetensors",) or path.exists():
        if not path.is_file():
            raise CheckpointError(f"model file not found: {model}")
        return path
    raise CheckpointError(f"unknown model {model!r}; use one of {', '.join(PRESETS)} or a .safetensors checkpoint")


def load_backend(model: str, backend: str = "auto", device: str = "auto", *, batch: int = 1) -> tuple[Backend, str]:
    """Build the backend for a model name or file; returns it and why it was chosen."""
    if backend not in ("auto", "torch"):
        raise BackendError(f"backend {backend!r} is not available in this build")
    net, info = load_checkpoint(resolve_checkpoint(model))
    chosen = TorchBackend(net, info, device)
    return chosen, "torch backend" + (" requested" if backend == "torch" else " (auto)")


__all__ = ["Backend", "BackendError", "TorchBackend", "load_backend", "resolve_checkpoint"]
