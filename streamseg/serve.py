"""Serve: the live overlay in a browser — an MJPEG stream, a legend with class toggles, alpha, fps/latency.

For machines without a monitor (a remote box, a Jetson). The pipeline pushes
each rendered frame into a latest-frame slot and never waits for a viewer:
every viewer is sent the newest frame when it is ready for one, so a slow or
vanished viewer only misses frames. Starlette routes, uvicorn serves, on its
own thread; the page changes the overlay through `LiveRenderer`, which the
pipeline's render stage calls.

A camera is private: the server binds to 127.0.0.1 unless told otherwise,
and on any other address every request must carry a token printed at start.
It serves the page, the stream and the controls; never a file.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from importlib import resources

import cv2
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .modelinfo import ModelInfo
from .decode import Frame
from .overlay import OverlayConfig, Renderer, class_palette
from .source import VideoSource

LOOPBACK = ("127.0.0.1", "localhost")
BOUNDARY = "frame"
JPEG_QUALITY = 80  # small enough for a remote link, sharp enough to judge a mask's edges
# Kernel send buffer per viewer. Left to autotuning it grows to megabytes: a viewer that stops reading
# would get ~80 stale frames queued, and seconds of lag when it reads again. A few frames is enough
# to keep a link of 50 ms round trip busy. Accepted sockets inherit it from the listening socket.
SEND_BUFFER = 128 * 1024


class ServeError(OSError):
    """The server cannot start (address in use, unknown host, …)."""


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback: a camera is private until the user says otherwise
    port: int = 8000         # 0: any free port


class LiveRenderer:
    """A `Renderer` whose alpha and shown classes the page can change while frames flow.

    The render stage calls it from its thread; a change builds a new `Renderer`
    and swaps the reference, so a frame is drawn wholly with old or new settings.
    """

    def __init__(self, info: ModelInfo, config: OverlayConfig) -> None:
        self.info = info
        self.current = Renderer(info, config)

    def __call__(self, image: np.ndarray, labels: np.ndarray, text: str | None = None) -> np.ndarray:
        return self.current(image, labels, text)

    def update(self, *, alpha: float | None = None, shown: list[str] | None = None) -> None:
        """Raises ValueError for an alpha outside 0..1 or an unknown class (checked by `Renderer`)."""
        config = self.current.config
        if alpha is not None:
            config = replace(config, alpha=float(alpha))
        if shown is not None:
            config = replace(config, classes=tuple(str(name) for name in shown))
        self.current = Renderer(self.info, config)

    def state(self) -> dict:
        renderer = self.current
        colors = class_palette(self.info, renderer.config.colors)  # with --palette's overrides, as drawn
        classes = [{"name": name, "color": list(rgb), "shown": bool(renderer.drawn[i])}
                   for i, (name, rgb) in enumerate(zip(self.info.classes, colors, strict=True))]
        return {"alpha": renderer.config.alpha, "view": renderer.config.view, "classes": classes}


class FrameSlot:
    """The newest JPEG and its number. Written by the pipeline's thread, read on the server's loop.

    `put` never blocks on viewers: it swaps the reference and wakes the waiting
    viewers through the loop; each viewer then sends whatever is newest.
    """

    def __init__(self) -> None:
        self.latest: tuple[int, bytes] = (0, b"")  # (number, JPEG), swapped as one reference
        self.closed = False
        self.viewers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._changed = loop, asyncio.Event()

    def put(self, jpeg: bytes) -> None:
        self.latest = (self.latest[0] + 1, jpeg)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self.call_soon(self._notify)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the server's loop (from any thread); nothing once the loop has stopped."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(callback)

    def _notify(self) -> None:
        # Runs on the loop, so no viewer can check `number` and start waiting in between.
        self._changed.set()
        self._changed = asyncio.Event()

    async def newer(self, than: int) -> tuple[int, bytes] | None:
        """Wait for a frame newer than number `than`; None once the stream has ended."""
        while not self.closed and self.latest[0] == than:
            await self._changed.wait()
        return None if self.closed else self.latest


class TokenGate:
    """ASGI middleware: every request must carry the token (`?token=` or `Authorization: token …`)."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not self.allows(Request(scope)):
            refusal = PlainTextResponse("403: this stream needs the token printed when the server started "
                                        "(open the URL with ?token=…)", status_code=403)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def allows(self, request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("authorization", "").partition(" ")[2]
        return secrets.compare_digest(given.encode(), self.token.encode())


def page_html() -> str:
    return resources.files("streamseg").joinpath("serve.html").read_text(encoding="utf-8")


class ViewServer:
    """The browser view of one run: start it, hand `renderer` and `publish` to the pipeline, close it."""

    def __init__(self, info: ModelInfo, overlay: OverlayConfig, config: ServeConfig = ServeConfig()) -> None:
        self.renderer = LiveRenderer(info, overlay)
        self.slot = FrameSlot()
        self.host = config.host
        self.token = None if config.host in LOOPBACK else secrets.token_urlsafe(24)
        self.recent: deque[tuple[float, float]] = deque(maxlen=30)  # (published at, latency s) for live numbers
        self.frames = 0
        self.socket = listen(config.host, config.port)  # bound now: a busy port is an error before any work
        self.port = self.socket.getsockname()[1]
        app = build_app(self)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="streamseg-serve", daemon=True)

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> ViewServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise ServeError(f"the web server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def publish(self, frame: Frame) -> None:
        """Called by the pipeline for each rendered frame; JPEG-encodes it only while someone watches."""
        now = time.perf_counter()
        self.recent.append((now, now - frame.born))
        self.frames += 1
        if self.slot.viewers:
            bgr = cv2.cvtColor(frame.rendered, cv2.COLOR_RGB2BGR)
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                self.slot.put(jpeg.tobytes())

    def numbers(self) -> dict:
        """fps and median latency over the last frames published."""
        recent = list(self.recent)
        span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
        latency = float(np.median([late for _, late in recent])) * 1000 if recent else 0.0
        return {"frames": self.frames, "fps": (len(recent) - 1) / span if span > 0 else 0.0,
                "latency_ms": latency, "ended": self.slot.closed}

    def close(self) -> None:
        self.slot.close()  # ends the stream of every viewer waiting for a frame
        self.slot.call_soon(self._hang_up)
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.socket.close()

    def _hang_up(self) -> None:
        # A viewer that stopped reading is stuck in a send that would never finish; uvicorn would
        # cancel it after its grace period and log that as an error. Closing the connections
        # ends those sends as a disconnect, which Starlette handles quietly.
        for connection in list(self.server.server_state.connections):
            connection.transport.abort()

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.create_server((host, port), family=family)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        return listener
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                         "choose another --port or --host") from None


async def mjpeg(slot: FrameSlot) -> AsyncIterator[bytes]:
    """multipart/x-mixed-replace parts; each part's closing boundary is sent with it, so browsers
    show a frame at once instead of when the next one starts."""
    slot.viewers += 1
    try:
        number = 0
        yield f"--{BOUNDARY}\r\n".encode()
        while (latest := await slot.newer(number)) is not None:
            number, jpeg = latest
            head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
            yield head + jpeg + f"\r\n--{BOUNDARY}\r\n".encode()
    finally:
        slot.viewers -= 1


def build_app(view: ViewServer) -> Starlette:
    async def page(request: Request) -> Response:
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        return StreamingResponse(mjpeg(view.slot), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                 headers={"Cache-Control": "no-store"})

    async def stats(request: Request) -> Response:
        return JSONResponse(view.numbers())

    async def controls(request: Request) -> Response:
        if request.method == "POST":
            # JSON only: a cross-site form cannot send it without a CORS preflight, which we never grant.
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return PlainTextResponse("send the controls as application/json", status_code=415)
            try:
                change = await request.json()
                view.renderer.update(alpha=change.get("alpha"), shown=change.get("shown"))
            except (ValueError, TypeError, AttributeError) as error:
                return PlainTextResponse(f"bad controls: {error}", status_code=400)
        return JSONResponse(view.renderer.state())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        view.slot.bind(asyncio.get_running_loop())
        yield

    # Without a token, only requests addressed to loopback names pass: a web page elsewhere cannot
    # reach the camera by pointing its own host name at 127.0.0.1 (DNS rebinding).
    guard = (Middleware(TokenGate, token=view.token) if view.token else
             Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK)))
    routes = [Route("/", page), Route("/stream.mjpg", stream), Route("/stats", stats),
              Route("/controls", controls, methods=["GET", "POST"])]
    return Starlette(routes=routes, middleware=[guard], lifespan=lifespan)


class RealTime:
    """A file source played at its own speed, so a viewer sees a video rather than a blur.

    Every frame is still processed; only reading waits. Latency counts from when a frame is due.
    """

    def __init__(self, source: VideoSource) -> None:
        self.source, self.info, self.report = source, source.info, source.report

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        stop = stop if stop is not None else threading.Event()
        rate = float(self.info.rate or 25)
        start = None
        for frame in self.source.frames(stop):
            due = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else frame.index / rate
            start = time.perf_counter() - due if start is None else start
            stop.wait(max(0.0, start + due - time.perf_counter()))
            frame.born = time.perf_counter()
            yield frame

    def close(self) -> None:
        self.source.close()
