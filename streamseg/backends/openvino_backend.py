"""OpenVINO backend: runs the exported ONNX file (FP32 or the INT8 QDQ one) on the CPU.

Precision: bf16 only where the CPU computes it natively (AMX or AVX512_BF16;
about 2x ONNX Runtime FP32 on a Sapphire Rapids core, issue 13), f32
elsewhere. OpenVINO itself would pick bf16 on AMX machines silently, so the
hint is always set explicitly. An INT8 file runs its QDQ graph as INT8.

Hint: LATENCY. The pipeline keeps one inference request in flight (one
inference stage), and THROUGHPUT would split the cores into streams of which
a single synchronous request uses only one.

Shapes: OpenVINO runs static shapes faster than a dynamic batch (166 vs 191
ms/frame for deeplab on one AVX2 core), so the model is compiled once per
input shape it meets — in a run, the full batch and at most one last partial
one, at the stream's size (`--aspect keep` feeds 16:9 footage as 16:9). A file
exported with static height/width runs at that size only (`fixed_size`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cpu import native_bf16
from ..threads import plan_threads
from .base import Backend, BackendError
from .onnx_backend import LABELS_NAME, OUTPUT_NAME, read_onnx_meta

COMPILED_SHAPES = 4  # compiled models kept: a run meets two shapes; a long-lived caller may meet more
INSTALL_HINT = "pip install 'streamseg[openvino]' (or `pip install openvino`)"
PRECISIONS = ("auto", "fp32", "bf16")


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise BackendError(f"the openvino backend needs OpenVINO, which is not installed: {INSTALL_HINT}") from None
    return openvino


def pick_precision(asked: str, flags: frozenset[str] | None = None) -> str:
    """`auto` → bf16 with native bf16 arithmetic, else fp32; bf16 is refused where it would be emulated."""
    if asked not in PRECISIONS:
        raise BackendError(f"unknown OpenVINO precision {asked!r}; choose from {', '.join(PRECISIONS)}")
    native = native_bf16(flags)
    if asked == "bf16" and not native:
        raise BackendError("bf16 needs a CPU with AMX or AVX512_BF16 (not in this CPU's flags); use fp32")
    if asked == "auto":
        return "bf16" if native else "fp32"
    return asked


class OpenVinoBackend(Backend):
    """Runs an exported `.onnx` file with OpenVINO on the CPU."""
    name = "openvino"

    def __init__(self, path: str | Path, device: str = "cpu", *, precision: str = "auto",
                 threads: int | None = None) -> None:
        ov = import_openvino()
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX file not found: {path}")
        if device not in ("auto", "cpu"):
            raise BackendError(f"the openvino backend runs on the CPU here, not {device!r}; use --device cpu")
        self.meta = read_onnx_meta(self.path)
        self.info, self.device = self.meta.info, "cpu"
        self.precision = pick_precision(precision)
        self.threads = threads or plan_threads().inference
        self.core = ov.Core()
        self.config = self._config(ov)
        model = self._read()
        height, width = list(model.inputs[0].get_partial_shape())[2:]
        if height.is_static and width.is_static:  # a `--static` export: one size only
            self.fixed_size = (height.get_length(), width.get_length())
        self.has_labels = any(LABELS_NAME in port.get_names() for port in model.outputs)
        self._requests: dict[tuple[int, int, int], tuple] = {}
        # compile now: a bad file fails here, not on the first frame
        self._request((1, *(self.fixed_size or self.info.input_size)))

    def _config(self, ov) -> dict:
        import openvino.properties as props
        import openvino.properties.hint as hints

        return {hints.performance_mode: hints.PerformanceMode.LATENCY,
                hints.inference_precision: ov.Type.bf16 if self.precision == "bf16" else ov.Type.f32,
                props.inference_num_threads: self.threads,
                # Pinned inference threads would fight the decode/encode threads for their cores.
                hints.enable_cpu_pinning: False}

    def _read(self):
        try:
            return self.core.read_model(str(self.path))
        except RuntimeError as error:
            raise BackendError(f"OpenVINO cannot read {self.path}: {str(error).strip().splitlines()[0]}") from None

    def _request(self, shape: tuple[int, int, int]) -> tuple:
        """(infer request, labels port, logits port) for `(N, H, W)` inputs, compiled on first use."""
        if shape not in self._requests:
            model = self._read()
            batch, height, width = shape
            model.reshape({model.inputs[0].get_any_name(): [batch, 3, height, width]})
            try:
                compiled = self.core.compile_model(model, "CPU", self.config)
            except RuntimeError as error:
                raise BackendError(f"OpenVINO cannot compile {self.path.name} for {batch}x3x{height}x{width}: "
                                   f"{str(error).strip().splitlines()[0]}") from None
            labels = compiled.output(LABELS_NAME) if self.has_labels else None
            if len(self._requests) >= COMPILED_SHAPES:
                del self._requests[next(iter(self._requests))]  # the oldest
            self._requests[shape] = (compiled.create_infer_request(), labels, compiled.output(OUTPUT_NAME))
        return self._requests[shape]

    def _infer(self, batch: np.ndarray, want_labels: bool) -> np.ndarray:
        size = tuple(batch.shape[2:])
        if self.fixed_size is not None and size != self.fixed_size:
            raise BackendError(f"{self.path.name} runs at {self.fixed_size[0]}x{self.fixed_size[1]} only, "
                               f"got {size[0]}x{size[1]}; re-export it with `streamseg export --dynamic`")
        request, labels, logits = self._request((len(batch), *size))
        port = labels if want_labels else logits
        # copy: the request's output buffer is overwritten by its next run
        return request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})[port].copy()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch, want_labels=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.has_labels:
            return self._infer(batch, want_labels=True)
        return super().predict(batch)

    def describe(self) -> str:
        precision = "INT8" if self.meta.precision == "int8" else self.precision.upper()
        return f"openvino {precision} on cpu (LATENCY, {self.threads} threads) {self.path.name}"
