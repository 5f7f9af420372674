"""Video and image files for the bad-input corpus, written with PyAV at test time.

Every generator takes a folder and returns the path it wrote; files stay
small (a few KiB to a few hundred KiB) so the whole corpus builds in seconds.
`frames_in(path)` is the oracle for "every input frame yields one output
frame": it counts what PyAV itself can decode from the file.
"""
from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

MS = Fraction(1, 1000)


def pattern(index: int, height: int, width: int) -> np.ndarray:
    """`(H, W, 3) uint8` RGB: a moving gradient, different in every frame."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([(xs * 4 + index * 9) % 256, (ys * 4) % 256, np.full_like(xs, (index * 20) % 256)], -1)
    return image.astype(np.uint8)


def write_video(path: Path, sizes: Iterable[tuple[int, int]], *, codec: str = "libx264",
                pix_fmt: str = "yuv420p", pts_ms: Iterable[int] | None = None, rotation: int = 0,
                options: dict[str, str] | None = None, container_options: dict[str, str] | None = None) -> Path:
    """One frame per `(H, W)` in `sizes` (all equal), timestamps in milliseconds (default 15 fps)."""
    sizes = list(sizes)
    stamps = list(pts_ms) if pts_ms is not None else [round(i * 1000 / 15) for i in range(len(sizes))]
    height, width = sizes[0]
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=15, options={"preset": "ultrafast", **(options or {})}
                                if codec.startswith("libx26") else options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        # Millisecond time bases on both the encoder and the track, so irregular pts survive as written.
        stream.codec_context.time_base = stream.time_base = MS
        if rotation:
            stream.set_display_rotation(rotation)
        for index, ((h, w), pts) in enumerate(zip(sizes, stamps)):
            frame = av.VideoFrame.from_ndarray(pattern(index, h, w), format="rgb24")
            frame.pts, frame.time_base = pts, MS
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def clip(folder: Path, name: str = "clip.mp4", frames: int = 8, size: tuple[int, int] = (48, 64),
         **options) -> Path:
    """A plain H.264/yuv420p MP4."""
    return write_video(folder / name, [size] * frames, **options)


def frames_in(path: Path) -> int:
    """Frames PyAV decodes from `path`, skipping packets the decoder rejects (as the runner does)."""
    count = 0
    with av.open(str(path), metadata_errors="replace") as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                count += len(packet.decode())
            except av.FFmpegError:
                continue
    return count


# --- inputs that must be refused with a one-line error -----------------------------------------

def empty_file(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "noise.mp4"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    return path


def truncated_tail(folder: Path) -> Path:
    """Cut mid-stream with the index (moov) at the end, as most cameras write: nothing is readable."""
    full = clip(folder, "full.mp4", frames=30)
    path = folder / "truncated.mp4"
    path.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    full.unlink()
    return path


def _tone(start: int, rate: int = 8000) -> av.AudioFrame:
    """1024 samples of a 440 Hz tone starting at sample `start`, mono float."""
    tone = np.sin(2 * np.pi * 440 * (start + np.arange(1024)) / rate).astype(np.float32)
    chunk = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
    chunk.sample_rate, chunk.pts = rate, start
    return chunk


def audio_only(folder: Path) -> Path:
    path = folder / "audio_only.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000, layout="mono")
        for start in range(0, 8000, 1024):
            out.mux(stream.encode(_tone(start)))
        out.mux(stream.encode(None))
    return path


def clip_with_audio(folder: Path, frames: int, name: str = "with_audio.mp4") -> Path:
    """64x48 H.264 at 15 fps with an AAC tone as long as the video."""
    path = folder / name
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=15, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound, samples = out.add_stream("aac", rate=8000, layout="mono"), 0
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(index, 48, 64), format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
            while samples < (index + 1) * 8000 // 15:
                out.mux(sound.encode(_tone(samples)))
                samples += 1024
        out.mux(video.encode(None))
        out.mux(sound.encode(None))
    return path


def unknown_codec(folder: Path) -> Path:
    """An MP4 whose sample entry names a codec nobody knows ('zzzz' instead of 'avc1')."""
    good = clip(folder, "good.mp4")
    path = folder / "unknown_codec.mp4"
    path.write_bytes(good.read_bytes().replace(b"avc1", b"zzzz"))
    good.unlink()
    return path


# --- valid but odd inputs: processed, not rejected --------------------------------------------

def bad_metadata(folder: Path) -> Path:
    """A fine video whose title tag is not UTF-8 (old cameras write Latin-1 or garbage)."""
    path = folder / "latin1_title.mp4"
    with av.open(str(path), "w") as out:
        out.metadata["title"] = "TITLE_PLACEHOLDER"
        stream = out.add_stream("libx264", rate=15, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pattern(index, 48, 64), format="rgb24")))
        out.mux(stream.encode(None))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"TITLE_PLACEHOLDER", "Straße am Fluß\xff\xfe".encode("latin-1")[:17].ljust(17)))
    return path


def truncated_indexed(folder: Path) -> Path:
    """Cut mid-stream with the index first (`faststart`): the frames before the cut are readable."""
    full = clip(folder, "full.mp4", frames=30, container_options={"movflags": "faststart"})
    path = folder / "truncated_faststart.mp4"
    path.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    full.unlink()
    return path


def still_png(folder: Path) -> Path:
    path = folder / "still.png"
    cv2.imwrite(str(path), pattern(0, 48, 64)[..., ::-1])
    return path


def still_jpeg(folder: Path) -> Path:
    path = folder / "still.jpg"
    cv2.imwrite(str(path), pattern(0, 48, 64)[..., ::-1])
    return path


def one_by_one(folder: Path) -> Path:
    # yuv420p cannot hold odd sizes; RGB H.264 can, as phones' odd crops do via other layouts.
    return write_video(folder / "1x1.mp4", [(1, 1)] * 3, codec="libx264rgb", pix_fmt="rgb24")


def odd_size(folder: Path) -> Path:
    return write_video(folder / "479x359.mp4", [(359, 479)] * 4, codec="libx264rgb", pix_fmt="rgb24")


def tall_portrait(folder: Path) -> Path:
    """4K portrait (2160 wide, 3840 tall), kept to 2 frames so it stays quick."""
    return write_video(folder / "portrait_2160x3840.mp4", [(3840, 2160)] * 2)


def ten_bit(folder: Path) -> Path:
    return write_video(folder / "10bit.mp4", [(48, 64)] * 6, pix_fmt="yuv420p10le")


def yuv444(folder: Path) -> Path:
    return write_video(folder / "yuv444.mp4", [(48, 64)] * 6, pix_fmt="yuv444p")


def gray(folder: Path) -> Path:
    # libx264 silently stores gray as 4:2:0; FFV1 keeps a true single-plane gray stream.
    return write_video(folder / "gray.mkv", [(48, 64)] * 6, codec="ffv1", pix_fmt="gray")


VFR_PTS_MS = (0, 33, 50, 120, 133, 300, 310, 700, 733, 1000)


def variable_rate(folder: Path) -> Path:
    """Irregular frame intervals (10 ms to 390 ms), as phones write when the light changes."""
    return write_video(folder / "vfr.mp4", [(48, 64)] * len(VFR_PTS_MS), pts_ms=VFR_PTS_MS)


def rotated(folder: Path, degrees: int = 90) -> Path:
    """A phone video: 64x48 coded, with a display matrix saying to turn it by `degrees`."""
    return write_video(folder / f"rotated{degrees}.mp4", [(48, 64)] * 5, rotation=degrees)


def size_change(folder: Path) -> Path:
    """An MPEG-TS stream whose frames switch from 64x48 to 96x80 halfway (a new SPS mid-stream).

    A broadcast or a concatenated recording does this; one MP4 track cannot,
    so two encoders feed the same TS stream, each starting with a keyframe.
    """
    path = folder / "size_change.ts"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        encoders = [_standalone_encoder(48, 64), _standalone_encoder(80, 96)]
        index = 0
        for (height, width), encoder in zip(((48, 64), (80, 96)), encoders):
            for _ in range(4):
                frame = av.VideoFrame.from_ndarray(pattern(index, height, width), format="rgb24")
                frame.pts = index
                _mux(out, stream, encoder.encode(frame))
                index += 1
            _mux(out, stream, encoder.encode(None))
    return path


def _standalone_encoder(height: int, width: int) -> av.CodecContext:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 15), Fraction(15)
    encoder.options = {"preset": "ultrafast", "bf": "0"}  # no B-frames: dts == pts, simple muxing
    return encoder


def _mux(out: av.container.OutputContainer, stream: av.video.stream.VideoStream, packets: list[av.Packet]) -> None:
    for packet in packets:
        packet.stream = stream
        packet.time_base = Fraction(1, 15)
        out.mux(packet)
