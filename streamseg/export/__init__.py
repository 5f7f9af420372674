"""Export: checkpoint → ONNX (checked against PyTorch) → INT8 ONNX / TensorRT engine.

`export_model(ExportConfig(...))` runs the steps `streamseg export` runs;
the single steps are `export_onnx`, `check_onnx`, `quantize_int8` and
`build_engine`.
"""
from __future__ import annotations

from .engine import build_engine
from .frames import FrameSourceError, load_frames, to_batch
from .int8 import compare_int8, quantize_int8
from .onnx_export import ExportError, OnnxCheck, check_onnx, export_onnx
from .run import ExportConfig, ExportResult, cache_onnx, export_model

__all__ = ["ExportConfig", "ExportError", "ExportResult", "FrameSourceError", "OnnxCheck", "build_engine",
           "cache_onnx", "check_onnx", "compare_int8", "export_model", "export_onnx", "load_frames",
           "quantize_int8", "to_batch"]
