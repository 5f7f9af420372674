"""ONNX → TensorRT engine with the TensorRT 10 Python API, plus its JSON sidecar.

One optimisation profile: batch min 1, opt = max = `--batch` (the runner
fills whole batches and pads only the last one), H x W fixed at the stream's
shape: what `run --aspect keep` feeds the model for the footage given to
`export --calib` (or --height/--width), so kernels are tuned for exactly it;
a stream of another shape is letterboxed into it, with a warning. A timing cache
per GPU and TensorRT version makes rebuilds take seconds instead of minutes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..backends.onnx_backend import INPUT_NAME, OUTPUT_NAME, OnnxMeta
from ..backends.tensorrt_backend import (
    EngineSidecar,
    current_env,
    engine_file_name,
    gpu_slug,
    import_tensorrt,
    sidecar_path,
)
from ..checkpoint import atomic_write
from .onnx_export import ExportError


def _parse(trt, builder, logger, onnx_path: Path):
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode, no flag needed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    return network, parser  # the parser must outlive the build: it owns the weights


def _config(trt, builder, precision: str, batch: int, size: tuple[int, int], workspace_gib: float, cache: bytes):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        # Weak typing: TensorRT may pick FP16 kernels layer by layer. TensorRT 11
        # removed this flag (strong typing only); we pin 10.x, so say so clearly.
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ExportError(f"TensorRT {trt.__version__} has no FP16 builder flag; streamseg targets TensorRT 10 "
                              "(`pip install 'tensorrt>=10,<11'`)")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    height, width = size
    profile.set_shape(INPUT_NAME, (1, 3, height, width), (batch, 3, height, width), (batch, 3, height, width))
    config.add_optimization_profile(profile)
    # ignore_mismatch=False: a cache from another device/version is rejected, not silently misused
    config.set_timing_cache(config.create_timing_cache(cache), False)
    return config


def build_engine(onnx_path: str | Path, meta: OnnxMeta, out_dir: str | Path, *, name: str, batch: int,
                 size: tuple[int, int], precision: str = "fp16", workspace_gib: float = 4.0,
                 checkpoint: str = "", log: Callable[[str], None] = print) -> Path:
    """Compile `onnx_path`; returns the engine path (sidecar `<engine>.json` beside it).

    Raises `BackendError` without TensorRT or a CUDA device, before writing anything.
    """
    trt = import_tensorrt()
    env = current_env()
    out_dir = Path(out_dir)
    engine_path = out_dir / engine_file_name(name, precision, batch, env)
    cache_path = out_dir / f"timing.{gpu_slug(env.gpu_name)}.trt{env.trt_version}.cache"
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, Path(onnx_path))
    config = _config(trt, builder, precision, batch, size, workspace_gib,
                     cache_path.read_bytes() if cache_path.is_file() else b"")
    log(f"TensorRT {env.trt_version}: building {precision.upper()} engine for {env.gpu_name}, batch 1..{batch}, "
        f"{size[0]}x{size[1]} (minutes on first build; the timing cache speeds up later ones)")
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT messages above)")
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(memoryview(plan)))
    atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(memoryview(config.get_timing_cache().serialize())))
    sidecar = EngineSidecar(env=env, precision=precision, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                            input_size=tuple(size), batch_range=(1, batch, batch), checkpoint=checkpoint,
                            onnx=str(onnx_path), info=meta.info,
                            checkpoint_sha256=meta.source_sha256)
    atomic_write(sidecar_path(engine_path), lambda tmp: Path(tmp).write_text(sidecar.to_json()))
    log(f"TensorRT: saved {engine_path} ({engine_path.stat().st_size / 1e6:.1f} MB) "
        f"in {time.perf_counter() - start:.1f} s, sidecar {sidecar_path(engine_path).name}")
    return engine_path


__all__ = ["build_engine"]
