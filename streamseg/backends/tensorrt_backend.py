"""TensorRT backend (TensorRT 10 tensor-address API), and the engine's JSON sidecar.

An engine only runs on the TensorRT version and GPU model that built it, so
its file name carries precision, max batch, GPU and TensorRT version
(`deeplab.fp16.b4.nvidia-h100-80gb-hbm3.trt10.3.0.engine`) and a sidecar
`<engine>.json` says the same plus the model's self-description. The engine
file itself stays a plain serialised plan, loadable by `trtexec` and Triton.
I/O buffers are torch CUDA tensors (no pycuda), run on a private CUDA stream.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..checkpoint import CheckpointError, ModelInfo
from .base import Backend, BackendError
from .onnx_backend import INPUT_NAME, LABELS_NAME, OUTPUT_NAME

_LOGGER = None  # one trt.Logger per process, as TensorRT expects; shared by builders and runtimes


def install_hint() -> str:
    """The TensorRT wheel that matches torch's CUDA: plain `tensorrt` resolves to a
    CUDA 13 build, which an older driver cannot load (issue 13)."""
    cuda = (torch.version.cuda or "").split(".")[0]
    extra = f"tensorrt-cu{cuda}" if cuda in ("12", "13") else "tensorrt-cu12"
    return f"install TensorRT 10 for torch's CUDA {torch.version.cuda or '?'}: pip install 'streamseg[{extra}]'"


def trt_logger(trt):
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def create(trt, kind: str):
    """`trt.Builder` / `trt.Runtime`, or a one-line error: with a wheel built for a newer
    CUDA than the driver has, the constructor raises a pybind TypeError or returns None."""
    try:
        made = getattr(trt, kind)(trt_logger(trt))
    except (TypeError, RuntimeError) as error:
        made, why = None, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    else:
        why = "it returned None"
    if made is None:
        raise BackendError(f"TensorRT {trt.__version__} cannot create a {kind} here ({why}); the wheel probably "
                           f"needs a newer CUDA driver: {install_hint()}")
    return made


@dataclass(frozen=True)
class EngineEnv:
    """Where an engine was built, or where we are about to run one."""
    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class EngineSidecar:
    """The JSON written next to every engine (`<engine>.json`)."""
    env: EngineEnv
    precision: str                     # "fp16" (or "fp32")
    input_name: str
    output_name: str
    input_size: tuple[int, int]        # (H, W) the engine was built for
    batch_range: tuple[int, int, int]  # optimisation profile (min, opt, max)
    checkpoint: str                    # the checkpoint the ONNX was exported from
    onnx: str
    info: ModelInfo
    checkpoint_sha256: str = ""        # lets `load_backend` skip an engine built from older weights
    version: str = __version__

    def to_json(self) -> str:
        data = asdict(self)
        data["info"] = json.loads(self.info.to_json())
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> EngineSidecar:
        data = json.loads(text)
        env = data.pop("env")
        return cls(**{**data, "env": EngineEnv(env["trt_version"], env["gpu_name"],
                                               tuple(env["compute_capability"])),
                      "info": ModelInfo.from_json(json.dumps(data["info"])),
                      "input_size": tuple(data["input_size"]), "batch_range": tuple(data["batch_range"])})


def sidecar_path(engine: str | Path) -> Path:
    return Path(engine).with_suffix(".json")


def read_sidecar(engine: str | Path) -> EngineSidecar:
    path = sidecar_path(engine)
    if not path.is_file():
        raise BackendError(f"{engine} has no sidecar {path.name}; rebuild it with `streamseg export --fp16`")
    try:
        return EngineSidecar.from_json(path.read_text())
    except (KeyError, TypeError, ValueError, CheckpointError) as error:
        raise BackendError(f"{path}: bad engine sidecar ({error}); rebuild with `streamseg export --fp16`") from None


def gpu_slug(gpu_name: str) -> str:
    """`NVIDIA H100 80GB HBM3` → `nvidia-h100-80gb-hbm3` (safe in file names)."""
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")


def engine_file_name(name: str, precision: str, batch: int, env: EngineEnv) -> str:
    return f"{name}.{precision}.b{batch}.{gpu_slug(env.gpu_name)}.trt{env.trt_version}.engine"


def rebuild_hint(sidecar: EngineSidecar) -> str:
    source = sidecar.checkpoint or sidecar.info.name
    return (f"rebuild it here with `streamseg export --model {source} --fp16 --batch {sidecar.batch_range[2]} "
            f"--height {sidecar.input_size[0]} --width {sidecar.input_size[1]}`")


def check_sidecar(sidecar: EngineSidecar, env: EngineEnv, engine: str | Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU: it would fail
    to deserialise, or worse, run with kernels tuned for another device."""
    built = sidecar.env
    problems = []
    if built.trt_version != env.trt_version:
        problems.append(f"TensorRT {built.trt_version}, this machine has {env.trt_version}")
    if tuple(built.compute_capability) != tuple(env.compute_capability) or built.gpu_name != env.gpu_name:
        problems.append(f"{built.gpu_name} (sm{''.join(map(str, built.compute_capability))}), this GPU is "
                        f"{env.gpu_name} (sm{''.join(map(str, env.compute_capability))})")
    if problems:
        raise BackendError(f"{Path(engine).name} was built for {' and '.join(problems)}; {rebuild_hint(sidecar)}")


def plan_batch(count: int, batch_range: tuple[int, ...]) -> int:
    """How many rows to run for `count` frames: pad up to the profile's minimum
    (a fixed-batch engine accepts only that size); refuse more than the maximum."""
    low, high = batch_range[0], batch_range[-1]
    if count < 1 or count > high:
        raise BackendError(f"this engine accepts batches of {low}..{high} frames, got {count}; "
                           f"rebuild with `streamseg export --fp16 --batch {max(count, 1)}` or run with --batch {high}")
    return max(count, low)


def tensorrt_missing() -> str:
    """Why TensorRT cannot run here ("" when it can), without importing it."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "no tensorrt package installed"
    return "" if torch.cuda.is_available() else "no CUDA device"


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(f"the TensorRT backend needs the tensorrt package: {install_hint()}") from None
    return trt


def current_env(device: torch.device | None = None) -> EngineEnv:
    """TensorRT version and GPU of this machine (raises without either)."""
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs an NVIDIA GPU with CUDA, and none is available here")
    device = device or torch.device("cuda")
    return EngineEnv(trt.__version__, torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device))


def find_engines(engines_dir: str | Path, name: str) -> list[Path]:
    """Engines in `engines_dir` made from model `name`, newest first."""
    folder = Path(engines_dir)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{name}.*.engine"), key=lambda p: p.stat().st_mtime, reverse=True)


def engine_info(info: ModelInfo, input_size: tuple[int, int]) -> ModelInfo:
    return info if tuple(info.input_size) == tuple(input_size) else replace(info, input_size=tuple(input_size))


def torch_dtype(trt, trt_dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=trt.nptype(trt_dtype))).dtype


class TensorRTBackend(Backend):
    """Runs a serialised engine; pads the last partial batch up to the profile minimum."""
    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        trt = import_tensorrt()
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"engine not found: {path}")
        self.torch_device = torch.device("cuda" if device in ("auto", "cuda") else device)
        if self.torch_device.type != "cuda":
            raise BackendError(f"TensorRT runs on CUDA devices only, not {device!r}")
        self.sidecar = read_sidecar(self.path)
        check_sidecar(self.sidecar, current_env(self.torch_device), self.path)
        self.device = f"{self.torch_device} ({self.sidecar.env.gpu_name})"
        with torch.cuda.device(self.torch_device):
            self.runtime = create(trt, "Runtime")  # kept: the engine must not outlive its runtime
            self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise BackendError(f"TensorRT could not deserialise {self.path}; {rebuild_hint(self.sidecar)}")
            self.context = self.engine.create_execution_context()
            # A private stream: inference overlaps with whatever the caller runs on the default stream.
            self.stream = torch.cuda.Stream(self.torch_device)
        self._bind_io(trt)
        # The engine's own input size: one built with --height/--width runs at that size,
        # whatever the checkpoint was evaluated at; the preprocessor reads it from `info`.
        self.info = engine_info(self.sidecar.info, self.input_size)
        self._pinned: dict[tuple, torch.Tensor] = {}

    def _bind_io(self, trt) -> None:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        # Engines from current exports have `logits` and the in-graph `labels`; older ones only `logits`.
        if len(inputs) != 1 or OUTPUT_NAME not in outputs or not set(outputs) <= {OUTPUT_NAME, LABELS_NAME}:
            raise BackendError(f"{self.path.name}: expected input {INPUT_NAME!r} and outputs {OUTPUT_NAME!r}"
                               f"(+{LABELS_NAME!r}), found {inputs} / {outputs}")
        self.input_name, self.outputs = inputs[0], outputs
        self.input_dtype = torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        self.dtypes = {name: torch_dtype(trt, self.engine.get_tensor_dtype(name)) for name in outputs}
        self.has_labels = LABELS_NAME in outputs
        low, opt, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.batch_range = (low[0], opt[0], high[0])
        self.min_batch, self.max_batch = low[0], high[0]
        self.input_size = (int(high[2]), int(high[3]))
        if tuple(low)[2:] == tuple(high)[2:]:  # built for one stream shape (`streamseg export --fp16`)
            self.fixed_size = self.input_size

    def _host(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A reused page-locked buffer: copies from it to the GPU are truly asynchronous."""
        key = (shape, dtype)
        if key not in self._pinned:
            self._pinned[key] = torch.empty(shape, dtype=dtype, pin_memory=True)
        return self._pinned[key]

    def _run(self, batch: np.ndarray) -> dict[str, torch.Tensor]:
        """`(N, 3, H, W)` → every output on the GPU (`logits`, and `labels` when the
        engine has it), queued on `self.stream`. TensorRT needs an address for each."""
        count = len(batch)
        rows = plan_batch(count, self.batch_range)
        host = self._host((rows, *batch.shape[1:]), self.input_dtype)
        host[:count].copy_(torch.from_numpy(np.ascontiguousarray(batch)))
        host[count:].zero_()
        with torch.cuda.stream(self.stream):
            images = host.to(self.torch_device, non_blocking=True)
            if not self.context.set_input_shape(self.input_name, tuple(images.shape)):
                raise BackendError(f"{self.path.name} rejects input shape {tuple(images.shape)}; it was built for "
                                   f"{self.sidecar.input_size[0]}x{self.sidecar.input_size[1]}, "
                                   f"batch {self.batch_range[0]}..{self.batch_range[2]}")
            self.context.set_tensor_address(self.input_name, images.data_ptr())
            results = {}
            for name in self.outputs:
                results[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name],
                                            device=self.torch_device)
                self.context.set_tensor_address(name, results[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError(f"TensorRT failed to run {self.path.name}")
        return {name: out[:count] for name, out in results.items()}

    def _fetch(self, result: torch.Tensor) -> np.ndarray:
        """Copy a device result to pinned host memory; the only sync point per batch."""
        with torch.cuda.stream(self.stream):
            host = self._host(tuple(result.shape), result.dtype)
            host.copy_(result, non_blocking=True)
        self.stream.synchronize()
        return host.numpy().copy()  # the pinned buffer is reused by the next batch

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.cuda.stream(self.stream):
            result = self._run(batch)[OUTPUT_NAME].float()
        return self._fetch(result)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        # argmax on the GPU (in the engine's graph, or by torch for older engines): only uint8 crosses PCIe
        with torch.cuda.stream(self.stream):
            outputs = self._run(batch)
            labels = outputs[LABELS_NAME] if self.has_labels else outputs[OUTPUT_NAME].argmax(dim=1)
            labels = labels.to(torch.uint8)
        return self._fetch(labels)

    def describe(self) -> str:
        low, _, high = self.batch_range
        return (f"tensorrt {self.sidecar.precision.upper()} on {self.device}, TensorRT {self.sidecar.env.trt_version},"
                f" batch {low}..{high}, {self.path.name}")
