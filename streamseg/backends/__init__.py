"""Inference backends behind one interface: torch, ONNX Runtime, TensorRT.

Which one runs a given model is decided above this package, in
`streamseg.runtime.load_backend`.
"""
from __future__ import annotations

from .base import Backend, BackendError
from .onnx_backend import OnnxBackend
from .tensorrt_backend import TensorRTBackend
from .torch_backend import TorchBackend, pick_device

__all__ = ["Backend", "BackendError", "OnnxBackend", "TensorRTBackend", "TorchBackend", "pick_device"]
