"""Backends: ONNX Runtime from file metadata, `auto` selection and caching, TensorRT checks."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamseg.backends import BackendError, OnnxBackend, TorchBackend
from streamseg.backends.onnx_backend import read_onnx_meta
from streamseg.backends.tensorrt_backend import (
    EngineEnv,
    EngineSidecar,
    check_sidecar,
    engine_file_name,
    plan_batch,
    read_sidecar,
    sidecar_path,
)
from streamseg.checkpoint import ModelInfo, file_sha256, load_checkpoint, resolve_checkpoint, save_checkpoint
from streamseg.runtime import load_backend, usable_engine

SIZE = (48, 64)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared CPU: spinning OpenMP threads slow everything down
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=SIZE)
    return save_checkpoint(tmp_path / "tiny.safetensors", info.build(), info)


def batch_of(count: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 3, *SIZE)).astype(np.float32)


def test_auto_on_cpu_exports_caches_and_reuses_onnx(tmp_path: Path, checkpoint: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "cache"))
    engines = tmp_path / "engines"
    backend, reason = load_backend(str(checkpoint), engines_dir=engines)
    cached = tmp_path / "cache" / "onnx" / f"tiny-{file_sha256(checkpoint)[:12]}.onnx"
    # the fastest CPU runtime measured here (ONNX Runtime or OpenVINO), both run the cached export;
    # its measurement lies beside it, and nothing is written into engines/
    assert backend.path == cached and reason.startswith("auto: ") and cached.with_suffix(".auto.json").is_file()
    assert not engines.exists()
    assert read_onnx_meta(cached).input_size is None  # cached exports accept any frame size
    labels = backend.predict(batch_of(2))
    assert labels.shape == (2, *SIZE) and labels.dtype == np.uint8
    stamp = cached.stat().st_mtime_ns
    again, _ = load_backend(str(checkpoint), engines_dir=engines)
    assert again.path == cached and cached.stat().st_mtime_ns == stamp  # reused, not re-exported
    model, info = load_checkpoint(checkpoint)
    torch.nn.init.constant_(model.classifier.bias, 0.5)
    save_checkpoint(checkpoint, model, info)  # new weights: a new cache entry, the old one is not theirs
    other, _ = load_backend(str(checkpoint), engines_dir=engines)
    assert other.path != cached and cached.stat().st_mtime_ns == stamp
    import onnx

    proto = onnx.load(str(other.path))  # an export from before the in-graph argmax: re-exported with it
    del proto.graph.output[1]
    onnx.save(proto, str(other.path))
    again, _ = load_backend(str(checkpoint), engines_dir=engines)
    assert again.has_labels and again.path == other.path


def test_onnx_file_needs_no_other_flags(tmp_path: Path, checkpoint: Path) -> None:
    from streamseg.export.run import cache_onnx

    path = cache_onnx(checkpoint, tmp_path / "tiny.onnx", log=lambda _: None)
    backend, reason = load_backend(str(path), backend="onnx", device="cpu")
    model, info = load_checkpoint(checkpoint)
    assert isinstance(backend, OnnxBackend) and backend.info == info and "ONNX file" in reason
    chosen, reason = load_backend(str(path), device="cpu")  # auto: the faster CPU runtime for this file
    assert chosen.path == path and chosen.info == info and reason.startswith("auto: ")
    images = batch_of(3)
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(backend.logits(images), expected, atol=1e-4)
    assert backend.describe().startswith("onnx FP32 on cpu")
    with pytest.raises(BackendError, match="runs on the onnx or openvino backend"):
        load_backend(str(path), backend="torch")


def test_foreign_onnx_in_engines_is_left_alone(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    foreign = tmp_path / "tiny.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 11, 1), (torch.zeros(1, 3, 8, 8),), str(foreign), dynamo=False)
    content = foreign.read_bytes()
    with pytest.raises(BackendError, match="no streamseg metadata"):
        OnnxBackend(foreign, device="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    backend, _ = load_backend(str(checkpoint), backend="onnx", engines_dir=tmp_path)
    said = capsys.readouterr().err
    assert isinstance(backend, OnnxBackend) and backend.path.parent.name == "onnx"  # the automatic export
    assert f"{foreign} is not a streamseg export; using the automatic export" in said
    assert foreign.read_bytes() == content


def test_explicit_backends_and_errors(tmp_path: Path, checkpoint: Path) -> None:
    backend, reason = load_backend(str(checkpoint), backend="torch", device="cpu")
    assert isinstance(backend, TorchBackend) and "requested" in reason
    onnx_backend, _ = load_backend(str(checkpoint), backend="onnx", device="cpu", engines_dir=tmp_path)
    assert isinstance(onnx_backend, OnnxBackend)
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend(str(checkpoint), backend="mxnet")
    with pytest.raises(BackendError, match="tensorrt backend requested"):
        load_backend(str(checkpoint), backend="tensorrt", engines_dir=tmp_path)
    with pytest.raises(Exception, match="model file not found|unknown model"):
        resolve_checkpoint(str(tmp_path / "missing.safetensors"))


def env(version: str = "10.3.0", gpu: str = "NVIDIA H100 80GB HBM3", cc: tuple[int, int] = (9, 0)) -> EngineEnv:
    return EngineEnv(version, gpu, cc)


def sidecar(batch: int = 4) -> EngineSidecar:
    info = ModelInfo.for_model("deeplab")
    return EngineSidecar(env=env(), precision="fp16", input_name="images", output_name="logits",
                         input_size=(360, 480), batch_range=(1, batch, batch), checkpoint="runs/d/best.safetensors",
                         onnx="engines/deeplab.onnx", info=info, checkpoint_sha256="ab" * 32)


def test_sidecar_round_trip_and_mismatch_refused(tmp_path: Path) -> None:
    engine = tmp_path / engine_file_name("deeplab", "fp16", 4, env())
    assert engine.name == "deeplab.fp16.b4.nvidia-h100-80gb-hbm3.trt10.3.0.engine"
    sidecar_path(engine).write_text(sidecar().to_json())  # hand-written, as export would
    loaded = read_sidecar(engine)
    assert loaded == sidecar()
    check_sidecar(loaded, env(), engine)  # same TensorRT and GPU: accepted
    with pytest.raises(BackendError, match=r"TensorRT 10\.3\.0, this machine has 10\.5\.0.*rebuild.*--batch 4"):
        check_sidecar(loaded, env(version="10.5.0"), engine)
    with pytest.raises(BackendError, match=r"H100.*sm90.*A100.*sm80.*streamseg export --model runs/d/best"):
        check_sidecar(loaded, env(gpu="NVIDIA A100-SXM4-80GB", cc=(8, 0)), engine)
    data = json.loads(sidecar_path(engine).read_text())
    del data["env"]
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(BackendError, match="bad engine sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(BackendError, match="has no sidecar"):
        read_sidecar(engine)


def write_engine(folder: Path, sc: EngineSidecar) -> Path:
    folder.mkdir(exist_ok=True)
    engine = folder / engine_file_name("tiny", sc.precision, sc.batch_range[2], sc.env)
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(sc.to_json())
    return engine


def test_usable_engine_checks_sidecars(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `auto` choice among engines is pure Python: test it with hand-written sidecars."""
    from streamseg.backends import tensorrt_backend

    # runtime imports current_env from tensorrt_backend inside usable_engine (lazily: torch)
    monkeypatch.setattr(tensorrt_backend, "current_env", lambda: env())
    good = dataclasses.replace(sidecar(batch=4), checkpoint_sha256=file_sha256(checkpoint))
    engine = write_engine(tmp_path / "good", good)
    assert usable_engine(str(checkpoint), checkpoint, 4, tmp_path / "good") == (engine, "")
    found, why = usable_engine(str(checkpoint), checkpoint, 8, tmp_path / "good")
    assert found is None and "up to 4, not 8" in why
    write_engine(tmp_path / "a100", dataclasses.replace(good, env=env(gpu="NVIDIA A100-SXM4-80GB", cc=(8, 0))))
    found, why = usable_engine(str(checkpoint), checkpoint, 1, tmp_path / "a100")
    assert found is None and "A100" in why and "rebuild" in why
    model, info = load_checkpoint(checkpoint)
    torch.nn.init.constant_(model.classifier.bias, 1.0)
    save_checkpoint(checkpoint, model, info)  # retrained weights: the engine is stale
    found, why = usable_engine(str(checkpoint), checkpoint, 4, tmp_path / "good")
    assert found is None and "other weights" in why


def test_plan_batch_pads_and_names_the_range() -> None:
    assert plan_batch(3, (1, 4, 4)) == 3
    assert plan_batch(3, (4, 4, 4)) == 4  # fixed-batch engine: the last partial batch is padded
    with pytest.raises(BackendError, match=r"accepts batches of 1\.\.4 frames, got 6"):
        plan_batch(6, (1, 4, 4))


def test_tensorrt_unavailable_is_explained(tmp_path: Path, checkpoint: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    engine = tmp_path / "tiny.fp16.b4.gpu.trt10.3.0.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(BackendError, match="tensorrt package"):
        load_backend(str(engine))
    found, why = usable_engine(str(checkpoint), checkpoint, 1, tmp_path)
    assert found is None and "tensorrt" in why.lower()


@pytest.mark.gpu
def test_tensorrt_backend_runs_engine(tmp_path: Path, checkpoint: Path) -> None:
    pytest.importorskip("tensorrt")
    from streamseg.export import ExportConfig, export_model

    result = export_model(ExportConfig(model=str(checkpoint), out_dir=tmp_path, fp16=True, batch=4,
                                       calib_frames=4), log=lambda _: None)
    backend, reason = load_backend(str(checkpoint), batch=4, engines_dir=tmp_path)
    assert backend.name == "tensorrt" and "TensorRT engine" in reason and backend.max_batch == 4
    model, _ = load_checkpoint(checkpoint)
    images = batch_of(3)  # a partial batch
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    logits = backend.logits(images)
    assert logits.shape == expected.shape and np.abs(logits - expected).max() < 5e-2
    assert backend.predict(images).shape == (3, *SIZE)
    with pytest.raises(BackendError, match=r"1\.\.4"):
        backend.predict(batch_of(5))
    stale = dataclasses.replace(read_sidecar(result.engine), env=env(version="0.0.1"))
    sidecar_path(result.engine).write_text(stale.to_json())
    with pytest.raises(BackendError, match="rebuild"):
        load_backend(str(result.engine))


def test_preset_names_match_the_model_zoo() -> None:
    """`streamseg.checkpoint` keeps the preset names without importing the zoo (and torch)."""
    from streamseg.checkpoint import PRESETS as NAMES
    from streamseg.models import PRESETS

    assert tuple(NAMES) == tuple(PRESETS)


def test_torch_on_cpu_takes_its_share_of_the_cores(checkpoint: Path) -> None:
    """A fleet worker given one CPU by Ray must not run torch on every core of the node."""
    from streamseg.threads import limit_cores, plan_threads

    limit_cores(1)
    torch.set_num_threads(2)  # what torch would take on a bigger machine
    try:
        load_backend(str(checkpoint), backend="torch", device="cpu")
        assert torch.get_num_threads() == plan_threads().inference == 1
    finally:
        limit_cores(None)
        torch.set_num_threads(1)  # this module's setting (one_torch_thread)


def test_torch_fp16_by_default_only_where_timed_faster(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, FP16 autocast is timed against float32 once per batch shape (H200: FP16 lost at batch 8,
    won at 32). The timing is faked here; on a CPU the backend never autocasts."""
    model, info = load_checkpoint(checkpoint)
    said = []
    backend = TorchBackend(model, info, "cpu", fp16=None, log=said.append)
    assert backend.fp16 is False and "FP16" not in backend.describe()
    assert backend._seconds(torch.from_numpy(batch_of(1)), False) > 0
    backend.fp16 = None  # as on CUDA (torch's CPU autocast runs float16 too)
    seconds = {2: {True: 0.5, False: 1.0}, 3: {True: 0.97, False: 1.0}}  # batch 3: a tie is not a win
    timed = []
    monkeypatch.setattr(backend, "_seconds", lambda x, fp16: timed.append(x.shape[0]) or seconds[x.shape[0]][fp16])
    with torch.inference_mode():
        exact = model(torch.from_numpy(batch_of(3))).numpy()
    for _ in range(2):
        assert np.abs(backend.logits(batch_of(2)) - exact[:2]).max() < 5e-2  # FP16: close, not equal
        np.testing.assert_allclose(backend.logits(batch_of(3)), exact, atol=1e-5)  # float32
    assert timed == [2, 2, 3, 3]  # once per shape, both precisions
    assert backend.fp16_by_shape == {(2, 3, *SIZE): True, (3, 3, *SIZE): False}
    assert backend.describe() == "torch on cpu (FP16 autocast at batch 2, float32 at batch 3)"
    assert said == ["precision check on cpu at batch 2: float32 1000.0 ms, FP16 autocast 500.0 ms → FP16 autocast",
                    "precision check on cpu at batch 3: float32 1000.0 ms, FP16 autocast 970.0 ms → float32"]


@pytest.mark.gpu
def test_torch_cuda_times_fp16_against_float32(checkpoint: Path) -> None:
    model, info = load_checkpoint(checkpoint)
    backend = TorchBackend(model, info, "cuda")
    assert backend.fp16 is None and "timed on the first batch" in backend.describe()
    labels = backend.predict(batch_of(4))
    assert labels.shape == (4, *SIZE) and list(backend.fp16_by_shape) == [(4, 3, *SIZE)]
    forced = TorchBackend(model, info, "cuda", fp16=False)
    assert (forced.predict(batch_of(4)) == labels).mean() > 0.99 and forced.fp16_by_shape == {}
