"""Source: turn `SOURCE` (a path, a glob, a URL or a camera index) into frames.

Files and URLs are read with PyAV (see `decode.py`); cameras with OpenCV's
`VideoCapture`, wrapped in `CameraSource` so tests can hand in any object
with the same four methods (`isOpened`, `read`, `get`, `release`).
"""
from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from threading import Event
from typing import Any, Protocol

import av
import cv2

from .decode import DecodeReport, Frame, decode_frames, export_motion_vectors
from .threads import plan_threads

# Network streams that play in real time: the runner keeps only the newest frame.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")
# Assumed camera rate when the driver reports none (many webcams report 0).
DEFAULT_CAMERA_FPS = 30
# Seconds a URL may take to connect and to deliver each read before it counts as dead.
OPEN_TIMEOUT_S = 10.0


class SourceError(ValueError):
    """A source that cannot be opened or read; the message says which and why."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before its first frame."""
    name: str
    width: int
    height: int
    rate: Fraction | None            # nominal frame rate, for the encoder; timestamps win
    frames: int | None               # expected frame count (None: live or unknown)
    live: bool = False
    audio: bool = False              # has an audio stream worth copying
    codec: str | None = None         # FFmpeg decoder name (None: cameras)


class VideoSource(Protocol):
    info: VideoInfo
    report: DecodeReport

    def frames(self, stop: Event | None = None) -> Iterator[Frame]: ...
    def close(self) -> None: ...


class FileSource:
    """A file or URL opened with PyAV; decoding runs on FFmpeg's own threads."""

    def __init__(self, location: str, *, live: bool = False, options: dict[str, str] | None = None) -> None:
        self.location = location
        self.report = DecodeReport()
        started = time.monotonic()
        try:
            # Tags are not worth failing over: damaged or non-UTF-8 metadata is decoded with replacements.
            self.container = av.open(location, options=options or {}, timeout=OPEN_TIMEOUT_S,
                                     metadata_errors="replace")
        except (ConnectionError, TimeoutError) as error:  # PyAV's network errors subclass these builtins
            raise SourceError(f"cannot connect to {location}: {_reason(error)}") from None
        except av.ExitError:  # our timeout's interrupt callback fired: the server accepted but never answered
            waited = time.monotonic() - started  # FFmpeg may retry a request, so measure rather than assume
            raise SourceError(f"cannot open {location}: no answer in {waited:.0f} s") from None
        except av.FFmpegError as error:
            raise SourceError(f"cannot open {location}: not a video FFmpeg can read ({_reason(error)})") from None
        except OSError as error:
            raise SourceError(f"cannot read {location}: {error.strerror or error}") from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{location} has no video stream")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:  # a damaged header can name a codec FFmpeg has no decoder for
            self.container.close()
            raise SourceError(f"cannot decode {location}: no decoder for its video codec (corrupt or unsupported)")
        self.stream.thread_type = "AUTO"  # frame + slice threads: decoding overlaps the rest
        self.stream.thread_count = plan_threads().decode  # not one per core: see threads.py
        self.info = self._describe(live)

    def _describe(self, live: bool) -> VideoInfo:
        stream = self.stream
        rate = stream.average_rate or stream.guessed_rate
        count = stream.frames or None
        if count is None and stream.duration and stream.time_base and rate:
            count = int(stream.duration * stream.time_base * rate)
        return VideoInfo(self.location, stream.codec_context.width, stream.codec_context.height,
                         Fraction(rate) if rate else None, None if live else count, live,
                         bool(self.container.streams.audio), stream.codec_context.name)

    def frames(self, stop: Event | None = None, *, motion_vectors: bool = False) -> Iterator[Frame]:
        """Decoded frames; with `motion_vectors`, each carries the decoder's block vectors."""
        if motion_vectors:
            export_motion_vectors(self.stream)
        return decode_frames(self.container, self.stream, stop=stop, report=self.report,
                             motion_vectors=motion_vectors)

    def close(self) -> None:
        self.container.close()


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


class Capture(Protocol):
    """The part of `cv2.VideoCapture` a camera source uses."""
    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's spelling)
    def read(self) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


def _quietly(open_capture: Callable[[], Capture]) -> Capture:
    """Open a capture with OpenCV's log silenced: a missing camera makes every videoio backend
    print WARN/ERROR lines, and the one-line error that follows already says what matters."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return open_capture()
    finally:
        cv2.utils.logging.setLogLevel(level)


class CameraSource:
    """A live camera through `cv2.VideoCapture` (or any `Capture`-like object)."""

    def __init__(self, index: int, capture_factory: Callable[[int], Capture] | None = None) -> None:
        self.report = DecodeReport()
        self.capture = _quietly(lambda: (capture_factory or cv2.VideoCapture)(index))
        if not self.capture.isOpened():
            self.capture.release()
            raise SourceError(f"camera {index} could not be opened (is it connected and not in use?)")
        fps = self.capture.get(cv2.CAP_PROP_FPS) or DEFAULT_CAMERA_FPS
        self.info = VideoInfo(f"camera {index}", int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                              int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                              Fraction(fps).limit_denominator(1001), None, live=True)

    def frames(self, stop: Event | None = None) -> Iterator[Frame]:
        # Cameras give no container timestamps: stamp frames with the arrival time
        # in milliseconds, so a recording plays at the speed things happened.
        start, index, time_base = time.monotonic(), 0, Fraction(1, 1000)
        while stop is None or not stop.is_set():
            ok, bgr = self.capture.read()
            if not ok or bgr is None:
                return
            pts = round((time.monotonic() - start) * 1000)
            yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pts, time_base)
            index += 1

    def close(self) -> None:
        self.capture.release()


def expand_sources(spec: str) -> list[str]:
    """A glob pattern → the matching files (sorted); anything else → itself."""
    if any(ch in spec for ch in "*?[") and not Path(spec).exists() and "://" not in spec:
        matches = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not matches:
            raise SourceError(f"no files match {spec!r}")
        return matches
    return [spec]


def open_source(spec: str, *, capture_factory: Callable[[int], Capture] | None = None) -> VideoSource:
    """Open one source: a camera index (`0`), a URL, or a file path."""
    if spec.isdigit():
        return CameraSource(int(spec), capture_factory)
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme:
        options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else None  # UDP drops frames on busy links
        return FileSource(spec, live=scheme in LIVE_SCHEMES, options=options)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"no such file: {spec}")
    if not path.is_file():
        raise SourceError(f"not a file: {spec}")
    if path.stat().st_size == 0:
        raise SourceError(f"{spec} is empty (0 bytes)")
    return FileSource(str(path))
