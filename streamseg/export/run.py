"""`streamseg export` as a library call: checkpoint → ONNX (checked) → INT8 → TensorRT.

Every step logs what it wrote, how big, how long it took and how closely the
result agrees with PyTorch.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backends.base import labels_of
from ..backends.onnx_backend import OnnxMeta, read_onnx_meta, stale_reason
from ..backends.tensorrt_backend import TensorRTBackend, current_env, engine_file_name, sidecar_path, tensorrt_missing
from ..checkpoint import ModelInfo, file_sha256, load_checkpoint, model_name, resolve_checkpoint
from ..data import find_pairs
from ..preprocess import keep_size
from .engine import build_engine
from .errors import ExportError
from .frames import FrameSourceError, load_frames, to_batch
from .onnx_export import OnnxCheck, check_onnx, export_onnx

Log = Callable[[str], None]
CHECK_FRAMES = 4        # enough to cover the clip's scenes; keeps the check a few seconds on CPU
MIN_AGREEMENT = 0.995   # below this the export is reported as failing its check


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class ExportConfig:
    """One-to-one with `streamseg export`'s options."""
    model: str                               # preset name or .safetensors checkpoint
    out_dir: Path = Path("engines")
    name: str | None = None                  # file stem; default: preset name or checkpoint stem
    batch: int = 1                           # TensorRT profile max (and opt); ONNX batch is symbolic anyway
    size: tuple[int, int] | None = None      # (H, W); default: the model's input for `calib`'s frames (keep)
    dynamic: bool = True                     # symbolic height/width in the ONNX too
    opset: int = 17
    int8: bool = False
    fp16: bool = False
    calib: str | None = None                 # video or image folder; default: the sample clip
    calib_frames: int = 32                   # MinMax ranges settle within a few dozen frames
    data: str | None = None                  # CamVid folder: report INT8 val mIoU vs FP32
    workspace_gib: float = 4.0
    overwrite: bool = False                  # replace files a previous export wrote


@dataclass
class ExportResult:
    onnx: Path
    check: OnnxCheck
    files: list[Path] = field(default_factory=list)
    int8: Path | None = None
    engine: Path | None = None


def describe_file(path: Path) -> str:
    size = path.stat().st_size
    return f"{path} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"{path} ({size / 1e3:.1f} kB)"


def make_meta(info: ModelInfo, checkpoint: Path, batch: int, size: tuple[int, int], dynamic: bool) -> OnnxMeta:
    return OnnxMeta(info=info, batch_range=(1, batch), input_size=None if dynamic else size,
                    source=str(checkpoint), source_sha256=file_sha256(checkpoint))


def onnx_step(model: nn.Module, meta: OnnxMeta, path: Path, images: np.ndarray, *, opset: int, dynamic: bool,
              log: Log) -> OnnxCheck:
    start = time.perf_counter()
    export_onnx(model, meta, path, images[:1], opset=opset, dynamic=dynamic)
    seconds = time.perf_counter() - start
    check = check_onnx(path, model, images)
    log(f"ONNX: saved {describe_file(path)} in {seconds:.1f} s (opset {opset}, batch "
        f"{'dynamic' if not dynamic else 'and size dynamic'}); {check.summary()}")
    if check.agreement < MIN_AGREEMENT:
        log(f"WARNING: ONNX Runtime disagrees with PyTorch on {1 - check.agreement:.2%} of pixels")
    return check


def int8_step(config: ExportConfig, fp32: Path, images: np.ndarray, calib: np.ndarray, log: Log) -> Path:
    from .int8 import compare_int8, quantize_int8

    out = fp32.with_suffix(".int8.onnx")
    start = time.perf_counter()
    quantize_int8(fp32, out, calib)
    seconds = time.perf_counter() - start
    report = compare_int8(fp32, out, images, config.data)
    log(f"INT8: saved {describe_file(out)} in {seconds:.1f} s, calibrated on {len(calib)} frames; "
        f"{report.summary()}")
    return out


@torch.inference_mode()
def engine_step(config: ExportConfig, checkpoint: Path, model: nn.Module, onnx_path: Path, images: np.ndarray,
                name: str, size: tuple[int, int], log: Log) -> Path:
    missing = tensorrt_missing()
    if missing:
        raise ExportError(f"the --fp16 engine needs an NVIDIA GPU with TensorRT 10 ({missing}); {onnx_path} is "
                          f"written: build the engine on such a machine with `streamseg export --model "
                          f"{config.model} --fp16 --batch {config.batch}`")
    engine = build_engine(onnx_path, read_onnx_meta(onnx_path), config.out_dir, name=name, batch=config.batch,
                          size=size, workspace_gib=config.workspace_gib, checkpoint=str(checkpoint), log=log)
    trt_backend = TensorRTBackend(engine)
    rows = images[: config.batch]
    reference = labels_of(model.to("cpu").float().eval()(torch.from_numpy(rows)).numpy())
    log(f"TensorRT FP16 vs torch FP32 argmax agreement {(trt_backend.predict(rows) == reference).mean():.2%} "
        f"on {len(rows)} frames")
    return engine


def planned_files(config: ExportConfig, name: str) -> list[Path]:
    """What the export will write (TensorRT's timing cache aside: the tool's own, refreshed freely)."""
    out = Path(config.out_dir)
    files = [out / f"{name}.onnx"] + ([out / f"{name}.int8.onnx"] if config.int8 else [])
    if config.fp16 and not tensorrt_missing():  # without TensorRT no engine is written, and the step says why
        engine = out / engine_file_name(name, "fp16", config.batch, current_env())
        files += [engine, sidecar_path(engine)]
    return files


def check_overwrite(files: list[Path], overwrite: bool) -> None:
    """The same rule as `streamseg run`: an existing file is only replaced with --overwrite."""
    existing = [path for path in files if path.exists()]
    if existing and not overwrite:
        raise ExportError(f"{existing[0]} already exists; pass --overwrite to replace it")


def export_model(config: ExportConfig, log: Log = stderr_log) -> ExportResult:
    """Run every requested export step; raises `ExportError`/`CheckpointError`/`BackendError`."""
    checkpoint = resolve_checkpoint(config.model)
    name = config.name or model_name(config.model)
    check_overwrite(planned_files(config, name), config.overwrite)
    if config.data:  # a missing CamVid fails now, not after the ONNX and INT8 steps
        find_pairs(Path(config.data), "val")
    model, info = load_checkpoint(checkpoint)
    frames = load_frames(config.calib, max(config.calib_frames, CHECK_FRAMES))
    # The shape `run --aspect keep` feeds the model for this footage: the checks and
    # calibration run at it, and a TensorRT engine's profile is built for it.
    size = config.size or keep_size(frames[0].shape[:2], tuple(info.input_size))
    calib = to_batch(frames, info, size)
    images = calib[np.linspace(0, len(calib) - 1, min(CHECK_FRAMES, len(calib))).astype(int)]
    onnx_path = Path(config.out_dir) / f"{name}.onnx"
    meta = make_meta(info, checkpoint, config.batch, size, config.dynamic)
    check = onnx_step(model, meta, onnx_path, images, opset=config.opset, dynamic=config.dynamic, log=log)
    result = ExportResult(onnx=onnx_path, check=check, files=[onnx_path])
    if config.int8:
        result.int8 = int8_step(config, onnx_path, images, calib, log)
        result.files.append(result.int8)
    if config.fp16:
        result.engine = engine_step(config, checkpoint, model, onnx_path, images, name, size, log)
        result.files += [result.engine, result.engine.with_suffix(".json")]
    log("Done: " + ", ".join(describe_file(p) for p in result.files)
        + f"; ONNX check {'passed' if check.agreement >= MIN_AGREEMENT else 'FAILED'}")
    return result


def cache_onnx(checkpoint: Path, path: Path, log: Log = stderr_log) -> Path:
    """The ONNX file `load_backend` runs on CPU (`path`, in the user's cache): reused
    while it is a current export of the checkpoint, else exported (dynamic batch
    and size) and checked."""
    path = Path(path)
    if path.is_file() and not stale_reason(path, checkpoint):
        return path
    sha = file_sha256(checkpoint)
    model, info = load_checkpoint(checkpoint)
    log(f"First use of {Path(checkpoint).name} on CPU: exporting ONNX to {path} for ONNX Runtime (once; cached after)")
    try:
        frames = load_frames(None, 2)
    except FrameSourceError:  # installed without the repository's samples/: any image checks the graph
        frames = [np.random.default_rng(0).integers(0, 256, (*info.input_size, 3), dtype=np.uint8)] * 2
    images = to_batch(frames, info, tuple(info.input_size))
    meta = OnnxMeta(info=info, batch_range=(1, 1), input_size=None, source=str(checkpoint), source_sha256=sha)
    onnx_step(model, meta, path, images, opset=17, dynamic=True, log=log)
    return path
