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
    keyframe: bool = True                # False: labels come from propagate.py, not the network
    motion_vectors: np.ndarray | None = None  # the decoder's block vectors (AVMotionVector records)
    references: tuple[int, int] = (1, 1)  # frames back / ahead to the past / future reference picture
    motion: object | None = None         # propagate.py's per-frame motion state


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


class ReferenceOrder:
    """How far back and ahead each frame's reference pictures are, from the packets' decode order.

    Motion vectors say only whether a block comes from the past or the future
    (`source` -1 / +1). With B-frames, the picture it comes from is the nearest
    one in display order that was decoded before this one (x264's first
    reference): e.g. I0 P4 B2 b1 b3 in decode order gives P4 a past reference 4
    frames back and b1 a future one 1 frame ahead.
    """

    def __init__(self, keep: int = 64) -> None:
        self.decoded: dict[int, int] = {}   # pts → decode position, the last `keep` packets
        self.keep, self.count = keep, 0

    def add(self, packet: av.Packet) -> None:
        if packet.pts is not None:
            self.decoded[packet.pts] = self.count
            self.count += 1
            if len(self.decoded) > self.keep:
                del self.decoded[next(iter(self.decoded))]

    def distances(self, frame: av.VideoFrame) -> tuple[int, int]:
        position, step = self.decoded.get(frame.pts), frame.duration
        if position is None or not step:
            return (1, 1)
        earlier = [pts for pts, pos in self.decoded.items() if pos < position]
        past = max((pts for pts in earlier if pts < frame.pts), default=frame.pts - step)
        future = min((pts for pts in earlier if pts > frame.pts), default=frame.pts + step)
        return (max(1, round((frame.pts - past) / step)), max(1, round((future - frame.pts) / step)))


def export_motion_vectors(stream: av.video.stream.VideoStream) -> None:
    """Ask the decoder for its motion vectors (H.264, MPEG-2/4; FFmpeg's HEVC decoder has none).

    Decoding costs the same: the vectors are decoded anyway and only copied out.
    Must be called before the first packet is decoded (the codec opens then).
    """
    stream.codec_context.options = {**stream.codec_context.options, "flags2": "+export_mvs"}


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  *, stop: Event | None = None, report: DecodeReport | None = None,
                  motion_vectors: bool = False) -> Iterator[Frame]:
    """Yield every decodable frame in order; corrupt packets are logged, counted and skipped.

    With `motion_vectors` (after `export_motion_vectors`), frames carry the
    decoder's block vectors and their reference distances.
    """
    report = report if report is not None else DecodeReport()
    order = ReferenceOrder() if motion_vectors else None
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
        if order is not None and packet is not None:
            order.add(packet)
        for frame in _decode_packet(stream, packet, report):
            # Rotation comes from the display matrix FFmpeg attaches to each decoded frame.
            rotation = int(round(frame.rotation or 0))
            image = upright(frame.to_ndarray(format="rgb24"), rotation)
            decoded = Frame(index, image, frame.pts, frame.time_base, rotation)
            if order is not None:
                vectors = frame.side_data.get("MOTION_VECTORS")
                decoded.motion_vectors = vectors.to_ndarray() if vectors is not None else None
                decoded.references = order.distances(frame)
            yield decoded
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
