"""Inference backends behind one interface: torch, ONNX Runtime, OpenVINO, TensorRT.

Which one runs a given model is decided above this package, in
`streamseg.runtime.load_backend`. `TorchBackend`, `TensorRTBackend` and
`pick_device` are imported on first use: their modules import torch, and the
CPU runtimes keep torch out of the process.
"""
from __future__ import annotations

from ..lazy import lazy_exports
from .base import Backend, BackendError
from .onnx_backend import OnnxBackend
from .openvino_backend import OpenVinoBackend

__getattr__ = lazy_exports(__name__, {"TorchBackend": "torch_backend", "pick_device": "torch_backend",
                                      "TensorRTBackend": "tensorrt_backend"})

__all__ = ["Backend", "BackendError", "OnnxBackend", "OpenVinoBackend", "TensorRTBackend", "TorchBackend",
           "pick_device"]
