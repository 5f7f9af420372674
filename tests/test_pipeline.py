"""The streaming pipeline end to end (tiny model, tiny clips, the sample) and its stages."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from streamseg.batching import batch_frames, stack
from streamseg.checkpoint import ModelInfo
from streamseg.classes import CAMVID_PALETTE
from streamseg.decode import Frame, coded, upright
from streamseg.encode import VideoWriter
from streamseg.overlay import VIEWS, OverlayConfig, Renderer
from streamseg.pipeline import PipelineConfig, run, segment_frames
from streamseg.postprocess import Postprocessor, save_mask
from streamseg.preprocess import PreprocessConfig, Preprocessor, plan_geometry
from streamseg.queues import threaded
from streamseg.runtime import load_backend
from streamseg.source import open_source
from streamseg.stats import RESERVOIR, RunStats, StageTimer

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camseq01.mp4"


@pytest.fixture(scope="module")
def backend(tiny_model):
    return load_backend(str(tiny_model), "torch", "cpu")[0]


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        return {"frames": len(frames), "width": frames[0].width, "height": frames[0].height,
                "rate": video.average_rate, "pts": [f.pts * f.time_base for f in frames],
                "rotation": frames[0].rotation, "images": [f.to_ndarray(format="rgb24") for f in frames],
                "audio": [(s.codec_context.name, s.sample_rate) for s in container.streams.audio]}


def segment_to_file(path: Path, backend, tmp_path: Path, config: PipelineConfig = PipelineConfig(), **writer) -> Path:
    source = open_source(str(path))
    output = tmp_path / "out.mp4"
    audio = str(path) if source.info.audio else None
    run(source, backend, VideoWriter(output, rate=source.info.rate, audio_from=audio, **writer), config,
        progress=False)
    source.close()
    return output


def test_sample_keeps_frames_size_rate_and_timestamps(backend, tmp_path):
    output = segment_to_file(SAMPLE, backend, tmp_path, PipelineConfig(batch=2))
    before, after = probe(SAMPLE), probe(output)
    assert after["frames"] == before["frames"] == 101
    assert (after["width"], after["height"]) == (480, 360)
    assert after["rate"] == before["rate"] == 15
    assert after["pts"] == before["pts"]
    assert not list(tmp_path.glob(".*partial*"))


def test_audio_is_copied_unchanged(backend, make_clip, tmp_path):
    clip = make_clip(frames=15, audio=True)
    output = segment_to_file(clip, backend, tmp_path)
    assert probe(output)["audio"] == probe(clip)["audio"] == [("aac", 8000)]
    with av.open(str(clip)) as a, av.open(str(output)) as b:
        sent = [bytes(p) for p in a.demux(audio=0) if p.size]
        got = [bytes(p) for p in b.demux(audio=0) if p.size]
    assert got == sent  # remuxed packet for packet, not re-encoded


def test_rotation_metadata_and_coded_size_are_kept(backend, make_clip, tmp_path):
    clip = make_clip(frames=4, rotation=90)
    source = open_source(str(clip))
    first = next(iter(source.frames()))
    assert first.image.shape[:2] == (64, 48)  # the pipeline sees the frame upright
    source.close()
    after = probe(segment_to_file(clip, backend, tmp_path))
    assert (after["width"], after["height"], after["rotation"]) == (64, 48, 90)


def test_odd_sizes_are_padded_to_even_for_yuv420p(backend, make_clip, tmp_path):
    after = probe(segment_to_file(make_clip(frames=5, size=(25, 33)), backend, tmp_path))
    assert (after["frames"], after["width"], after["height"]) == (5, 34, 26)


def test_corrupt_packet_is_skipped_and_counted(backend, tmp_path):
    data = bytearray(SAMPLE.read_bytes())
    rng = np.random.default_rng(0)
    for offset in range(len(data) // 3, len(data) // 3 + 20000, 997):
        data[offset:offset + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = open_source(str(damaged))
    stats = run(source, backend, VideoWriter(tmp_path / "out.mp4", rate=source.info.rate), progress=False)
    assert stats.corrupt >= 1
    assert probe(tmp_path / "out.mp4")["frames"] == stats.frames == 101 - stats.corrupt


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_renders(backend, make_clip, tmp_path, view):
    config = PipelineConfig(overlay=OverlayConfig(view=view))
    after = probe(segment_to_file(make_clip(frames=3), backend, tmp_path, config))
    width = 128 if view == "side-by-side" else 64
    assert (after["frames"], after["width"], after["height"]) == (3, width, 48)


def test_batch_four_gives_the_same_masks_as_batch_one(backend, make_clip):
    clip = str(make_clip(frames=10))  # 10 = two full batches of 4 and a partial one
    masks = {}
    for batch in (1, 4):
        frames = list(segment_frames(clip, backend, PipelineConfig(batch=batch)))
        assert [f.index for f in frames] == list(range(10))
        masks[batch] = np.stack([f.labels for f in frames])
    assert masks[1].shape == (10, 48, 64)
    np.testing.assert_array_equal(masks[1], masks[4])


def test_generator_api_and_saved_masks(tiny_model, make_clip, tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    frames = list(segment_frames(str(make_clip(frames=4)), str(tiny_model), PipelineConfig(save_masks=folder)))
    assert len(frames) == 4 and frames[0].image.shape == (48, 64, 3)
    camvid = [value for rgb in CAMVID_PALETTE for value in rgb]
    for frame in frames:
        with Image.open(folder / f"{frame.index:06d}.png") as saved:
            # Palettised, as PASCAL VOC masks: values are class ids, viewers show CamVid colours.
            assert saved.mode == "P" and saved.getpalette()[:len(camvid)] == camvid
            np.testing.assert_array_equal(np.asarray(saved), frame.labels)
    assert not list(folder.glob(".*"))  # no temporary files left


def test_saved_mask_keeps_every_class_id_and_shows_its_colour(tmp_path):
    labels = np.arange(12, dtype=np.uint8).repeat(2).reshape(4, 6)  # the 11 classes and void
    path = save_mask(tmp_path, 7, labels, CAMVID_PALETTE)
    assert path.name == "000007.png"
    with Image.open(path) as saved:
        np.testing.assert_array_equal(np.asarray(saved), labels)
        shown = np.asarray(saved.convert("RGB"))  # what an image viewer displays
    np.testing.assert_array_equal(shown[labels < 11], np.asarray(CAMVID_PALETTE, np.uint8)[labels[labels < 11]])
    assert (shown[labels == 11] == 0).all()  # void is black


def test_stop_drains_in_flight_frames_in_order(backend, make_clip):
    stop = threading.Event()
    seen = []
    for frame in segment_frames(str(make_clip(frames=40)), backend, stop=stop):
        seen.append(frame.index)
        stop.set()
    assert 1 <= len(seen) < 40 and seen == list(range(len(seen)))


def test_threaded_stage_forwards_errors():
    def broken():
        yield 1
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        list(threaded(broken(), threading.Event(), 2))


def test_pad_geometry_keeps_aspect_and_stretch_fills():
    pad = plan_geometry((720, 1280), (360, 480), "pad")
    assert (pad.top, pad.left, pad.height, pad.width) == (45, 0, 270, 480)
    stretch = plan_geometry((720, 1280), (360, 480), "stretch")
    assert (stretch.top, stretch.left, stretch.height, stretch.width) == (0, 0, 360, 480)
    assert plan_geometry((100, 100), (360, 480)).enlarged_beyond(1.25)


def test_preprocess_normalises_and_pads_with_the_mean():
    info = ModelInfo.for_model("unet", input_size=(4, 8))
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[...] = np.round(np.asarray(info.mean) * 255).astype(np.uint8)
    tensor = Preprocessor(info, PreprocessConfig("pad"))(image)
    assert tensor.shape == (3, 4, 8) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, 0.0, atol=0.02)  # mean colour → 0, padding → 0
    white = Preprocessor(info, PreprocessConfig("stretch"))(np.full((2, 2, 3), 255, np.uint8))
    np.testing.assert_allclose(white[:, 0, 0], (1 - np.asarray(info.mean)) / np.asarray(info.std), rtol=1e-5)


def test_class_filter_leaves_other_pixels_untouched():
    info = ModelInfo.for_model("unet")
    image = np.full((4, 6, 3), 100, np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 3:] = 3  # Road on the right half, Sky on the left
    out = Renderer(info, OverlayConfig(classes=("road",), legend=False, alpha=1.0))(image, labels)
    np.testing.assert_array_equal(out[:, :3], image[:, :3])
    np.testing.assert_array_equal(out[:, 3:], np.broadcast_to(info.palette[3], (4, 3, 3)))
    with pytest.raises(ValueError, match="unknown class"):
        Renderer(info, OverlayConfig(classes=("unicorn",)))


def test_batches_keep_order_and_the_partial_tail():
    frames = [Frame(i, np.zeros((2, 2, 3), np.uint8), tensor=np.full((3, 2, 2), i, np.float32)) for i in range(5)]
    groups = list(batch_frames(frames, 2))
    assert [[f.index for f in g] for g in groups] == [[0, 1], [2, 3], [4]]
    padded = stack(groups[-1], pad_to=2)
    assert padded.shape == (2, 3, 2, 2) and (padded == 4).all()


def test_rotation_round_trip():
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    for rotation in (90, -90, 180):
        np.testing.assert_array_equal(coded(upright(image, rotation), rotation), image)


def test_stats_exclude_warmup_and_stay_bounded():
    timer = StageTimer("x", warmup=2)
    for seconds in (9.0, 9.0, 0.001, 0.003):
        timer.add(seconds)
    assert timer.summary()["mean_ms"] == pytest.approx(2.0)
    for _ in range(RESERVOIR + 100):
        timer.add(0.001)
    assert len(timer.samples) == RESERVOIR
    stats = RunStats(("a", "b"))
    stats.shares.add(np.array([[0, 1, 1, 1]], np.uint8))
    assert stats.summary()["class_shares"] == {"a": 0.25, "b": 0.75}


def test_palette_override_recolours_a_class():
    info = ModelInfo.for_model("unet")
    config = OverlayConfig(view="mask", legend=False, colors=(("road", (1, 2, 3)),))
    out = Renderer(info, config)(np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 3, np.uint8))
    assert (out == [1, 2, 3]).all()


class FixedBatchBackend:
    """Accepts exactly `max_batch` frames per call, like an ONNX file exported with a static batch."""

    def __init__(self, inner, size: int) -> None:
        self.inner, self.max_batch, self.info, self.calls = inner, size, inner.info, []
        self.min_batch = size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        assert len(batch) == self.max_batch
        self.calls.append(len(batch))
        return self.inner.predict(batch)


def test_last_partial_batch_is_padded_for_fixed_batch_backends(backend, make_clip):
    fixed = FixedBatchBackend(backend, 4)
    frames = list(segment_frames(str(make_clip(frames=6)), fixed, PipelineConfig(batch=4)))
    assert len(frames) == 6 and fixed.calls == [4, 4]


def test_last_partial_batch_is_not_padded_when_the_backend_takes_it(backend, make_clip):
    """A TensorRT profile of batch 1..4 runs the last 2 frames as 2 rows, not 4 (issue 13)."""
    ranged = FixedBatchBackend(backend, 4)
    ranged.min_batch = 1
    ranged.predict = lambda batch: ranged.calls.append(len(batch)) or backend.predict(batch)
    frames = list(segment_frames(str(make_clip(frames=6)), ranged, PipelineConfig(batch=4)))
    assert len(frames) == 6 and ranged.calls == [4, 2]


def test_upscaling_is_warned_once(caplog):
    info = ModelInfo.for_model("unet", input_size=(48, 64))
    preprocess = Preprocessor(info)
    with caplog.at_level("WARNING", logger="streamseg"):
        preprocess(np.zeros((12, 16, 3), np.uint8))
        preprocess(np.zeros((12, 16, 3), np.uint8))
    assert len([r for r in caplog.records if "upscaled" in r.message]) == 1


def test_the_models_own_enlargement_is_not_warned(caplog):
    """416x544 models read 360x480 frames enlarged 1.16x by design; a 240x320 webcam is 1.73x."""
    preprocess = Preprocessor(ModelInfo.for_model("unet", input_size=(416, 544)))
    with caplog.at_level("WARNING", logger="streamseg"):
        assert preprocess(np.zeros((360, 480, 3), np.uint8)).shape == (3, 416, 544)
        assert not caplog.records
        assert preprocess(np.zeros((240, 320, 3), np.uint8)).shape == (3, 416, 544)
    assert len([r for r in caplog.records if "upscaled" in r.message]) == 1


def test_postprocess_crops_the_padding_and_resizes_nearest():
    post = Postprocessor((360, 480), "pad")
    small = np.full((360, 480), 9, np.uint8)  # 9 marks padding
    small[45:315] = 3  # a 16:9 frame fills rows 45..314 of the 4:3 input
    labels = post(small, (720, 1280))
    assert labels.shape == (720, 1280) and (labels == 3).all()


def test_stages_that_only_read_model_metadata_do_not_import_torch():
    """ModelInfo is plain data: preprocess, postprocess and overlay load without torch or torchvision."""
    code = ("import sys; import streamseg.preprocess, streamseg.postprocess, streamseg.overlay, streamseg.decode; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
