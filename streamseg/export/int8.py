"""INT8 for CPUs: ONNX Runtime static quantisation (QDQ, per-channel weights).

Activations are calibrated with MinMax on real frames (the sample clip or a
`--calib` folder): static ranges avoid the per-inference range computation of
dynamic quantisation, which is what makes INT8 convolutions pay off.
The pay-off depends on the CPU: with VNNI (AVX512-VNNI / AVX-VNNI) an INT8
multiply-add is one instruction; on plain AVX2 it is two, and our thin,
memory-bound layers gain little (see benchmarks/backends.py).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends.onnx_backend import INPUT_NAME, META_KEY, OnnxBackend, OnnxMeta, read_onnx_meta
from ..checkpoint import atomic_write
from .errors import ExportError


def calibration_reader(images: np.ndarray):
    """A `CalibrationDataReader` feeding `(N, 3, H, W)` frames one at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(images[i:i + 1] for i in range(len(images)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(({INPUT_NAME: row} for row in self.rows), None)

    return FrameReader()


def _quantize(fp32: Path, tmp: str, images: np.ndarray, meta: OnnxMeta) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        # ORT's recommended pre-pass: shape inference + graph optimisation (folds
        # batch norm into the convs), so calibration sees the graph that will run.
        prepared = str(Path(scratch) / "prepared.onnx")
        quant_pre_process(str(fp32), prepared, skip_symbolic_shape=False)
        quantize_static(prepared, tmp, calibration_reader(images), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    proto = onnx.load(tmp)
    del proto.metadata_props[:]  # the quantiser keeps only some props; write ours back
    proto.metadata_props.add(key=META_KEY, value=dataclasses.replace(meta, precision="int8").to_json())
    onnx.save(proto, tmp)


def quantize_int8(fp32: str | Path, out: str | Path, images: np.ndarray) -> Path:
    """Quantise an exported FP32 file, calibrated on `images` `(N, 3, H, W) float32`."""
    fp32, out = Path(fp32), Path(out)
    meta = read_onnx_meta(fp32)
    try:
        return atomic_write(out, lambda tmp: _quantize(fp32, tmp, images, meta))
    except (ValueError, RuntimeError) as error:
        raise ExportError(f"INT8 quantisation failed: {error}") from None


def seconds_per_frame(backends: list[OnnxBackend], images: np.ndarray, repeats: int = 5) -> list[float]:
    """Median seconds per frame of each backend, runs interleaved so that load
    from other processes on a shared CPU hits every backend alike."""
    for backend in backends:
        backend.logits(images)  # warm-up: first runs allocate and pick kernels
    times: list[list[float]] = [[] for _ in backends]
    for _ in range(repeats):
        for backend, series in zip(backends, times):
            start = time.perf_counter()
            backend.logits(images)
            series.append((time.perf_counter() - start) / len(images))
    return [float(np.median(series)) for series in times]


@dataclass(frozen=True)
class Int8Report:
    fp32_s: float           # seconds per frame
    int8_s: float
    agreement: float        # argmax agreement with FP32 on the check frames
    miou: tuple[float, float] | None = None  # (FP32, INT8) val mIoU when CamVid was given

    def summary(self) -> str:
        text = (f"{self.fp32_s / self.int8_s:.2f}x FP32 speed ({self.int8_s * 1e3:.1f} vs "
                f"{self.fp32_s * 1e3:.1f} ms/frame); argmax agreement with FP32 {self.agreement:.2%}")
        if self.miou:
            text += f"; val mIoU {self.miou[1]:.1%} vs FP32 {self.miou[0]:.1%}"
        return text


def compare_int8(fp32: Path, int8: Path, images: np.ndarray, data: str | Path | None = None) -> Int8Report:
    """Speed and agreement of the INT8 file against its FP32 source (mIoU with `data`)."""
    from .evaluate import evaluate_miou

    backends = [OnnxBackend(fp32, device="cpu"), OnnxBackend(int8, device="cpu")]
    fp32_s, int8_s = seconds_per_frame(backends, images[:1])
    agreement = float((backends[0].predict(images) == backends[1].predict(images)).mean())
    miou = None
    if data is not None:
        miou = (evaluate_miou(backends[0], data), evaluate_miou(backends[1], data))
    return Int8Report(fp32_s, int8_s, agreement, miou)
