"""Export: ONNX parity with PyTorch, dynamic batch, INT8, and the --fp16 failure without a GPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from streamseg.backends.onnx_backend import OnnxBackend, read_onnx_meta
from streamseg.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from streamseg.cli import main
from streamseg.export import ExportConfig, ExportError, check_onnx, export_model, load_frames, quantize_int8, to_batch
from streamseg.export.int8 import compare_int8
from streamseg.models import PRESETS

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camseq01.mp4"
SIZE = (64, 96)  # small, so each export takes a second or two on a shared CPU


def random_checkpoint(folder: Path, name: str) -> Path:
    torch.manual_seed(0)
    info = ModelInfo.for_model(name, input_size=SIZE)
    return save_checkpoint(folder / f"{name}.safetensors", info.build(), info)


def brightness_labels(images: np.ndarray) -> torch.Tensor:
    """Four classes from the un-normalised luminance: a pattern a tiny net learns in seconds."""
    rgb = images * np.array([0.229, 0.224, 0.225])[:, None, None] + np.array([0.485, 0.456, 0.406])[:, None, None]
    luminance = rgb.mean(axis=1)
    return torch.from_numpy(np.digitize(luminance, np.quantile(luminance, [0.25, 0.5, 0.75]))).long()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny UNet trained for a few steps on the sample clip to segment brightness
    bands. Random-init nets predict near-ties everywhere, so agreement between
    backends would be luck; this one's predictions are decisive except at the
    band edges, which is what a real checkpoint looks like."""
    torch.manual_seed(0)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=(48, 64))
    images = to_batch(load_frames(SAMPLE, 8), info, info.input_size)
    labels = brightness_labels(images)
    model = info.build().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    inputs = torch.from_numpy(images)
    for _ in range(80):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    return save_checkpoint(tmp_path_factory.mktemp("trained") / "bands.safetensors", model.eval(), info)


@pytest.mark.parametrize("name", list(PRESETS))
def test_export_each_preset_matches_torch(tmp_path: Path, name: str) -> None:
    checkpoint = random_checkpoint(tmp_path, name)
    result = export_model(ExportConfig(model=str(checkpoint), out_dir=tmp_path / "engines", calib_frames=4),
                          log=lambda _: None)
    assert result.onnx == tmp_path / "engines" / f"{name}.onnx" and result.onnx.is_file()
    proto = onnx.load(str(result.onnx))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["logits", "labels"]
    meta = read_onnx_meta(result.onnx)
    _, info = load_checkpoint(checkpoint)
    assert meta.info == info and meta.input_size is None and meta.batch_range == (1, 1)  # H, W dynamic by default
    assert meta.source == str(checkpoint) and len(meta.source_sha256) == 64
    assert result.check.max_abs_diff < 1e-4 and result.check.agreement >= 0.999
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == [f"{name}.onnx"]  # no temp files left


def test_trained_model_parity_and_dynamic_batch(tmp_path: Path, trained: Path) -> None:
    model, info = load_checkpoint(trained)
    export_model(ExportConfig(model=str(trained), out_dir=tmp_path, calib_frames=4), log=lambda _: None)
    images = to_batch(load_frames(SAMPLE, 3), info, info.input_size)
    check = check_onnx(tmp_path / "bands.onnx", model, images)
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).argmax(1).numpy()
    assert len(np.unique(reference)) >= 3  # decisive, varied predictions: the agreement below means something
    assert check.agreement >= 0.999 and check.max_abs_diff < 1e-3
    backend = OnnxBackend(tmp_path / "bands.onnx", device="cpu")
    for batch in (1, 3):
        labels = backend.predict(images[:batch])
        assert labels.shape == (batch, 48, 64) and labels.dtype == np.uint8
        assert (labels == reference[:batch]).mean() >= 0.999


def test_labels_output_is_the_argmax_of_the_logits(tmp_path: Path, trained: Path) -> None:
    """Parity of the in-graph argmax (issue 13): `predict` asks the runtime for `labels` only."""
    _, info = load_checkpoint(trained)
    export_model(ExportConfig(model=str(trained), out_dir=tmp_path, int8=True, calib_frames=4), log=lambda _: None)
    images = to_batch(load_frames(SAMPLE, 5), info, info.input_size)
    for path in (tmp_path / "bands.onnx", tmp_path / "bands.int8.onnx"):
        backend = OnnxBackend(path, device="cpu")
        assert backend.has_labels
        for batch in (1, 5):
            labels, logits = backend.predict(images[:batch]), backend.logits(images[:batch])
            assert labels.dtype == np.uint8 and labels.shape == (batch, *info.input_size)
            assert np.array_equal(labels, logits.argmax(1))
    tied = np.zeros((1, 3, 48, 64), np.float32)  # a constant input: ties resolve to the first class, as numpy's
    backend = OnnxBackend(tmp_path / "bands.onnx", device="cpu")
    assert np.array_equal(backend.predict(tied), backend.logits(tied).argmax(1))


def test_file_without_labels_output_falls_back_to_numpy_argmax(tmp_path: Path, trained: Path) -> None:
    _, info = load_checkpoint(trained)
    export_model(ExportConfig(model=str(trained), out_dir=tmp_path, calib_frames=4), log=lambda _: None)
    proto = onnx.load(str(tmp_path / "bands.onnx"))  # as exported before issue 13: logits only
    del proto.graph.output[1]
    del proto.graph.node[-2:]
    onnx.save(proto, str(tmp_path / "old.onnx"))
    backend = OnnxBackend(tmp_path / "old.onnx", device="cpu")
    images = to_batch(load_frames(SAMPLE, 2), info, info.input_size)
    assert not backend.has_labels
    assert np.array_equal(backend.predict(images), backend.logits(images).argmax(1))


def test_dynamic_size_export_runs_other_sizes(tmp_path: Path, trained: Path) -> None:
    _, info = load_checkpoint(trained)
    config = ExportConfig(model=str(trained), out_dir=tmp_path, dynamic=True, batch=2, calib_frames=4)
    export_model(config, log=lambda _: None)
    assert read_onnx_meta(tmp_path / "bands.onnx").input_size is None
    images = to_batch(load_frames(SAMPLE, 2), info, (72, 88))
    assert OnnxBackend(tmp_path / "bands.onnx", device="cpu").logits(images).shape == (2, 11, 72, 88)


def test_int8_agrees_with_fp32(tmp_path: Path, trained: Path) -> None:
    _, info = load_checkpoint(trained)
    lines: list[str] = []
    result = export_model(ExportConfig(model=str(trained), out_dir=tmp_path, int8=True, calib_frames=16),
                          log=lines.append)
    assert result.int8 == tmp_path / "bands.int8.onnx" and result.int8.is_file()
    proto = onnx.load(str(result.int8))
    assert any(node.op_type == "QuantizeLinear" for node in proto.graph.node)
    meta = read_onnx_meta(result.int8)
    assert meta.precision == "int8" and meta.info == info
    assert any(line.startswith("INT8: saved") and "agreement" in line for line in lines)
    frames = to_batch(load_frames(SAMPLE, 40)[1::2], info, info.input_size)  # not the calibration frames
    report = compare_int8(result.onnx, result.int8, frames)
    assert report.agreement >= 0.95 and report.int8_s > 0


def test_quantize_needs_streamseg_metadata(tmp_path: Path) -> None:
    from streamseg.backends import BackendError

    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.zeros(1, 3, 8, 8),), str(plain), dynamo=False)
    with pytest.raises(BackendError, match="no streamseg metadata"):
        quantize_int8(plain, tmp_path / "q.onnx", np.zeros((1, 3, 8, 8), np.float32))
    assert not (tmp_path / "q.onnx").exists()


def trt_ready() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(trt_ready(), reason="TensorRT and a GPU are here: --fp16 builds a real engine")
def test_cli_fp16_without_gpu_fails_cleanly(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(tmp_path, "unet")
    out = tmp_path / "engines"
    result = CliRunner().invoke(main, ["export", "--model", str(checkpoint), "--fp16", "--batch", "4",
                                       "--out", str(out), "--calib-frames", "2"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("ONNX: saved") and "agreement" in lines[0]
    assert lines[-1].startswith("Error:") and "NVIDIA GPU with TensorRT" in lines[-1] and len(lines) == 2
    assert "Traceback" not in result.output
    assert (out / "unet.onnx").is_file() and not list(out.glob("*.engine")) and not list(out.glob("*.json"))


def test_cli_unknown_model_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "--model", "nosuchnet", "--out", str(tmp_path)])
    assert result.exit_code != 0 and result.output.count("\n") == 1 and "unknown model" in result.output
    assert not list(tmp_path.iterdir())
    typo = CliRunner().invoke(main, ["export", "--model", "deeplb", "--out", str(tmp_path)])
    assert typo.exit_code == 1 and "did you mean 'deeplab'?" in typo.output and typo.output.count("\n") == 1


def test_cli_refuses_to_overwrite_an_export_unless_told(tmp_path: Path) -> None:
    """The rule `run` follows: an existing output is replaced only with --overwrite, and refused before any work."""
    checkpoint = random_checkpoint(tmp_path, "unet")
    out = tmp_path / "engines"
    out.mkdir()
    (out / "unet.onnx").write_bytes(b"the user's earlier export")
    args = ["export", "--model", str(checkpoint), "--out", str(out), "--calib-frames", "2"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and refused.output.strip().splitlines() == [
        f"Error: {out / 'unet.onnx'} already exists; pass --overwrite to replace it"]
    assert (out / "unet.onnx").read_bytes() == b"the user's earlier export" and len(list(out.iterdir())) == 1
    replaced = CliRunner().invoke(main, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert read_onnx_meta(out / "unet.onnx").source == str(checkpoint)  # a real export now


def test_an_existing_int8_file_is_refused_too(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(tmp_path, "unet")
    (tmp_path / "unet.int8.onnx").write_bytes(b"kept")
    with pytest.raises(ExportError, match="unet.int8.onnx already exists; pass --overwrite"):
        export_model(ExportConfig(model=str(checkpoint), out_dir=tmp_path, int8=True, calib_frames=2),
                     log=lambda _: None)
    assert not (tmp_path / "unet.onnx").exists() and (tmp_path / "unet.int8.onnx").read_bytes() == b"kept"


@pytest.mark.gpu
def test_cli_fp16_builds_engine_and_sidecar(tmp_path: Path, trained: Path) -> None:
    pytest.importorskip("tensorrt")
    result = CliRunner().invoke(main, ["export", "--model", str(trained), "--fp16", "--batch", "2",
                                       "--out", str(tmp_path), "--calib-frames", "4"])
    assert result.exit_code == 0, result.output
    engines = list(tmp_path.glob("bands.fp16.b2.*.engine"))
    assert len(engines) == 1 and engines[0].with_suffix(".json").is_file()
    assert "TensorRT FP16 vs torch FP32 argmax agreement" in result.output
