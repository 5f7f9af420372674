"""Which backend runs a model: `load_backend`, above both `backends/` and `export/`.

`auto` prefers, in order: a usable TensorRT engine → torch on CUDA → ONNX
Runtime on CPU (exporting and caching the ONNX in `engines/` on first use)
→ torch on CPU. The reason string says why the winner won.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .backends import Backend, BackendError, OnnxBackend, TensorRTBackend, TorchBackend, pick_device
from .backends.tensorrt_backend import check_sidecar, current_env, find_engines, read_sidecar
from .checkpoint import file_sha256, load_checkpoint, model_name, resolve_checkpoint
from .export.run import cache_onnx

BACKENDS = ("auto", "torch", "onnx", "tensorrt")


def usable_engine(model: str, checkpoint: Path, batch: int, engines_dir: str | Path) -> tuple[Path | None, str]:
    """The newest engine for `model` that runs here at `batch`, or None and why not."""
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
    return device != "cpu" and torch.cuda.is_available()


def _from_file(path: Path, backend: str, device: str) -> tuple[Backend, str]:
    """An exported file decides its own backend."""
    kind = "onnx" if path.suffix.lower() == ".onnx" else "tensorrt"
    if backend not in ("auto", kind):
        raise BackendError(f"{path.name} is a{'n ONNX file' if kind == 'onnx' else ' TensorRT engine'}; "
                           f"it runs on the {kind} backend, not {backend!r}")
    if kind == "onnx":
        chosen: Backend = OnnxBackend(path, device)
        return chosen, f"{path.name} is an ONNX file → ONNX Runtime on {chosen.device}"
    return TensorRTBackend(path, device), f"{path.name} is a TensorRT engine"


def _onnx_for(model: str, checkpoint: Path, engines_dir: str | Path, device: str = "cpu") -> OnnxBackend:
    return OnnxBackend(cache_onnx(checkpoint, model_name(model), engines_dir), device=device)


def _auto(model: str, checkpoint: Path, device: str, batch: int, engines_dir: str | Path) -> tuple[Backend, str]:
    why_not_trt = "CPU asked for"
    if device != "cpu":
        engine, why_not_trt = usable_engine(model, checkpoint, batch, engines_dir)
        if engine is not None:
            try:
                return TensorRTBackend(engine, device), f"TensorRT engine {engine} matches this GPU and TensorRT"
            except BackendError as error:  # e.g. a truncated file: fall back, and say why
                why_not_trt = str(error)
    if _cuda_ok(device):
        net, info = load_checkpoint(checkpoint)
        return TorchBackend(net, info, device), f"torch on CUDA: {why_not_trt}"
    try:
        onnx = _onnx_for(model, checkpoint, engines_dir)
        why = "CPU requested" if device == "cpu" else "no CUDA device"
        return onnx, f"{why}; ONNX Runtime is faster than torch on CPU; using {onnx.path}"
    except (BackendError, OSError, RuntimeError, ValueError) as error:
        net, info = load_checkpoint(checkpoint)
        return TorchBackend(net, info, "cpu"), f"torch on CPU: ONNX Runtime not usable ({error})"


def load_backend(model: str, backend: str = "auto", device: str = "auto", *, batch: int = 1,
                 engines_dir: str | Path = "engines") -> tuple[Backend, str]:
    """Build the backend for a preset name, a `.safetensors`, `.onnx` or `.engine`
    file; returns it and a one-line reason for the choice."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    pick_device(device)  # fail fast on a CUDA device this machine lacks
    path = Path(model)
    if path.suffix.lower() in (".onnx", ".engine"):
        return _from_file(path, backend, device)
    checkpoint = resolve_checkpoint(model)
    if backend == "auto":
        return _auto(model, checkpoint, device, batch, engines_dir)
    if backend == "onnx":
        chosen = _onnx_for(model, checkpoint, engines_dir, device)
        return chosen, f"onnx backend requested ({chosen.path})"
    if backend == "tensorrt":
        engine, why_not = usable_engine(model, checkpoint, batch, engines_dir)
        if engine is None:
            raise BackendError(f"tensorrt backend requested, but {why_not}")
        return TensorRTBackend(engine, device), f"tensorrt backend requested ({engine})"
    net, info = load_checkpoint(checkpoint)
    chosen = TorchBackend(net, info, device)
    return chosen, f"torch backend requested ({chosen.device})"
