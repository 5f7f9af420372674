"""Real frames for checking and calibrating exports: a video or a folder of images.

Export checks compare backends on frames like the ones they will see, not on
noise (random inputs make every class a near-tie). The default source is the
CamSeq01 sample clip shipped in `samples/`.
"""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from ..checkpoint import ModelInfo

SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "samples" / "camseq01.mp4"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FrameSourceError(ValueError):
    """A calibration/check source that holds no readable frames."""


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced over `items` (all of them if fewer)."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def read_video(path: Path, count: int) -> list[np.ndarray]:
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # Convert only the frames we keep: a long --calib video must not be held in memory.
            # (Containers that do not state a frame count fall back to keeping all.)
            total = stream.frames
            keep = set(spread(range(total), count)) if total else None
            frames = [frame.to_ndarray(format="rgb24") for i, frame in enumerate(container.decode(stream))
                      if keep is None or i in keep]
    except (av.FFmpegError, IndexError) as error:
        raise FrameSourceError(f"cannot read video {path}: {error}") from None
    return spread(frames, count)


def read_images(folder: Path, count: int) -> list[np.ndarray]:
    paths = spread(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), count)
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameSourceError(f"cannot read image {path}")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return frames


def load_frames(source: str | Path | None = None, count: int = 8) -> list[np.ndarray]:
    """Up to `count` RGB `(H, W, 3) uint8` frames spread over a video or image folder."""
    path = Path(source) if source else SAMPLE_CLIP
    if not path.exists():
        hint = " (the sample clip ships in the repository's samples/; pass --calib)" if source is None else ""
        raise FrameSourceError(f"frame source not found: {path}{hint}")
    frames = read_images(path, count) if path.is_dir() else read_video(path, count)
    if not frames:
        raise FrameSourceError(f"no frames in {path} (expected a video or a folder of .png/.jpg images)")
    return frames


def to_batch(frames: list[np.ndarray], info: ModelInfo, size: tuple[int, int]) -> np.ndarray:
    """RGB frames → `(N, 3, H, W) float32`, resized to `size` and normalised with the model's mean/std."""
    height, width = size
    mean = np.asarray(info.mean, dtype=np.float32) * 255
    std = np.asarray(info.std, dtype=np.float32) * 255
    resized = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA if f.shape[0] > height
                          else cv2.INTER_LINEAR) for f in frames]
    batch = (np.stack(resized).astype(np.float32) - mean) / std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
