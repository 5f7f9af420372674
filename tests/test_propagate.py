"""Keyframes and motion-compensated label propagation (propagate.py, motion.py), on synthetic clips.

The clips are a textured square gliding a known number of pixels per frame
over a textured, still background, encoded with libx264 (B-frames and all),
so both motion sources see real decoder output.
"""
from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from streamseg.motion import MotionEstimator, vectors_to_grid
from streamseg.propagate import KeyframeSelector, PropagateConfig, Propagator, plan_motion
from streamseg.source import VideoInfo, open_source
from streamseg.stats import StageTimer

HEIGHT, WIDTH, SIDE = 128, 160, 48
START, SPEED = (16, 24), (3, 1)   # (x, y) of the square's corner at frame 0, pixels per frame


def texture(seed: int, size: tuple[int, int], low: int = 0, high: int = 255) -> np.ndarray:
    """Blurred noise: detail at several scales, like a real surface (flat noise has no motion to find)."""
    noise = np.random.default_rng(seed).integers(0, 256, (*size, 3)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.5), None, low, high, cv2.NORM_MINMAX).astype(np.uint8)


def square_mask(index: int) -> np.ndarray:
    """(H, W) uint8: 1 on the square at frame `index`, 0 elsewhere."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    x, y = START[0] + SPEED[0] * index, START[1] + SPEED[1] * index
    mask[y:y + SIDE, x:x + SIDE] = 1
    return mask


def write_square_clip(path, frames: int = 16, cut_at: int | None = None):
    """The gliding square; from frame `cut_at` on, a different scene (new textures): a scene cut."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        # One encoder thread: x264's frame threads change its motion search, so the clip (and the
        # decoder's vectors) would differ with the machine's core count.
        stream.options = {"threads": "1"}
        for i in range(frames):
            scene = int(cut_at is not None and i >= cut_at)
            # Like most objects, the square stands out from what is behind it (brighter).
            image = texture(10 + scene, (HEIGHT, WIDTH), 0, 150)
            image[square_mask(i) > 0] = texture(20 + scene, (SIDE, SIDE), 110, 255).reshape(-1, 3)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def propagate_clip(path, config: PropagateConfig, motion: str, live: bool = False):
    """Run both stages with the true mask as the 'network' on keyframes; returns the frames."""
    source = open_source(str(path))
    selector = KeyframeSelector(config, motion)

    def decoded():
        for frame in source.frames(motion_vectors=motion == "mv"):
            selector(frame)
            if frame.keyframe:
                frame.labels = square_mask(frame.index)
            yield frame
    try:
        return list(Propagator(config, live, StageTimer("propagate"))(decoded()))
    finally:
        source.close()


def box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()])


@pytest.fixture(scope="module")
def square_clip(tmp_path_factory):
    return write_square_clip(tmp_path_factory.mktemp("clips") / "square.mp4")


def test_decoder_vectors_become_the_squares_motion(square_clip):
    """Inside the square, the dense field from the decoder's vectors is the true motion (one frame back)."""
    source = open_source(str(square_clip))
    frames = list(source.frames(motion_vectors=True))
    source.close()
    assert frames[0].motion_vectors is None   # the I-frame has none
    found = []
    for frame in frames[1:]:
        grid, known = vectors_to_grid(frame.motion_vectors, frame.references, (HEIGHT, WIDTH))
        x, y = START[0] + SPEED[0] * frame.index, START[1] + SPEED[1] * frame.index
        cells = grid[(y + 8) // 8:(y + SIDE - 8) // 8, (x + 8) // 8:(x + SIDE - 8) // 8]
        inner = known[(y + 8) // 8:(y + SIDE - 8) // 8, (x + 8) // 8:(x + SIDE - 8) // 8]
        if inner.any():
            found.append(np.median(cells[inner], axis=0))
    assert len(found) >= len(frames) // 2
    assert np.allclose(np.median(found, axis=0), [-SPEED[0], -SPEED[1]], atol=0.5)
    assert any(f.references != (1, 1) for f in frames)   # B-frames and P-frames refer further


@pytest.mark.parametrize("motion", ["mv", "flow"])
def test_fused_mask_follows_the_square(square_clip, motion):
    """Files: warped from both neighbouring keyframes, the mask is right to within a pixel or two."""
    frames = propagate_clip(square_clip, PropagateConfig(interval=5), motion)
    assert [f.index for f in frames] == list(range(16))
    assert [f.index for f in frames if f.keyframe] == [0, 5, 10, 15]
    for frame in frames:
        truth = square_mask(frame.index)
        assert frame.labels.shape == truth.shape
        assert np.abs(box(frame.labels) - box(truth)).max() <= 2, (frame.index, box(frame.labels), box(truth))
        band = cv2.dilate(truth, np.ones((5, 5), np.uint8)) - cv2.erode(truth, np.ones((5, 5), np.uint8))
        assert not np.any((frame.labels != truth) & (band == 0)), frame.index   # no error beyond 2 px of an edge


@pytest.mark.parametrize("motion", ["mv", "flow"])
def test_forward_only_mask_leads_with_the_square(square_clip, motion):
    """Forward only (live): the leading edges follow the square; only the background it uncovers
    may keep the old label (nothing in the last keyframe says what is behind it)."""
    frames = propagate_clip(square_clip, PropagateConfig(interval=5, fuse="forward"), motion)
    for frame in frames:
        truth = square_mask(frame.index)
        right, bottom = box(frame.labels)[2:], box(truth)[2:]
        assert np.abs(right - bottom).max() <= 2, (frame.index, box(frame.labels), box(truth))
        inner = cv2.erode(truth, np.ones((5, 5), np.uint8))
        assert frame.labels[inner > 0].all(), frame.index


def test_flow_estimates_the_squares_motion(square_clip):
    source = open_source(str(square_clip))
    estimator = MotionEstimator("flow")
    fields = [estimator(frame) for frame in source.frames()]
    source.close()
    x, y = START[0] + SPEED[0] * 6, START[1] + SPEED[1] * 6
    inner = fields[6].backward[y + 8:y + SIDE - 8, x + 8:x + SIDE - 8].reshape(-1, 2)
    assert np.allclose(np.median(inner, axis=0), [-SPEED[0], -SPEED[1]], atol=0.5)
    assert fields[0].valid.max() == 0   # nothing before the first frame


@pytest.mark.parametrize("motion", ["mv", "flow"])
def test_scene_cut_forces_a_keyframe_in_auto(tmp_path, motion):
    clip = write_square_clip(tmp_path / "cut.mp4", frames=20, cut_at=11)
    frames = propagate_clip(clip, PropagateConfig(interval="auto", max_interval=30), motion)
    keys = [f.index for f in frames if f.keyframe]
    assert 11 in keys
    assert len(keys) <= 6, keys   # smooth motion elsewhere: most frames are propagated


def test_live_sources_warp_forward_only(square_clip):
    """Live: each frame comes out as soon as it arrives (no waiting for the next keyframe)."""
    config = PropagateConfig(interval=5)
    source = open_source(str(square_clip))
    selector = KeyframeSelector(config, "flow")
    arrived: list[int] = []

    def decoded():
        for frame in source.frames():
            selector(frame)
            if frame.keyframe:
                frame.labels = square_mask(frame.index)
            arrived.append(frame.index)
            yield frame
    for frame in Propagator(config, True, StageTimer("propagate"))(decoded()):
        assert arrived[-1] == frame.index
    source.close()


def test_cameras_have_no_motion_vectors_and_use_flow():
    camera = VideoInfo("camera 0", 64, 48, None, None, live=True)
    motion, note = plan_motion(PropagateConfig(interval=3, motion="mv"), camera)
    assert motion == "flow" and note is not None and "cameras have no motion vectors" in note
    assert len(note.splitlines()) == 1
    hevc = VideoInfo("a.mp4", 64, 48, None, 10, codec="hevc")
    assert plan_motion(PropagateConfig(interval=3), hevc)[0] == "flow"
    h264 = VideoInfo("a.mp4", 64, 48, None, 10, codec="h264")
    assert plan_motion(PropagateConfig(interval=3), h264) == ("flow", None)  # auto: flow, measured better
    assert plan_motion(PropagateConfig(interval=3, motion="mv"), h264) == ("mv", None)
    assert plan_motion(PropagateConfig(interval=3, motion="flow"), h264) == ("flow", None)


@pytest.mark.parametrize("bad", [0, -1, 31, "often", 2.5])
def test_bad_intervals_are_refused(bad):
    with pytest.raises(ValueError, match="keyframe interval"):
        PropagateConfig(interval=bad)
