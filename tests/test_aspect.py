"""--aspect keep, the default: 16:9 footage runs at its own aspect ratio, with no letterbox (issue 12, item 0)."""
from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from streamseg.backends import OnnxBackend, TorchBackend
from streamseg.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from streamseg.export import ExportConfig, export_model
from streamseg.pipeline import PipelineConfig, segment_frames
from streamseg.preprocess import PreprocessConfig, keep_size, plan_geometry
from streamseg.stats import RunStats

SKY, BAND = 0, 5   # what the stand-in model calls bright pixels, and the letterbox's mean colour
TRAINED = (96, 128)  # a 4:3 input size, as the shipped 416x544, small enough for a CPU test


class Brightness(nn.Module):
    """A stand-in segmenter with a real network's receptive field: a 9x9 mean, then class
    scores from brightness. Bright pixels are Sky; the mean colour (0 after normalising,
    what a letterbox band holds) scores another class, that no frame pixel here scores."""

    def __init__(self, classes: int = 11) -> None:
        super().__init__()
        self.blur = nn.AvgPool2d(9, stride=1, padding=4, count_include_pad=False)
        self.score = nn.Conv2d(3, classes, 1)
        with torch.no_grad():
            self.score.weight.zero_()
            self.score.bias.fill_(-100.0)
            self.score.weight[SKY] = 10.0 / 3  # channel mean m → 10 m - 5: Sky wherever m > 0.5
            self.score.bias[SKY] = -5.0
            self.score.bias[BAND] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.blur(x))


def write_sky_clip(path: Path, frames: int = 3, size: tuple[int, int] = (180, 320)) -> Path:
    """A 16:9 clip of a bright, graded sky (normalised brightness 0.6..1.9 everywhere)."""
    height, width = size
    rows = np.linspace(150, 230, height).astype(np.uint8)
    image = np.repeat(np.repeat(rows[:, None, None], width, axis=1), 3, axis=2)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def segment(clip: Path, backend, aspect: str | None = None) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Labels of every frame, and the batch shape the model ran at."""
    config = PipelineConfig() if aspect is None else PipelineConfig(PreprocessConfig(aspect))
    stats = RunStats(backend.info.classes)
    labels = [frame.labels for frame in segment_frames(str(clip), backend, config, stats=stats)]
    return labels, stats.batch_shape


@pytest.fixture(scope="module")
def sky_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sky_clip(tmp_path_factory.mktemp("clip") / "dashcam.mp4")


@pytest.fixture(scope="module")
def brightness():
    return TorchBackend(Brightness(), ModelInfo.for_model("unet", input_size=TRAINED), "cpu")


def test_keep_runs_the_short_side_at_the_models_input_size():
    assert keep_size((540, 960), (416, 544)) == (416, 736)      # 16:9 dashcam
    assert keep_size((720, 960), (416, 544)) == (416, 544)      # 4:3, as CamVid
    assert keep_size((960, 540), (416, 544)) == (736, 416)      # portrait phone video
    assert keep_size((1080, 2520), (416, 544)) == (416, 960)    # 21:9, long side to a multiple of 32
    # An input size off the 32 grid (a checkpoint from before --input-scale) is rounded onto it:
    # 360 rows would leave the stride-32 features 11.25 cells high.
    assert keep_size((360, 480), (360, 480)) == (352, 480)
    assert keep_size((540, 960), (360, 480)) == (352, 640)
    geometry = plan_geometry((540, 960), (416, 544))
    assert geometry.input_size == (416, 736) and not geometry.padded  # the default: no letterbox
    assert plan_geometry((540, 960), (416, 544), fixed=(416, 544)).padded  # a one-size backend: letterbox


def test_default_segments_16_9_at_its_own_aspect_ratio_without_a_pad_class(sky_clip, brightness):
    labels, shape = segment(sky_clip, brightness)
    assert shape == (1, 3, 96, 160)  # 16:9 like the frame: 96 rows, the model's own
    assert all(frame.shape == (180, 320) for frame in labels)
    default = set(np.unique(labels).tolist())
    stretched = set(np.unique(segment(sky_clip, brightness, "stretch")[0]).tolist())
    assert default <= stretched == {SKY}  # nothing the pad band's place could have added
    # The letterbox is what this guards against: its band bleeds into the rows next to it.
    letterboxed, shape = segment(sky_clip, brightness, "pad")
    assert shape == (1, 3, *TRAINED)
    assert BAND in np.unique(letterboxed[0][:10]) and BAND not in default


@pytest.fixture(scope="module")
def small_unet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=TRAINED)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "small.safetensors", info.build(), info)


def test_onnx_export_runs_at_a_16_9_shape(tmp_path, small_unet, sky_clip):
    onnx = export_model(ExportConfig(model=str(small_unet), out_dir=tmp_path, calib_frames=2),
                        log=lambda _: None).onnx
    backend = OnnxBackend(onnx, device="cpu")
    assert backend.fixed_size is None  # height and width are dynamic by default
    images = np.random.default_rng(0).normal(size=(2, 3, 96, 160)).astype(np.float32)
    model, _ = load_checkpoint(small_unet)
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(backend.logits(images), reference, atol=1e-4)
    labels, shape = segment(sky_clip, backend)
    assert shape == (1, 3, 96, 160) and labels[0].shape == (180, 320)


def test_openvino_runs_the_dynamic_export_at_the_stream_shape(tmp_path, small_unet, sky_clip):
    pytest.importorskip("openvino")
    from streamseg.backends import OpenVinoBackend

    onnx = export_model(ExportConfig(model=str(small_unet), out_dir=tmp_path, calib_frames=2),
                        log=lambda _: None).onnx
    backend = OpenVinoBackend(onnx, precision="fp32", threads=1)
    assert backend.fixed_size is None
    labels, shape = segment(sky_clip, backend)
    assert shape == (1, 3, 96, 160) and labels[0].shape == (180, 320)  # 16:9, no letterbox
    reference, _ = segment(sky_clip, OnnxBackend(onnx, device="cpu"))
    assert all((ours == theirs).mean() >= 0.999 for ours, theirs in zip(labels, reference, strict=True))


def test_a_static_export_is_letterboxed_with_a_hint(tmp_path, small_unet, sky_clip, caplog):
    config = ExportConfig(model=str(small_unet), out_dir=tmp_path, calib_frames=2, dynamic=False, size=TRAINED)
    backend = OnnxBackend(export_model(config, log=lambda _: None).onnx, device="cpu")
    assert backend.fixed_size == TRAINED
    with caplog.at_level(logging.WARNING, logger="streamseg"):
        labels, shape = segment(sky_clip, backend)
    assert shape == (1, 3, *TRAINED) and labels[0].shape == (180, 320)
    assert any("letterboxed" in r.message and "160x96" in r.message for r in caplog.records)


def test_a_size_change_mid_stream_starts_a_new_batch():
    # `keep` follows the frame's shape, so a stream that changes resolution changes the input shape.
    from streamseg.batching import batch_frames
    from streamseg.decode import Frame

    shapes = [(3, 90, 160)] * 3 + [(3, 90, 120)] * 2
    frames = [Frame(i, np.zeros((2, 2, 3), np.uint8), tensor=np.zeros(s, np.float32)) for i, s in enumerate(shapes)]
    assert [[f.index for f in group] for group in batch_frames(frames, 4)] == [[0, 1, 2], [3, 4]]
