"""Shared fixtures: tiny clips and data made at test time, and the `gpu` marker."""
from __future__ import annotations

import os

# One intra-op thread for the suite and the subprocesses it starts: the models
# here are tiny, and torch's spinning thread pool makes 2-thread runs many
# times slower whenever the machine has other work (measured in the soak test).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def export_cache(tmp_path_factory: pytest.TempPathFactory):
    """Automatic exports go to a folder of this run, never the user's real ~/.cache/streamseg
    (set in os.environ, so the subprocesses and Ray workers tests start see it too).
    Tests that count exports point STREAMSEG_CACHE at their own tmp_path."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("streamseg-cache")
        patch.setenv("STREAMSEG_CACHE", str(folder))
        yield folder


# --- streaming runner fixtures (issue 4): tiny clips and a tiny random-init model ---

def write_clip(path, frames: int = 12, size: tuple[int, int] = (48, 64), rate: int = 15, *,
               audio: bool = False, rotation: int = 0):
    """Write a small H.264/MP4 clip (moving gradient, optional AAC tone) with PyAV; returns the path."""
    import av
    import numpy as np

    height, width = size
    odd = height % 2 or width % 2  # yuv420p needs even sizes: odd test clips use RGB H.264
    with av.open(str(path), "w") as out:
        codec = "libx264rgb" if odd else "libx264"
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if codec == "libx264" else "rgb24"
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=8000, layout="mono") if audio else None
        ys, xs = np.mgrid[0:height, 0:width]
        samples = 0
        for i in range(frames):
            image = np.stack([(xs * 4 + i * 9) % 256, (ys * 4) % 256, np.full_like(xs, (i * 20) % 256)], -1)
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            while sound is not None and samples < (i + 1) * 8000 // rate:
                tone = np.sin(2 * np.pi * 440 * (samples + np.arange(1024)) / 8000).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, samples
                out.mux(sound.encode(chunk))
                samples += 1024
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """A random-init UNet (4 base channels, depth 2) checkpoint that runs at 48x64."""
    from streamseg.checkpoint import ModelInfo, save_checkpoint

    torch.manual_seed(0)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=(48, 64))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors", info.build(), info)


@pytest.fixture()
def make_clip(tmp_path):
    """`make_clip(name, **write_clip options)` → path of a fresh clip in this test's tmp folder."""
    def make(name: str = "clip.mp4", **options):
        return write_clip(tmp_path / name, **options)
    return make
