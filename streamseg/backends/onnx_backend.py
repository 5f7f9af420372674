"""ONNX Runtime backend, and the metadata an exported ONNX file carries.

`streamseg export` writes the model's self-description (`OnnxMeta`) into the
file's `metadata_props`, so `--model engines/deeplab.onnx` needs no other flag.
Exported files have two outputs: `logits` (evaluation, INT8 calibration, TTA)
and `labels`, the argmax over classes inside the graph as `(N, H, W) uint8`:
`predict` asks the runtime for `labels` only, so no float planes leave it and
no argmax runs in Python.
CPU execution provider here; CUDA / TensorRT providers when the installed
onnxruntime build has them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..checkpoint import CheckpointError, ModelInfo, file_sha256
from ..threads import plan_threads
from .base import Backend, BackendError

META_KEY = "streamseg"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
LABELS_NAME = "labels"  # (N, H, W) uint8 argmax over classes, computed in the graph


@dataclass(frozen=True)
class OnnxMeta:
    """What an exported file says about itself (stored as JSON under `streamseg`)."""
    info: ModelInfo
    batch_range: tuple[int, int]          # (min, max) the export was made and checked for
    input_size: tuple[int, int] | None    # (H, W), or None when height/width are dynamic
    source: str = ""                      # checkpoint it came from
    source_sha256: str = ""               # lets `load_backend` notice a stale cached export
    precision: str = "fp32"               # "fp32" or "int8"
    version: str = __version__            # streamseg version that wrote it

    def to_json(self) -> str:
        return json.dumps({"model_info": json.loads(self.info.to_json()), "batch_range": list(self.batch_range),
                           "input_size": list(self.input_size) if self.input_size else None,
                           "source": self.source, "source_sha256": self.source_sha256,
                           "precision": self.precision, "streamseg_version": self.version})

    @classmethod
    def from_json(cls, text: str) -> OnnxMeta:
        data = json.loads(text)
        size = data.get("input_size")
        return cls(info=ModelInfo.from_json(json.dumps(data["model_info"])),
                   batch_range=tuple(data["batch_range"]), input_size=tuple(size) if size else None,
                   source=data.get("source", ""), source_sha256=data.get("source_sha256", ""),
                   precision=data.get("precision", "fp32"), version=data.get("streamseg_version", ""))


def parse_meta(props: dict[str, str], path: str | Path) -> OnnxMeta:
    if META_KEY not in props:
        raise BackendError(f"{path} has no streamseg metadata; export it with `streamseg export`")
    try:
        return OnnxMeta.from_json(props[META_KEY])
    except (KeyError, TypeError, ValueError, CheckpointError) as error:
        raise BackendError(f"{path}: bad streamseg metadata ({error})") from None


def _load_header(path: str | Path):
    import onnx  # only the protobuf is needed; external data stays on disk

    try:
        return onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as error:
        raise BackendError(f"cannot read ONNX file {path}: {error}") from None
    except Exception as error:  # noqa: BLE001 — protobuf's DecodeError has no stable import path
        raise BackendError(f"{path} is not an ONNX file ({type(error).__name__})") from None


def read_onnx_meta(path: str | Path) -> OnnxMeta:
    """The metadata of an exported file, without loading the weights into a session."""
    return parse_meta({p.key: p.value for p in _load_header(path).metadata_props}, path)


def has_labels_output(path: str | Path) -> bool:
    """Whether the file computes `labels` in its graph (exports from before issue 13 do not)."""
    return any(output.name == LABELS_NAME for output in _load_header(path).graph.output)


def stale_reason(path: Path, checkpoint: Path) -> str:
    """"" when `path` is a current export of `checkpoint` (same weights' hash, any
    frame size, in-graph labels), else why not, as a phrase after the file name.
    Needs no torch: a current export runs with ONNX Runtime or OpenVINO alone."""
    try:
        meta = read_onnx_meta(path)
    except BackendError:
        return "is not a streamseg export"
    if meta.source_sha256 != file_sha256(checkpoint):
        return f"was exported from other weights than {checkpoint}"
    if meta.input_size is not None:
        return f"was exported for {meta.input_size[0]}x{meta.input_size[1]} frames only"
    if not has_labels_output(path):
        return "is from an older streamseg (no in-graph labels)"
    return ""


def pick_providers(device: str) -> tuple[list[str], str]:
    """Execution providers for `device` ('auto', 'cpu', 'cuda') → (providers, device name)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    # Not ORT's TensorRT provider: it silently builds an engine for minutes on first
    # use. TensorRT is an explicit `streamseg export --fp16` step and its own backend.
    gpu = [p for p in ("CUDAExecutionProvider",) if p in available]
    if device == "cpu" or (device == "auto" and not gpu):
        return ["CPUExecutionProvider"], "cpu"
    if not gpu:
        raise BackendError(f"device {device!r} asked for, but this onnxruntime build has only {', '.join(available)}; "
                           "install onnxruntime-gpu or use --device cpu")
    return gpu + ["CPUExecutionProvider"], "cuda"


def make_session(path: str | Path, device: str = "auto", threads: int | None = None):
    """An ONNX Runtime session with sensible threading; returns (session, device name)."""
    import onnxruntime as ort

    providers, device_name = pick_providers(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or plan_threads().inference
    options.inter_op_num_threads = 1  # our graphs are one chain; parallelism is inside the ops
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle ORT threads spin by default; in our pipeline that spinning steals the
    # cores decode/encode threads need (A/B on the 2-core box: +30-75% fps off).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # noqa: BLE001 — ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise BackendError(f"ONNX Runtime cannot load {path}: {str(error).splitlines()[0]}") from None
    return session, device_name


class OnnxBackend(Backend):
    """Runs an exported `.onnx` file (FP32 or INT8 QDQ) with ONNX Runtime."""
    name = "onnx"

    def __init__(self, path: str | Path, device: str = "auto", *, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX file not found: {path}")
        self.session, self.device = make_session(self.path, device, threads)
        self.meta = parse_meta(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.info = self.meta.info
        self.threads = threads or plan_threads().inference
        self.input_name = self.session.get_inputs()[0].name
        batch_dim, _, height, width = self.session.get_inputs()[0].shape
        self.max_batch = batch_dim if isinstance(batch_dim, int) else None  # symbolic: any batch
        self.min_batch = self.max_batch or 1
        if isinstance(height, int) and isinstance(width, int):  # a static export (`--static`)
            self.fixed_size = (height, width)
        # Files exported before the in-graph argmax have only `logits`; they still run.
        self.has_labels = LABELS_NAME in {output.name for output in self.session.get_outputs()}

    def _run(self, output: str, batch: np.ndarray) -> np.ndarray:
        if self.max_batch is not None and len(batch) != self.max_batch:
            raise BackendError(f"{self.path.name} was exported for batch {self.max_batch} only, got {len(batch)}; "
                               "re-export with `streamseg export --dynamic`")
        return self.session.run([output], {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._run(OUTPUT_NAME, batch)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.has_labels:  # only the label map is copied out of the runtime
            return self._run(LABELS_NAME, batch)
        return super().predict(batch)

    def describe(self) -> str:
        precision = "INT8" if self.meta.precision == "int8" else "FP32"
        providers = ",".join(p.replace("ExecutionProvider", "") for p in self.session.get_providers())
        return f"onnx {precision} on {self.device} ({providers}, {self.threads} threads) {self.path.name}"
