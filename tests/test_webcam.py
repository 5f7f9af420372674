"""The camera path, through the same pipeline code, with a fake `cv2.VideoCapture`."""
from __future__ import annotations

import time

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import streamseg.webcam as webcam
from streamseg.runtime import load_backend
from streamseg.cli import main
from streamseg.encode import VideoWriter
from streamseg.source import CameraSource, SourceError, open_source


class FakeCapture:
    """Looks like `cv2.VideoCapture`: `frames` BGR frames at `fps`, then end of stream."""

    def __init__(self, index: int = 0, frames: int = 20, size: tuple[int, int] = (48, 64), fps: float = 100.0,
                 opened: bool = True) -> None:
        self.index, self.left, self.size, self.fps, self.opened = index, frames, size, fps, opened
        self.reads, self.released = 0, False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's spelling)
        return self.opened

    def read(self):
        if self.left == 0:
            return False, None
        time.sleep(1.0 / self.fps)  # a camera delivers frames at its own pace
        self.left -= 1
        self.reads += 1
        frame = np.zeros((*self.size, 3), np.uint8)
        frame[..., 0] = self.reads % 256  # blue in BGR
        return True, frame

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: self.size[1], cv2.CAP_PROP_FRAME_HEIGHT: self.size[0],
                cv2.CAP_PROP_FPS: 30.0}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


@pytest.fixture(scope="module")
def backend(tiny_model):
    return load_backend(str(tiny_model), "torch", "cpu")[0]


def test_camera_frames_are_rgb_live_and_timestamped():
    capture = FakeCapture(frames=3)
    source = open_source("0", capture_factory=lambda index: capture)
    assert isinstance(source, CameraSource) and source.info.live and source.info.rate == 30
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image[0, 0].tolist() == [0, 0, 1]  # BGR from OpenCV → RGB
    assert frames[0].pts <= frames[1].pts <= frames[2].pts
    source.close()
    assert capture.released


def test_camera_that_does_not_open_is_a_clear_error():
    with pytest.raises(SourceError, match="camera 3 could not be opened"):
        CameraSource(3, lambda index: FakeCapture(index, opened=False))


def test_live_pipeline_records_every_frame_it_does_not_drop(backend, tmp_path):
    capture = FakeCapture(frames=20)
    source = CameraSource(0, lambda index: capture)
    writer = VideoWriter(tmp_path / "rec.mp4", rate=source.info.rate)
    stats = webcam.run_webcam(source, backend, display=False, writer=writer)
    assert stats.frames + stats.dropped == 20  # only stale frames are dropped, and they are counted
    with av.open(str(tmp_path / "rec.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == stats.frames and (frames[0].width, frames[0].height) == (64, 48)


def test_q_in_the_window_quits(backend, monkeypatch):
    shown = []
    monkeypatch.setattr(webcam, "open_window", lambda name=webcam.WINDOW: None)
    monkeypatch.setattr(webcam.cv2, "imshow", lambda name, image: shown.append(image.shape))
    monkeypatch.setattr(webcam.cv2, "waitKey", lambda delay: ord("q") if len(shown) >= 3 else -1)
    monkeypatch.setattr(webcam.cv2, "getWindowProperty", lambda name, prop: 1.0)
    monkeypatch.setattr(webcam.cv2, "destroyAllWindows", lambda: None)
    capture = FakeCapture(frames=1000, fps=50)
    stats = webcam.run_webcam(CameraSource(0, lambda index: capture), backend, display=True)
    assert 3 <= stats.frames < 50 and capture.left > 900
    assert shown[0] == (48, 64, 3)


def test_webcam_command_records_with_a_fake_camera(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=200))
    output = tmp_path / "rec.mp4"
    result = CliRunner().invoke(main, ["webcam", "--camera", "1", "--no-show", "-o", str(output), "--max-frames", "4",
                                       "-m", str(tiny_model), "--backend", "torch"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with av.open(str(output)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 4


def test_run_command_accepts_a_camera_index(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=10))
    output = tmp_path / "cam.mp4"
    result = CliRunner().invoke(main, ["run", "0", "-o", str(output), "-m", str(tiny_model), "--backend", "torch",
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert output.is_file()


def test_show_without_a_display_is_a_one_line_error(tiny_model, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(main, ["webcam", "-m", str(tiny_model), "--backend", "torch"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error:") and "Traceback" not in result.output


def test_a_mistyped_model_is_named_before_the_display_is_checked(monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(main, ["webcam", "-m", "Fnc"])
    expected = ("Error: unknown model 'Fnc'; did you mean 'fcn'? use one of fcn, unet, deeplab, a .safetensors "
                "checkpoint, an exported .onnx file or a TensorRT .engine")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [expected]
