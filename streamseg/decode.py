"""Decode: PyAV container → upright RGB `Frame`s carrying their own timestamps.

Timestamps are passed through as (pts, time_base) exactly as the container
has them: an MP4's time base is rarely 1/fps (1/15360 is common), and
variable-frame-rate files have no fps at all, so `index / fps` would drift.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from threading import Event

import av
import numpy as np

log = logging.getLogger("streamseg")


@dataclass(eq=False)
class Frame:
    """One video frame on its way through the pipeline: decode creates it, and
    `pipeline.Stages` fills in one field per later stage (nothing else writes them).

    `image` is `(H, W, 3) uint8` RGB, upright (display rotation already applied).
    """
    index: int
    image: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None
    rotation: int = 0                    # display rotation the source carried (degrees CCW)
    born: float = field(default_factory=time.perf_counter)   # for per-frame latency
    tensor: np.ndarray | None = None     # (3, h, w) float32 normalised model input
    small_labels: np.ndarray | None = None  # (h, w) uint8 at model resolution
    labels: np.ndarray | None = None     # (H, W) uint8 class indices at frame size
    rendered: np.ndarray | None = None   # (H', W', 3) uint8 RGB, what gets encoded or shown


@dataclass
class DecodeReport:
    """What went wrong while decoding, without stopping: corrupt packets are skipped and counted."""
    corrupt: int = 0
    truncated: str | None = None


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, PyAV's `VideoFrame.rotation`)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def coded(image: np.ndarray, rotation: int) -> np.ndarray:
    """Undo `upright`, so an encoder writing the same display matrix shows it the right way up."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, -turns)) if turns else image


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  *, stop: Event | None = None,
                  report: DecodeReport | None = None) -> Iterator[Frame]:
    """Yield every decodable frame in order; corrupt packets are logged, counted and skipped."""
    report = report if report is not None else DecodeReport()
    index = 0
    packets = container.demux(stream)
    while stop is None or not stop.is_set():
        try:
            packet = next(packets)
        except StopIteration:
            _check_complete(stream, index, report)
            return
        except av.FFmpegError as error:
            # A truncated or damaged container: keep what was decoded, then drain the decoder.
            report.truncated = str(error)
            log.warning("stopped reading after frame %d: %s", index, error)
            packet = None
        for frame in _decode_packet(stream, packet, report):
            # Rotation comes from the display matrix FFmpeg attaches to each decoded frame.
            rotation = int(round(frame.rotation or 0))
            image = upright(frame.to_ndarray(format="rgb24"), rotation)
            yield Frame(index, image, frame.pts, frame.time_base, rotation)
            index += 1
        if packet is None:
            return


def _check_complete(stream: av.video.stream.VideoStream, decoded: int, report: DecodeReport) -> None:
    """MP4s list their frames up front: fewer frames means the file was cut short (an interrupted copy)."""
    listed = stream.frames
    if listed and decoded + report.corrupt < listed and report.truncated is None:
        report.truncated = f"decoded {decoded} of {listed} frames"
        log.warning("decoded %d of the %d frames the file lists: it looks truncated", decoded, listed)


def _decode_packet(stream: av.video.stream.VideoStream, packet: av.Packet | None,
                   report: DecodeReport) -> list[av.VideoFrame]:
    try:
        return list(packet.decode()) if packet is not None else list(stream.codec_context.decode(None))
    except av.FFmpegError as error:
        report.corrupt += 1
        log.warning("skipped a corrupt packet (pts %s): %s", getattr(packet, "pts", None), error)
        return []
