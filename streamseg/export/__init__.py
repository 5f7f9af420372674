"""Export: checkpoint → ONNX (checked against PyTorch) → INT8 ONNX / TensorRT engine.

`export_model(ExportConfig(...))` runs the steps `streamseg export` runs;
the single steps are `export_onnx`, `check_onnx`, `quantize_int8` and
`build_engine`. Names are imported on first use: the steps import torch,
and `streamseg run` on an ONNX file must not (it only needs `ExportError`).
"""
from __future__ import annotations

from ..lazy import lazy_exports
from .errors import ExportError

__getattr__ = lazy_exports(__name__, {
    "build_engine": "engine", "FrameSourceError": "frames", "load_frames": "frames", "to_batch": "frames",
    "compare_int8": "int8", "quantize_int8": "int8", "OnnxCheck": "onnx_export", "check_onnx": "onnx_export",
    "export_onnx": "onnx_export", "ExportConfig": "run", "ExportResult": "run", "cache_onnx": "run",
    "export_model": "run"})

__all__ = ["ExportConfig", "ExportError", "ExportResult", "FrameSourceError", "OnnxCheck", "build_engine",
           "cache_onnx", "check_onnx", "compare_int8", "export_model", "export_onnx", "load_frames",
           "quantize_int8", "to_batch"]
