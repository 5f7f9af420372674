"""TensorRT build and setup paths on a CPU, against a fake `tensorrt` module (TensorRT 10 API shapes)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from streamseg.backends import tensorrt_backend
from streamseg.backends.base import BackendError
from streamseg.backends.onnx_backend import OnnxMeta
from streamseg.backends.tensorrt_backend import EngineEnv, create, engine_info, trt_logger
from streamseg.checkpoint import ModelInfo
from streamseg.export import engine as engine_module
from streamseg.export.engine import attach_timing_cache, build_engine, write_engine_and_sidecar
from streamseg.export.onnx_export import ExportError

ENV = EngineEnv("10.3.0", "NVIDIA H100 80GB HBM3", (9, 0))


class Config:
    def __init__(self, trt) -> None:
        self.trt, self.flags, self.cache = trt, [], None

    def set_memory_pool_limit(self, *_): pass
    def set_flag(self, flag): self.flags.append(flag)
    def add_optimization_profile(self, _): pass
    def create_timing_cache(self, data: bytes): return ("cache", bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        accepted = cache[1] != b"foreign" and not self.trt.refuse_all_caches
        self.cache = cache if accepted else self.cache
        return accepted

    def get_timing_cache(self):
        return None if self.trt.no_cache_back or self.cache is None else types.SimpleNamespace(
            serialize=lambda: b"timings")


def fake_tensorrt(*, builder_error: Exception | None = None, fp16_flag: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.refuse_all_caches = trt.no_cache_back = False
    trt.loggers, trt.networks, trt.configs = [], [], []

    class Logger:
        WARNING = 2

        def __init__(self, level) -> None:
            trt.loggers.append(self)

    def builder(logger):
        if builder_error is not None:
            raise builder_error
        network = lambda flags: trt.networks.append(flags) or "network"
        return types.SimpleNamespace(create_network=network, create_builder_config=lambda: trt.configs.append(
            Config(trt)) or trt.configs[-1], create_optimization_profile=lambda: types.SimpleNamespace(
            set_shape=lambda *a: None), build_serialized_network=lambda net, cfg: b"PLAN")

    trt.Logger, trt.Builder, trt.Runtime = Logger, builder, builder
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(parse_from_file=lambda path: True)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16") if fp16_flag else types.SimpleNamespace()
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    return trt


@pytest.fixture
def use_trt(monkeypatch: pytest.MonkeyPatch):
    def install(trt: types.ModuleType) -> types.ModuleType:
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(tensorrt_backend, "_LOGGER", None)
        monkeypatch.setattr(engine_module, "current_env", lambda: ENV)
        return trt
    return install


def onnx_file(path: Path, elem_type: int = TensorProto.FLOAT) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["logits"])], "g",
                              [helper.make_tensor_value_info("images", elem_type, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", elem_type, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph), str(path))
    return path


META = OnnxMeta(info=ModelInfo.for_model("unet", input_size=(360, 480)), batch_range=(1, 1), input_size=None,
                source_sha256="ab" * 32)


def build(tmp_path: Path, onnx_path: Path, lines: list[str] | None = None) -> Path:
    return build_engine(onnx_path, META, tmp_path / "out", name="m", batch=4, size=(256, 320),
                        log=(lines if lines is not None else []).append)


def test_builder_failure_is_one_line_naming_the_matching_wheel(use_trt, tmp_path: Path) -> None:
    use_trt(fake_tensorrt(builder_error=TypeError("__init__(): incompatible constructor arguments\nmore")))
    (tmp_path / "out").mkdir()
    with pytest.raises(BackendError) as error:
        build(tmp_path, onnx_file(tmp_path / "m.onnx"))
    message = str(error.value)
    assert "\n" not in message and "cannot create a Builder" in message and "streamseg[tensorrt-cu" in message
    assert not list((tmp_path / "out").iterdir())
    trt = use_trt(fake_tensorrt())
    trt.Runtime = lambda logger: None  # constructors that return None are caught too
    with pytest.raises(BackendError, match="cannot create a Runtime"):
        create(trt, "Runtime")


def test_one_logger_per_process(use_trt) -> None:
    trt = use_trt(fake_tensorrt())
    assert trt_logger(trt) is trt_logger(trt) and len(trt.loggers) == 1


def test_engine_sidecar_and_cache_written_with_the_engine_size(use_trt, tmp_path: Path) -> None:
    use_trt(fake_tensorrt())
    (tmp_path / "out").mkdir()
    engine = build(tmp_path, onnx_file(tmp_path / "m.onnx"))
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert engine.read_bytes() == b"PLAN" and sidecar["input_size"] == [256, 320]
    assert sidecar["info"]["input_size"] == [256, 320]  # the runner preprocesses to the engine's size
    assert (tmp_path / "out" / "timing.nvidia-h100-80gb-hbm3.trt10.3.0.cache").read_bytes() == b"timings"
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == []


def test_rejected_or_missing_timing_cache_never_orphans_the_engine(use_trt, tmp_path: Path) -> None:
    trt = use_trt(fake_tensorrt())
    out = tmp_path / "out"
    out.mkdir()
    cache = out / "timing.nvidia-h100-80gb-hbm3.trt10.3.0.cache"
    cache.write_bytes(b"foreign")  # from another GPU: TensorRT refuses it
    lines: list[str] = []
    engine = build(tmp_path, onnx_file(tmp_path / "m.onnx"), lines)
    assert any("fresh one" in line for line in lines) and trt.configs[-1].cache == ("cache", b"")
    assert cache.read_bytes() == b"timings"
    trt.no_cache_back = True  # get_timing_cache() → None, after the build
    engine.unlink()
    engine.with_suffix(".json").unlink()
    engine = build(tmp_path, onnx_file(tmp_path / "m.onnx"), lines)
    assert engine.is_file() and engine.with_suffix(".json").is_file()
    assert any("no timing cache" in line for line in lines)


def test_attach_timing_cache_builds_without_one_when_all_are_refused() -> None:
    trt = fake_tensorrt()
    trt.refuse_all_caches = True
    lines: list[str] = []
    attach_timing_cache(Config(trt), b"old", lines.append)
    assert "fresh one" in lines[0] and "without one" in lines[1]


def test_engine_and_sidecar_are_both_written_or_neither(tmp_path: Path) -> None:
    from streamseg.backends.tensorrt_backend import EngineSidecar

    sidecar = EngineSidecar(env=ENV, precision="fp16", input_name="images", output_name="logits",
                            input_size=(360, 480), batch_range=(1, 1, 1), checkpoint="", onnx="m.onnx",
                            info=META.info)
    with pytest.raises(TypeError):
        write_engine_and_sidecar(tmp_path / "m.engine", object(), sidecar)  # the plan cannot be written
    assert list(tmp_path.iterdir()) == []
    write_engine_and_sidecar(tmp_path / "m.engine", b"PLAN", sidecar)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.json"]


def test_fp16_onnx_builds_strongly_typed_and_fp32_uses_the_flag(use_trt, tmp_path: Path) -> None:
    trt = use_trt(fake_tensorrt())
    (tmp_path / "out").mkdir()
    build(tmp_path, onnx_file(tmp_path / "m16.onnx", TensorProto.FLOAT16))
    assert trt.networks[-1] == 1 and trt.configs[-1].flags == []  # strongly typed, no FP16 builder flag
    build(tmp_path, onnx_file(tmp_path / "m32.onnx"))
    assert trt.networks[-1] == 0 and trt.configs[-1].flags == ["FP16"]
    use_trt(fake_tensorrt(fp16_flag=False))  # TensorRT without BuilderFlag.FP16 (11): FP32 ONNX refused
    with pytest.raises(ExportError, match="only from an FP16 ONNX"):
        build(tmp_path, onnx_file(tmp_path / "m32.onnx"))


def test_engine_info_takes_the_engine_size() -> None:
    info = ModelInfo.for_model("unet", input_size=(360, 480))
    assert engine_info(info, (360, 480)) is info
    assert engine_info(info, (256, 320)).input_size == (256, 320) and engine_info(info, (256, 320)).classes == info.classes
