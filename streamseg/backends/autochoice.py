"""`--backend auto` on a CPU: time each installed runtime/precision once, keep the fastest.

Which CPU runtime wins depends on the CPU (OpenVINO bf16 is 2x ONNX Runtime
on an AMX Xeon, about even on AVX2) and on the library versions, so it is
measured, not assumed: each candidate runs the model at the run's batch for
about a second. The choice is cached in the per-user cache, next to
the automatic export it describes (`NAME-SHA12.auto.json`; for any other
file, e.g. the user's `engines/NAME.onnx`, under the file's own hash there:
never beside the user's files) under a key of the model file's hash, the
CPU model, the library versions, threads and batch; any change re-measures.
No torch here: the CPU runtimes run without it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..cache import exports_dir, in_cache
from ..checkpoint import atomic_write, file_sha256
from ..cpu import cpu_model, native_bf16
from .base import Backend, BackendError
from .onnx_backend import OnnxBackend, read_onnx_meta
from .openvino_backend import OpenVinoBackend

Log = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    name: str                        # "onnx fp32", "openvino bf16", "onnx int8", …
    make: Callable[[], Backend]


def library_versions() -> dict[str, str]:
    import onnxruntime

    versions = {"streamseg": __version__, "onnxruntime": onnxruntime.__version__}
    try:
        import openvino

        versions["openvino"] = openvino.__version__
    except ImportError:
        pass
    return versions


def cache_key(model: Path, threads: int, batch: int) -> dict:
    """What the measured speeds depend on; the cached choice holds while all of it is equal."""
    return {"model_sha256": file_sha256(model), "cpu": cpu_model(), "versions": library_versions(),
            "threads": threads, "batch": batch}


def choice_path(model: Path, model_sha256: str) -> Path:
    stem = model.name.split(".")[0]
    if in_cache(model):
        return model.with_name(f"{stem}.auto.json")
    return exports_dir() / f"{stem}-{model_sha256[:12]}.auto.json"


def read_choice(path: Path, key: dict) -> dict | None:
    """The cached `{"chosen", "fps"}` when it was measured under `key`, else None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key and "chosen" in data else None


def write_choice(path: Path, key: dict, chosen: str, fps: dict[str, float], log: Log = lambda _: None) -> None:
    text = json.dumps({"key": key, "chosen": chosen, "fps": fps}, indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as error:  # e.g. a read-only cache: choose anyway, measure again next time
        log(f"auto: cannot cache the choice in {path} ({error.strerror or error})")


def candidates(model: Path, threads: int) -> list[Candidate]:
    """Every installed runtime/precision for `model`, and for its INT8 export when there is a current one."""
    files = [model]
    int8 = model.with_name(f"{model.name.split('.')[0]}.int8.onnx")
    if int8.is_file():
        try:
            if read_onnx_meta(int8).source_sha256 == read_onnx_meta(model).source_sha256:
                files.append(int8)  # made by `streamseg export --int8`, which reports its accuracy
        except BackendError:
            pass
    try:
        import openvino  # noqa: F401
        has_openvino = True
    except ImportError:
        has_openvino = False
    found = []
    for path in files:
        precision = "int8" if path is int8 else "fp32"
        found.append(Candidate(f"onnx {precision}", lambda p=path: OnnxBackend(p, "cpu", threads=threads)))
        if has_openvino:
            found.append(Candidate(f"openvino {precision}",
                                   lambda p=path: OpenVinoBackend(p, precision="fp32", threads=threads)))
            if precision == "fp32" and native_bf16():
                found.append(Candidate("openvino bf16",
                                       lambda p=path: OpenVinoBackend(p, precision="bf16", threads=threads)))
    return found


def frames_per_second(backend: Backend, batch: int, seconds: float) -> float:
    """`predict` throughput at `batch` over about `seconds` (at least 3 calls) after a warm-up call."""
    height, width = backend.fixed_size or backend.info.input_size
    images = np.random.default_rng(0).standard_normal((batch, 3, height, width)).astype(np.float32)
    backend.predict(images)
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < seconds:
        backend.predict(images)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def measure_all(found: list[Candidate], measure: Callable[[Backend], float], log: Log) -> tuple[str, dict, Backend]:
    """Build and time each candidate; keep only the fastest alive. → (name, fps of each, backend)."""
    fps: dict[str, float] = {}
    best: tuple[str, Backend] | None = None
    for candidate in found:
        try:
            backend = candidate.make()
            fps[candidate.name] = round(measure(backend), 2)
        except BackendError as error:
            log(f"auto: {candidate.name} not usable here ({error})")
            continue
        if best is None or fps[candidate.name] > fps[best[0]]:
            best = (candidate.name, backend)
    if best is None:
        raise BackendError("no CPU runtime could run the model")
    return best[0], fps, best[1]


def summary(fps: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f} fps" for name, value in sorted(fps.items(), key=lambda kv: -kv[1]))


def choose_cpu_backend(model: Path, *, threads: int, batch: int, seconds: float = 1.0,
                       log: Log = lambda _: None) -> tuple[Backend, str]:
    """The fastest CPU runtime for the exported `model` here, measured once and cached."""
    key = cache_key(model, threads, batch)
    path = choice_path(model, key["model_sha256"])
    found = {c.name: c for c in candidates(model, threads)}
    cached = read_choice(path, key)
    if cached is not None and cached["chosen"] in found:
        backend = found[cached["chosen"]].make()
        return backend, f"auto: {cached['chosen']}, fastest when measured on this CPU ({summary(cached['fps'])}; {path})"
    log(f"auto: timing {', '.join(found)} on this CPU (once; cached in {path})")
    chosen, fps, backend = measure_all(list(found.values()),
                                       lambda b: frames_per_second(b, batch, seconds), log)
    write_choice(path, key, chosen, fps, log)
    return backend, f"auto: {chosen}, fastest measured on this CPU ({summary(fps)})"
