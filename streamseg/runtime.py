"""Which backend runs a model: `load_backend`, above both `backends/` and `export/`.

`auto` prefers, in order: a usable TensorRT engine → torch on CUDA → the
fastest CPU runtime for the exported ONNX (ONNX Runtime / OpenVINO, each
precision the CPU has, timed once on this machine and cached: see
`backends.autochoice`) → torch on CPU. The ONNX file is the user's own
`engines/NAME.onnx` when `streamseg export` made it from these weights, else an
automatic export in the per-user cache (`streamseg.cache`), made on first use;
`run` never writes into `engines/`. The reason string says why the winner won.

torch is imported only where a choice needs it (a CUDA device, the torch or
TensorRT backend, an export): running a cached or given ONNX file with ONNX
Runtime or OpenVINO keeps torch out of the process.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .backends import Backend, BackendError, OnnxBackend, OpenVinoBackend
from .backends.autochoice import choose_cpu_backend
from .backends.onnx_backend import stale_reason
from .backends.openvino_backend import import_openvino
from .cache import export_path, writable_exports_dir
from .checkpoint import file_sha256, load_checkpoint, model_name, resolve_checkpoint
from .threads import plan_threads

BACKENDS = ("auto", "torch", "onnx", "openvino", "tensorrt")


def nvidia_gpu_possible() -> bool:
    """False when this machine certainly has no NVIDIA GPU (no driver device nodes),
    so that CPU-only machines never import torch just to ask CUDA."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia",
                                           "/dev/nvhost-ctrl-gpu", "/dev/dxg"))  # desktop, Jetson, WSL


def usable_engine(model: str, checkpoint: Path, batch: int, engines_dir: str | Path) -> tuple[Path | None, str]:
    """The newest engine for `model` that runs here at `batch`, or None and why not."""
    from .backends.tensorrt_backend import check_sidecar, current_env, find_engines, read_sidecar

    try:
        env = current_env()
    except BackendError as error:
        return None, str(error)
    candidates = find_engines(engines_dir, model_name(model))
    if not candidates:
        return None, (f"no TensorRT engine for {model_name(model)} in {engines_dir}/ (build one with "
                      f"`streamseg export --model {model} --fp16 --batch {batch}`)")
    sha, problems = file_sha256(checkpoint), []
    for path in candidates:
        try:
            sidecar = read_sidecar(path)
            check_sidecar(sidecar, env, path)
        except BackendError as error:
            problems.append(str(error))
            continue
        if sidecar.checkpoint_sha256 and sidecar.checkpoint_sha256 != sha:
            problems.append(f"{path.name} was built from other weights than {checkpoint}; rebuild it")
        elif sidecar.batch_range[2] < batch:
            problems.append(f"{path.name} accepts batches up to {sidecar.batch_range[2]}, not {batch}")
        else:
            return path, ""
    return None, problems[0]


def _cuda_ok(device: str) -> bool:
    if device == "cpu" or not nvidia_gpu_possible():
        return False
    import torch

    return torch.cuda.is_available()


def _tensorrt(engine: Path, device: str) -> Backend:
    from .backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(engine, device)


def _from_file(path: Path, backend: str, device: str, batch: int) -> tuple[Backend, str]:
    """An exported file decides its own backend (an ONNX file also runs in OpenVINO)."""
    kind = "onnx" if path.suffix.lower() == ".onnx" else "tensorrt"
    allowed = ("auto", "onnx", "openvino") if kind == "onnx" else ("auto", "tensorrt")
    if backend not in allowed:
        raise BackendError(f"{path.name} is a{'n ONNX file' if kind == 'onnx' else ' TensorRT engine'}; "
                           f"it runs on the {' or '.join(allowed[1:])} backend, not {backend!r}")
    if backend == "openvino":
        chosen: Backend = OpenVinoBackend(path, device)
        return chosen, "openvino backend requested"
    if kind == "onnx" and backend == "auto" and not _cuda_ok(device):
        return choose_cpu_backend(path, threads=plan_threads().inference, batch=batch, log=_stderr)
    if kind == "onnx":
        chosen = OnnxBackend(path, device)
        return chosen, f"{path.name} is an ONNX file → ONNX Runtime on {chosen.device}"
    return _tensorrt(path, device), f"{path.name} is a TensorRT engine"


def onnx_file(model: str, checkpoint: Path, engines_dir: str | Path,
              log: Callable[[str], None] | None = None) -> Path:
    """The user's `engines_dir/NAME.onnx` when it is a current export of `checkpoint`,
    else the cached automatic export, exported first when missing."""
    log = log or _stderr
    name = model_name(model)
    mine, cached = Path(engines_dir) / f"{name}.onnx", export_path(name, file_sha256(checkpoint))
    if mine.is_file():
        why = stale_reason(mine, checkpoint)
        if not why:
            return mine
        log(f"{mine} {why}; using the automatic export {cached} instead (yours is left as it is; "
            f"`streamseg export --model {model} --overwrite` updates it)")
    if cached.is_file() and not stale_reason(cached, checkpoint):
        return cached
    writable_exports_dir(model, name)  # a read-only cache: say so before torch is imported
    from .export.run import cache_onnx  # export pulls in torch and the exporter: only when needed

    return cache_onnx(checkpoint, cached, log)


def _torch(checkpoint: Path, device: str) -> Backend:
    import torch

    from .backends.torch_backend import TorchBackend

    net, info = load_checkpoint(checkpoint)
    backend = TorchBackend(net, info, device, log=_stderr)  # its precision check on CUDA
    if not backend.cuda:  # torch's pool would take every core of the node, not this process's share (fleet)
        torch.set_num_threads(plan_threads().inference)
    return backend


def _auto(model: str, checkpoint: Path, device: str, batch: int, engines_dir: str | Path) -> tuple[Backend, str]:
    why_not_trt = "CPU asked for" if device == "cpu" else "no NVIDIA GPU"
    if device != "cpu" and nvidia_gpu_possible():
        engine, why_not_trt = usable_engine(model, checkpoint, batch, engines_dir)
        if engine is not None:
            try:
                return _tensorrt(engine, device), f"TensorRT engine {engine} matches this GPU and TensorRT"
            except BackendError as error:  # e.g. a truncated file: fall back, and say why
                why_not_trt = str(error)
    if _cuda_ok(device):
        return _torch(checkpoint, device), f"torch on CUDA: {why_not_trt}"
    try:
        path = onnx_file(model, checkpoint, engines_dir)
    except (BackendError, OSError, RuntimeError, ValueError) as error:
        return _torch(checkpoint, "cpu"), f"torch on CPU: no ONNX export ({error})"
    return choose_cpu_backend(path, threads=plan_threads().inference, batch=batch, log=_stderr)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_backend(model: str, backend: str = "auto", device: str = "auto", *, batch: int = 1,
                 engines_dir: str | Path = "engines") -> tuple[Backend, str]:
    """Build the backend for a preset name, a `.safetensors`, `.onnx` or `.engine`
    file; returns it and a one-line reason for the choice."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if device not in ("auto", "cpu"):
        from .backends.torch_backend import pick_device

        pick_device(device)  # fail fast on a CUDA device this machine lacks
    path = Path(model)
    if path.suffix.lower() in (".onnx", ".engine"):
        return _from_file(path, backend, device, batch)
    checkpoint = resolve_checkpoint(model)
    if backend == "auto":
        return _auto(model, checkpoint, device, batch, engines_dir)
    if backend == "onnx":
        chosen: Backend = OnnxBackend(onnx_file(model, checkpoint, engines_dir), device=device)
        return chosen, f"onnx backend requested ({chosen.path})"
    if backend == "openvino":
        import_openvino()  # not installed: say so before exporting anything
        chosen = OpenVinoBackend(onnx_file(model, checkpoint, engines_dir), device)
        return chosen, f"openvino backend requested ({chosen.path})"
    if backend == "tensorrt":
        engine, why_not = usable_engine(model, checkpoint, batch, engines_dir)
        if engine is None:
            raise BackendError(f"tensorrt backend requested, but {why_not}")
        return _tensorrt(engine, device), f"tensorrt backend requested ({engine})"
    chosen = _torch(checkpoint, device)
    return chosen, f"torch backend requested ({chosen.device})"
