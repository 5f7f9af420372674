"""Encode: rendered frames → H.264/MP4 with the source's timestamps, rotation and audio.

The file is written under a hidden temporary name in the output's folder and
renamed into place by `VideoWriter.close()`, so the final name only ever holds
a complete, playable file: after a normal end, or after Ctrl-C/SIGTERM once
the frames in flight are flushed. `abort()` deletes the temporary file.
"""
from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .decode import Frame, coded

log = logging.getLogger("streamseg")
# Encoders that take x264-style `crf` / `preset` options.
CRF_CODECS = ("libx264", "libx265")
# FFmpeg's MOV-family muxers (.mov, .mp4): they take the `movie_timescale` option.
MOV_FORMATS = ("mov", "mp4")


class EncodeError(RuntimeError):
    """The output cannot be written (bad codec, unwritable folder, …)."""


@dataclass(frozen=True)
class EncodeConfig:
    codec: str = "libx264"     # H.264 in MP4 plays everywhere
    crf: int = 23              # x264's default quality
    preset: str = "veryfast"   # keeps encoding well below inference time on a small CPU
    pix_fmt: str = "yuv420p"   # the only chroma layout every player decodes
    audio: bool = True         # copy the source's audio stream unchanged
    threads: int = 0           # x264/x265 threads; 0: the encoder's default (1.5x the cores), see threads.py


def check_codec(name: str) -> None:
    try:
        codec = av.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        raise EncodeError(f"encoder {name!r} is not available in this FFmpeg build") from None
    if codec.type != "video":
        raise EncodeError(f"{name!r} is not a video encoder")


def partial_path(path: Path) -> Path:
    """The hidden temporary name; it keeps the suffix so FFmpeg picks the same container."""
    return path.parent / f".{path.stem}.partial-{os.getpid()}{path.suffix}"


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail before any work if the output exists (without --overwrite) or its folder is unwritable."""
    if path.exists() and not overwrite:
        raise EncodeError(f"{path} already exists; pass --overwrite to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise EncodeError(f"cannot write {path}: {path.parent} is a file, not a folder")
    if not path.parent.is_dir():
        raise EncodeError(f"output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise EncodeError(f"output folder {path.parent} is not writable")
    check_container(path)


def check_container(path: Path) -> None:
    """FFmpeg picks the container from the file name: an unknown suffix fails here, before any work."""
    probe = io.BytesIO()
    probe.name = f"probe{path.suffix}"  # an in-memory stand-in, so nothing is created on disk
    try:
        av.open(probe, "w").close()
    except ValueError:
        suffix = path.suffix or "a name without a suffix"
        raise EncodeError(f"cannot write {path}: FFmpeg has no container for {suffix}; use .mp4, .mkv or .mov") \
            from None


def even(image: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by repeating the last row/column: yuv420p stores chroma per 2x2 block."""
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if pad_h or pad_w:
        return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return image


def set_timing(container: av.container.OutputContainer, stream: av.video.stream.VideoStream,
               source: Fraction | None, rate: Fraction) -> Fraction:
    """Give the encoder the time base frames are timed in, and return it.

    Containers that store a time per frame (MP4, MOV, Matroska) keep the source's
    time base, so its pts go through unchanged (1/1000 when it has none): rounding
    to 1/fps could merge frames of a variable-rate source (a camera) onto one tick.
    Those that store a frame rate instead (AVI: packet n is shown at n/fps, gaps
    become empty frames) get 1/fps, as FFmpeg's own CLI gives them, and no
    B-frames: with no per-frame times, a reordered frame would be shown with the
    time of its packet's place in decode order.
    """
    if container.format.flags & av.format.Flags.variable_fps.value:
        time_base = source or Fraction(1, 1000)
        if container.format.name in MOV_FORMATS:
            # The edit list that delays a late first frame counts in the movie's own
            # time scale (1/1000 by default): give it the track's, so it is exact too.
            container.options["movie_timescale"] = str(time_base.denominator)
    else:
        time_base = 1 / Fraction(rate)
        stream.codec_context.max_b_frames = 0
    stream.time_base = stream.codec_context.time_base = time_base
    return time_base


class AudioCopier:
    """Copies the source's first audio stream packet by packet (no re-encoding)."""

    def __init__(self, source: str, output: av.container.OutputContainer) -> None:
        self.input = av.open(source, metadata_errors="replace")  # as the video source opens it
        self.in_stream = self.input.streams.audio[0]
        self.out_stream = output.add_stream_from_template(self.in_stream)
        self.output = output
        self.packets = self.input.demux(self.in_stream)
        self.pending: av.Packet | None = None

    def copy_until(self, seconds: float | None) -> None:
        """Mux audio packets that start before `seconds` (None: all that remain)."""
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None or packet.dts is None:  # end of stream, or the demuxer's flush packet
                return
            if seconds is not None and packet.pts is not None and packet.pts * packet.time_base > seconds:
                self.pending = packet
                return
            packet.stream = self.out_stream
            self.output.mux(packet)

    def close(self) -> None:
        self.input.close()


class VideoWriter:
    """Writes frames to `path` via a temporary file; `close()` finalises and renames."""

    def __init__(self, path: str | Path, config: EncodeConfig = EncodeConfig(), *, rate: Fraction | None = None,
                 audio_from: str | None = None) -> None:
        check_codec(config.codec)
        self.path, self.config = Path(path), config
        self.rate = rate or Fraction(30)
        self.tmp = partial_path(self.path)
        self.audio_from = audio_from if config.audio else None
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.audio: AudioCopier | None = None
        self.frames, self.rotation, self.last_pts, self.end_seconds = 0, 0, None, 0.0
        self.time_base = Fraction(1, 1000)  # the encoder's, set on the first frame
        self.resized = False  # warned that the source changed frame size mid-stream

    def _open(self, height: int, width: int, frame: Frame) -> None:
        try:
            self.container = av.open(str(self.tmp), "w")
        except (av.FFmpegError, OSError) as error:
            raise EncodeError(f"cannot write {self.path}: {error}") from None
        options = {"crf": str(self.config.crf), "preset": self.config.preset} \
            if self.config.codec in CRF_CODECS else {}
        if self.config.threads and self.config.codec in CRF_CODECS:
            options["threads"] = str(self.config.threads)
        stream = self.container.add_stream(self.config.codec, rate=self.rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, self.config.pix_fmt
        # Frames are timed in the encoder's time base, chosen here and kept: the muxer may
        # replace `stream.time_base` when it writes the header (Matroska: 1/1000), and PyAV
        # rescales each packet from the encoder's time base to the stream's when muxing.
        self.time_base = set_timing(self.container, stream, frame.time_base, self.rate)
        self.rotation = frame.rotation
        if frame.rotation:
            stream.set_display_rotation(frame.rotation)
        self.stream = stream
        if self.audio_from:
            self.audio = AudioCopier(self.audio_from, self.container)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Encode one `(H, W, 3) uint8` RGB image, upright, with `frame`'s timestamp."""
        stored = coded(image, frame.rotation)
        picture = even(stored)
        if self.container is None:
            if picture.shape != stored.shape:
                log.warning("odd frame size %dx%d: padded to %dx%d for %s", stored.shape[1], stored.shape[0],
                            picture.shape[1], picture.shape[0], self.config.pix_fmt)
            self._open(*picture.shape[:2], frame)
        elif picture.shape[:2] != (self.stream.height, self.stream.width) and not self.resized:
            # One track has one size: the encoder scales the rest (PyAV's reformatter) rather than fail.
            log.warning("frame %d is %dx%d, the video %dx%d: frames of another size are scaled to fit", frame.index,
                        picture.shape[1], picture.shape[0], self.stream.width, self.stream.height)
            self.resized = True
        out = av.VideoFrame.from_ndarray(picture, format="rgb24")
        out.pts, out.time_base = self._timestamp(frame)
        try:
            self.container.mux(self.stream.encode(out))
        except (av.FFmpegError, OSError) as error:
            raise self._write_error(error) from None
        self.frames += 1
        self.end_seconds = float(out.pts * out.time_base)
        if self.audio:
            self.audio.copy_until(self.end_seconds)

    def _timestamp(self, frame: Frame) -> tuple[int, Fraction]:
        time_base = self.time_base
        if frame.pts is None:  # no container timestamp (raw streams): one nominal frame after the last
            pts = 0 if self.last_pts is None else self.last_pts + max(1, round(1 / (self.rate * time_base)))
        else:
            pts = round(frame.pts * (frame.time_base or time_base) / time_base)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # MP4 needs strictly increasing timestamps
        self.last_pts = pts
        return pts, time_base

    def close(self, *, complete: bool = True) -> Path:
        """Flush the encoder, finish the container and move it to its final name.

        `complete=False` (an interrupted run) copies audio only up to the last
        video frame, so sound and picture end together.
        """
        if self.container is None:
            raise EncodeError(f"no frames to write to {self.path}")
        try:
            self.container.mux(self.stream.encode(None))
            if self.audio:
                self.audio.copy_until(None if complete else self.end_seconds)
                self.audio.close()
            self.container.close()
        except (av.FFmpegError, OSError) as error:
            self.abort()
            raise self._write_error(error) from None
        except BaseException:
            self.abort()
            raise
        os.replace(self.tmp, self.path)
        return self.path

    def _write_error(self, error: Exception) -> EncodeError:
        """Disk full, file too large, share gone: name the output the user asked for, not the temp file."""
        return EncodeError(f"cannot write {self.path}: {getattr(error, 'strerror', None) or error}")

    def abort(self) -> None:
        """Drop the temporary file; the final name is never touched."""
        if self.audio:
            self.audio.close()
        if self.container is not None:
            try:
                self.container.close()
            except av.FFmpegError:
                pass
        self.tmp.unlink(missing_ok=True)
