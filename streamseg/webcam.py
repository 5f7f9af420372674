"""The live demo: camera → the same pipeline as `streamseg run` → a window (and a recording).

The window is driven from the calling (main) thread, as GUI toolkits require;
decoding, inference and rendering run on the pipeline's threads. The camera
is a live source, so only the newest frame is processed and what the window
shows lags the camera by about one frame's processing time, not by a queue.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

import cv2

from .backends import Backend
from .decode import Frame
from .encode import VideoWriter
from .overlay import Renderer
from .pipeline import PipelineConfig, segment_frames
from .source import SourceError, VideoSource
from .stats import RunStats

WINDOW = "streamseg (q or Esc to quit)"
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc


class DisplayError(RuntimeError):
    """No window can be opened (headless OpenCV build or no display)."""


def gui_backend() -> str:
    """The GUI toolkit OpenCV was built with ("NONE" for the headless wheels)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip()
    return "NONE"


def check_display() -> None:
    """Fail early, with a clear message, where no window can be opened."""
    if gui_backend() == "NONE":
        raise DisplayError("this OpenCV build cannot open a window (opencv-python-headless, the default install); "
                           "use --serve to watch in a browser, --no-show --output FILE to record, or install the "
                           "GUI build (README: A local window)")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # Checked here because Qt aborts the whole process when it cannot reach a display.
        raise DisplayError("no display (DISPLAY is not set); use --serve to watch in a browser, "
                           "or --no-show --output FILE to record")


def open_window(name: str = WINDOW) -> None:
    check_display()
    try:
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)
    except cv2.error as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise DisplayError(f"cannot open a window ({reason}); use --serve to watch in a browser, "
                           "or --no-show --output FILE to record") from None


def show(frame_rgb, name: str = WINDOW) -> bool:
    """Show one `(H, W, 3) uint8` RGB frame; True when the user asked to quit."""
    cv2.imshow(name, cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
    key = cv2.waitKey(1) & 0xFF  # also runs the GUI event loop
    closed = cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1  # the window's close button
    return key in QUIT_KEYS or closed


def run_webcam(source: VideoSource, backend: Backend, config: PipelineConfig = PipelineConfig(), *,
               display: bool = True, writer: VideoWriter | None = None, stats: RunStats | None = None,
               stop: threading.Event | None = None, max_frames: int | None = None,
               renderer: Renderer | None = None, on_frame: Callable[[Frame], None] | None = None) -> RunStats:
    """Segment a live source until it ends, `stop` is set, the user quits, or `max_frames` were shown.

    `renderer` replaces the one built from `config.overlay`; `on_frame` sees each frame (the browser view).
    """
    stats = stats if stats is not None else RunStats(backend.info.classes)
    stop = stop if stop is not None else threading.Event()
    renderer = renderer if renderer is not None else Renderer(backend.info, config.overlay)
    if display:
        open_window()
    try:
        for frame in segment_frames(source, backend, config, stats=stats, stop=stop, renderer=renderer):
            if writer is not None:
                with stats["encode"].time():
                    writer.write(frame, frame.rendered)
            stats.frame_done(frame.born)
            if on_frame is not None:
                on_frame(frame)
            if display and show(frame.rendered):
                stop.set()  # frames already in flight are still drawn and recorded
            if max_frames is not None and stats.frames >= max_frames:
                stop.set()
        if stats.frames == 0:
            raise SourceError(f"{source.info.name} delivered no frames")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if display:
            cv2.destroyAllWindows()
            cv2.waitKey(1)  # lets the GUI backend actually tear the window down
    return stats
