"""ONNX → TensorRT engine with the TensorRT 10 Python API, plus its JSON sidecar.

One optimisation profile: batch min 1, opt = max = `--batch` (the runner
fills whole batches; the last, shorter one runs as it is), H x W fixed at the
stream's shape: what `run --aspect keep` feeds the model for the footage given
to `export --calib` (or --height/--width), so kernels are tuned for exactly it;
a stream of another shape is letterboxed into it, with a warning. A timing
cache per GPU and TensorRT version makes rebuilds take seconds instead of
minutes; a cache TensorRT rejects (another GPU) is replaced by a fresh one.

FP16: an FP16 ONNX (float16 input) is built as a strongly typed network, the
way TensorRT recommends since 10.12 (BuilderFlag.FP16 is deprecated there and
gone in 11); an FP32 ONNX is built weakly typed with BuilderFlag.FP16 where the
installed TensorRT still has it.

The engine and its sidecar are written side by side under temporary names
and renamed sidecar first: `find_engines` never sees an engine without one.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..backends.onnx_backend import INPUT_NAME, OUTPUT_NAME, OnnxMeta
from ..backends.tensorrt_backend import (
    EngineSidecar,
    create,
    current_env,
    engine_file_name,
    engine_info,
    gpu_slug,
    import_tensorrt,
    sidecar_path,
    trt_logger,
)
from ..checkpoint import atomic_write
from .errors import ExportError


def onnx_is_fp16(onnx_path: Path) -> bool:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def _parse(trt, builder, logger, onnx_path: Path, strongly_typed: bool):
    # TensorRT 10: explicit batch is the only mode; strong typing is the one flag we may set.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    return network, parser  # the parser must outlive the build: it owns the weights


def _precision_flags(trt, config, precision: str, strongly_typed: bool) -> None:
    if precision != "fp16" or strongly_typed:  # a strongly typed network takes its types from the ONNX
        return
    if not hasattr(trt.BuilderFlag, "FP16"):
        raise ExportError(f"TensorRT {trt.__version__} builds FP16 only from an FP16 ONNX (strongly typed); "
                          "this ONNX is FP32")
    config.set_flag(trt.BuilderFlag.FP16)  # weak typing: TensorRT may pick FP16 kernels layer by layer


def attach_timing_cache(config, cache: bytes, log: Callable[[str], None]) -> None:
    """Use the saved cache; when TensorRT rejects it (another GPU or version), a fresh one."""
    # ignore_mismatch=False: a cache from another device is rejected, not silently misused
    if cache and config.set_timing_cache(config.create_timing_cache(cache), False):
        return
    if cache:
        log("TensorRT rejected the saved timing cache (built on another GPU or version); starting a fresh one")
    if not config.set_timing_cache(config.create_timing_cache(b""), False):
        log("TensorRT refused a timing cache; building without one")


def _config(trt, builder, precision: str, batch: int, size: tuple[int, int], workspace_gib: float, cache: bytes,
            strongly_typed: bool, log: Callable[[str], None]):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    _precision_flags(trt, config, precision, strongly_typed)
    profile = builder.create_optimization_profile()
    height, width = size
    profile.set_shape(INPUT_NAME, (1, 3, height, width), (batch, 3, height, width), (batch, 3, height, width))
    config.add_optimization_profile(profile)
    attach_timing_cache(config, cache, log)
    return config


def write_engine_and_sidecar(engine_path: Path, plan, sidecar: EngineSidecar) -> None:
    """Both files or neither: temporaries first, then the sidecar renamed, then the engine."""
    temporaries = []
    try:
        for data, target in ((sidecar.to_json().encode(), sidecar_path(engine_path)), (memoryview(plan), engine_path)):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temporaries.append((tmp, target))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
        for tmp, target in temporaries:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in temporaries:
            Path(tmp).unlink(missing_ok=True)
        raise


def save_timing_cache(config, cache_path: Path, log: Callable[[str], None]) -> None:
    cache = config.get_timing_cache()
    if cache is None:  # TensorRT can return None (no cache attached); the engine is fine without it
        log("TensorRT returned no timing cache; the next build starts without one")
        return
    atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(memoryview(cache.serialize())))


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
    logger = trt_logger(trt)
    builder = create(trt, "Builder")
    strongly_typed = onnx_is_fp16(Path(onnx_path))
    network, _parser = _parse(trt, builder, logger, Path(onnx_path), strongly_typed)
    config = _config(trt, builder, precision, batch, size, workspace_gib,
                     cache_path.read_bytes() if cache_path.is_file() else b"", strongly_typed, log)
    log(f"TensorRT {env.trt_version}: building {precision.upper()} engine for {env.gpu_name}, batch 1..{batch}, "
        f"{size[0]}x{size[1]}{', strongly typed' if strongly_typed else ''} (minutes on first build; the timing "
        "cache speeds up later ones)")
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT messages above)")
    sidecar = EngineSidecar(env=env, precision=precision, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                            input_size=tuple(size), batch_range=(1, batch, batch), checkpoint=checkpoint,
                            onnx=str(onnx_path), info=engine_info(meta.info, size),
                            checkpoint_sha256=meta.source_sha256)
    write_engine_and_sidecar(engine_path, plan, sidecar)
    save_timing_cache(config, cache_path, log)
    log(f"TensorRT: saved {engine_path} ({engine_path.stat().st_size / 1e6:.1f} MB) "
        f"in {time.perf_counter() - start:.1f} s, sidecar {sidecar_path(engine_path).name}")
    return engine_path


__all__ = ["build_engine"]
