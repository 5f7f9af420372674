"""OpenVINO backend: parity with ONNX Runtime, batches, INT8, precision choice, and a missing install."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from streamseg.backends import BackendError, OnnxBackend
from streamseg.backends.openvino_backend import OpenVinoBackend, pick_precision
from streamseg.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from streamseg.cli import main
from streamseg.cpu import cpu_flags, native_bf16
from streamseg.export.int8 import quantize_int8
from streamseg.export.onnx_export import export_onnx
from streamseg.export.run import cache_onnx, make_meta
from streamseg.runtime import load_backend

pytest.importorskip("openvino")
SIZE = (48, 64)
WIDE = (36, 64)  # 16:9, as `--aspect keep` feeds wide footage to a model trained at 4:3
AVX2_ONLY = frozenset({"fpu", "sse", "sse2", "avx", "avx2", "fma"})
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=SIZE)
    folder = tmp_path_factory.mktemp("ov")
    checkpoint = save_checkpoint(folder / "tiny.safetensors", info.build(), info)
    return cache_onnx(checkpoint, folder / "engines" / "tiny.onnx", log=lambda _: None)


def images(count: int, seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, *size)).astype(np.float32)


def test_parity_with_onnx_runtime_at_several_batches(onnx_file: Path) -> None:
    ov, ort = OpenVinoBackend(onnx_file, precision="fp32", threads=1), OnnxBackend(onnx_file, "cpu", threads=1)
    assert ov.has_labels and ov.precision == "fp32" and "openvino FP32" in ov.describe()
    for batch in (3, 1, 3):  # two compiled shapes, each reused
        x = images(batch, seed=batch)
        logits = ov.logits(x)
        assert logits.shape == (batch, 11, *SIZE)
        np.testing.assert_allclose(logits, ort.logits(x), atol=1e-4)
        labels = ov.predict(x)
        assert labels.dtype == np.uint8 and labels.shape == (batch, *SIZE)
        assert np.array_equal(labels, logits.argmax(1))  # the in-graph argmax, run by OpenVINO
        assert (labels == ort.predict(x)).mean() >= 0.999  # near-ties of a random net may flip a pixel
    assert sorted(ov._requests) == [(1, *SIZE), (3, *SIZE)]


def test_dynamic_size_runs_wide_frames_like_onnx_runtime(onnx_file: Path) -> None:
    ov, ort = OpenVinoBackend(onnx_file, precision="fp32", threads=1), OnnxBackend(onnx_file, "cpu", threads=1)
    assert ov.fixed_size is None  # the cached export has symbolic height/width
    for batch in (2, 1):
        x = images(batch, seed=10 + batch, size=WIDE)
        logits = ov.logits(x)
        assert logits.shape == (batch, 11, *WIDE)
        np.testing.assert_allclose(logits, ort.logits(x), atol=1e-4)
        labels = ov.predict(x)
        assert labels.shape == (batch, *WIDE) and np.array_equal(labels, logits.argmax(1))
    assert (2, *WIDE) in ov._requests and (1, *WIDE) in ov._requests  # compiled per shape, static each


def test_static_export_runs_at_its_size_only(onnx_file: Path, tmp_path: Path) -> None:
    checkpoint = onnx_file.parent.parent / "tiny.safetensors"
    model, info = load_checkpoint(checkpoint)
    static = export_onnx(model, make_meta(info, checkpoint, 1, WIDE, dynamic=False), tmp_path / "static.onnx",
                         images(1, size=WIDE), dynamic=False)
    ov = OpenVinoBackend(static, threads=1)
    assert ov.fixed_size == WIDE and list(ov._requests) == [(1, *WIDE)]
    assert ov.predict(images(2, size=WIDE)).shape == (2, *WIDE)
    with pytest.raises(BackendError, match="runs at 36x64 only"):
        ov.predict(images(1))


def test_int8_file_runs(onnx_file: Path, tmp_path: Path) -> None:
    int8 = quantize_int8(onnx_file, tmp_path / "tiny.int8.onnx", images(8, seed=5))
    ov, ort = OpenVinoBackend(int8, threads=1), OnnxBackend(int8, "cpu", threads=1)
    assert "openvino INT8" in ov.describe()
    request = ov._request((1, *SIZE))[0]
    executed = {op.get_rt_info()["runtimePrecision"].astype(str)
                for op in request.get_compiled_model().get_runtime_model().get_ordered_ops()}
    assert {"i8", "u8"} & executed  # OpenVINO runs the QDQ graph with INT8 kernels, not dequantised to f32
    x = images(2, seed=7)
    assert ov.predict(x).shape == (2, *SIZE)
    # Both runtimes quantise the same ranges; rounding differs slightly between their INT8 kernels.
    assert np.abs(ov.logits(x) - ort.logits(x)).mean() < 0.05


def test_precision_follows_the_cpu_flags() -> None:
    assert cpu_flags("processor : 0\nflags : fpu avx2 amx_bf16\n") == {"fpu", "avx2", "amx_bf16"}
    assert not native_bf16(AVX2_ONLY) and native_bf16(SAPPHIRE_RAPIDS)
    assert pick_precision("auto", AVX2_ONLY) == "fp32" and pick_precision("auto", SAPPHIRE_RAPIDS) == "bf16"
    assert pick_precision("fp32", SAPPHIRE_RAPIDS) == "fp32"
    with pytest.raises(BackendError, match="AMX or AVX512_BF16"):
        pick_precision("bf16", AVX2_ONLY)
    with pytest.raises(BackendError, match="unknown OpenVINO precision"):
        pick_precision("fp8", SAPPHIRE_RAPIDS)


def test_load_backend_and_wrong_device(onnx_file: Path) -> None:
    backend, reason = load_backend(str(onnx_file), "openvino", "cpu")
    assert isinstance(backend, OpenVinoBackend) and "openvino" in reason
    with pytest.raises(BackendError, match="runs on the CPU"):
        OpenVinoBackend(onnx_file, "cuda")


def test_missing_openvino_is_one_line(onnx_file: Path, tmp_path: Path, make_clip,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino → ImportError
    with pytest.raises(BackendError, match=r"pip install 'streamseg\[openvino\]'"):
        OpenVinoBackend(onnx_file)
    clip = make_clip("c.mp4", frames=2)
    result = CliRunner().invoke(main, ["run", str(clip), "-m", str(onnx_file), "--backend", "openvino",
                                       "-o", str(tmp_path / "out.mp4"), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: the openvino backend needs OpenVINO")
    assert not (tmp_path / "out.mp4").exists()
