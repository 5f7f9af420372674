"""The browser view (`--serve`): a real uvicorn server on loopback, real sockets, no mocks of HTTP.

The end-to-end test in a real headless Chromium is in test_serve_browser.py.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_webcam import FakeCapture

from streamseg import webcam
from streamseg.runtime import load_backend
from streamseg.cli import main
from streamseg.encode import VideoWriter
from streamseg.overlay import OverlayConfig
from streamseg.serve import FrameSlot, ServeConfig, ViewServer
from streamseg.source import CameraSource


@pytest.fixture(scope="module")
def backend(tiny_model):
    return load_backend(str(tiny_model), "torch", "cpu")[0]


def get(url: str, headers: dict | None = None, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def first_jpeg(url: str, timeout: float = 20) -> np.ndarray:
    """Read the MJPEG stream until one whole JPEG has arrived; decoded RGB."""
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        assert reply.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        data = b""
        while (end := data.find(b"\xff\xd9")) < 0:
            chunk = reply.read1(65536)
            assert chunk, "the stream ended before a whole frame arrived"
            data += chunk
    jpeg = data[data.find(b"\xff\xd8"):end + 2]
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_the_slot_hands_out_the_newest_frame_or_none():
    async def scenario():
        slot = FrameSlot()
        slot.bind(asyncio.get_running_loop())
        for jpeg in (b"one", b"two", b"three"):
            slot.put(jpeg)
        assert await slot.newer(0) == (3, b"three")  # a slow viewer skips to the newest frame
        waiting = asyncio.ensure_future(slot.newer(3))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing newer: the viewer waits instead of being resent a frame
        threading.Thread(target=slot.put, args=(b"four",)).start()  # the pipeline's thread
        assert await asyncio.wait_for(waiting, 5) == (4, b"four")
        slot.close()
        assert await slot.newer(4) is None

    asyncio.run(scenario())


def test_off_loopback_every_request_needs_the_token(backend):
    # 127.0.0.2 is loopback to the kernel but not one of the names served without a token.
    with ViewServer(backend.info, OverlayConfig(), ServeConfig("127.0.0.2", 0)) as view:
        assert view.token and len(view.token) >= 24 and view.url.endswith(f"?token={view.token}")
        base = f"http://127.0.0.2:{view.port}"
        for path in ("/", "/stream.mjpg", "/stats", "/controls"):
            assert get(base + path)[0] == 403
            assert get(f"{base}{path}?token=wrong")[0] == 403
        refused = get(base + "/controls", {"Content-Type": "application/json"}, b'{"alpha": 1}')
        assert refused[0] == 403 and view.renderer.current.config.alpha == 0.5  # refused and not applied
        status, page = get(f"{base}/?token={view.token}")
        assert status == 200 and b"stream.mjpg" in page
        assert get(base + "/stats", {"Authorization": f"token {view.token}"})[0] == 200


def test_loopback_serves_the_page_and_stream_only(backend):
    with ViewServer(backend.info, OverlayConfig(), ServeConfig("127.0.0.1", 0)) as view:
        assert view.token is None and view.url == f"http://127.0.0.1:{view.port}/"
        base = f"http://127.0.0.1:{view.port}"
        assert get(base + "/")[0] == 200
        for path in ("/serve.html", "/../pyproject.toml", "/streamseg/serve.py", "/static/x", "/docs"):
            assert get(base + path)[0] == 404, path
        # Requests addressed to another host name (DNS rebinding) are refused.
        assert get(base + "/stats", {"Host": "attacker.example"})[0] == 400


def test_controls_are_validated_and_change_the_renderer(backend):
    with ViewServer(backend.info, OverlayConfig(), ServeConfig("127.0.0.1", 0)) as view:
        url, as_json = f"http://127.0.0.1:{view.port}/controls", {"Content-Type": "application/json"}
        assert get(url, {"Content-Type": "application/x-www-form-urlencoded"}, b"alpha=1")[0] == 415
        assert get(url, as_json, b'{"alpha": 2}')[0] == 400
        status, body = get(url, as_json, b'{"shown": ["Road", "Nope"]}')
        assert status == 400 and b"Nope" in body
        assert get(url, as_json, b"not json")[0] == 400
        assert get(url, as_json, b'{"alpha": 0.25, "shown": ["Road", "car"]}')[0] == 200
        config = view.renderer.current.config
        assert config.alpha == 0.25 and config.classes == ("Road", "car")
        state = json.loads(get(url)[1])
        assert [c["name"] for c in state["classes"] if c["shown"]] == ["Road", "Car"]


def stalled_viewer(port: int) -> socket.socket:
    """Asks for the stream, then never reads: its buffers fill and the server cannot send it more."""
    viewer = socket.socket()
    viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    viewer.connect(("127.0.0.1", port))
    viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return viewer


def frames_waiting(viewer: socket.socket) -> int:
    """JPEGs sent to a viewer that has not read them (what its buffers, and the server's, hold)."""
    viewer.setblocking(False)
    data = b""
    try:
        while chunk := viewer.recv(1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    return data.count(b"Content-Type: image/jpeg")


class NoisyCapture(FakeCapture):
    """A camera filming noise: JPEGs of ~50 kB, so a viewer that does not read falls behind within frames."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames=frames, size=(240, 320), fps=200)
        self.noise = np.random.default_rng(0).integers(0, 256, (4, 240, 320, 3), dtype=np.uint8)

    def read(self):
        ok, _ = super().read()
        return ok, self.noise[self.reads % 4] if ok else None


def test_slow_and_vanished_viewers_cannot_stall_the_pipeline(backend, tmp_path, capfd):
    total = 150
    capture = NoisyCapture(total)
    with ViewServer(backend.info, OverlayConfig(), ServeConfig("127.0.0.1", 0)) as view:
        stalled = [stalled_viewer(view.port) for _ in range(24)]
        for _ in range(8):  # viewers that vanish after the first bytes
            gone = stalled_viewer(view.port)
            gone.recv(1)
            gone.close()
        source = CameraSource(0, lambda index: capture)
        writer = VideoWriter(tmp_path / "out.mp4", rate=source.info.rate)
        done: dict = {}
        worker = threading.Thread(target=lambda: done.update(stats=webcam.run_webcam(
            source, backend, display=False, writer=writer, renderer=view.renderer, on_frame=view.publish)))
        worker.start()
        worker.join(timeout=300)  # a stalled pipeline would hang here; this is a bound, not a speed claim
        assert not worker.is_alive(), "the pipeline stalled behind its viewers"
        stats = done["stats"]
        assert stats.frames + stats.dropped == total and view.frames == stats.frames  # all shown were published
        assert view.slot.viewers >= 24  # the stalled viewers were still connected the whole time
        newest = first_jpeg(f"http://127.0.0.1:{view.port}/stream.mjpg")  # a new viewer gets the last frame
        assert newest.shape == (240, 320, 3)
        for viewer in stalled[:4]:
            # What was queued for a viewer that never read: a few frames, not every one published.
            assert frames_waiting(viewer) < stats.frames // 2
            viewer.close()
    # Closing with 20 viewers still stuck: quick and quiet (no 'Exception in ASGI application').
    assert not view.thread.is_alive() and "Exception" not in capfd.readouterr().err
    for viewer in stalled:
        viewer.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == stats.frames


def test_webcam_serve_streams_and_prints_where(tiny_model, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=400, size=(48, 64), fps=30))
    seen: list[np.ndarray] = []
    original = ViewServer.publish

    def publish(view, frame):  # fetch one frame over HTTP while the camera is still running
        original(view, frame)
        if view.frames == 5:
            threading.Thread(target=lambda: seen.append(first_jpeg(view.url + "stream.mjpg"))).start()

    monkeypatch.setattr(ViewServer, "publish", publish)
    result = CliRunner().invoke(main, ["webcam", "--serve", "--port", "0", "--max-frames", "60",
                                       "-m", str(tiny_model), "--backend", "torch"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "serving the live view at http://127.0.0.1:" in result.output and "token" not in result.output
    assert "to (browser)" in result.output
    assert seen and seen[0].shape == (48, 64, 3)


def test_serving_off_loopback_prints_a_token(tiny_model, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=50, size=(48, 64)))
    result = CliRunner().invoke(main, ["webcam", "--serve", "--host", "127.0.0.2", "--port", "0",
                                       "--max-frames", "3", "-m", str(tiny_model), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.2:" in result.output and "/?token=" in result.output


def test_a_busy_port_is_a_one_line_error(tiny_model, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=50))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(main, ["webcam", "--serve", "--port", port, "-m", str(tiny_model),
                                           "--backend", "torch"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("headless", ["no GUI build", "no display"])
def test_without_a_window_the_error_suggests_serve(tiny_model, monkeypatch, headless):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index))
    if headless == "no GUI build":
        monkeypatch.setattr(webcam, "gui_backend", lambda: "NONE")
    else:
        monkeypatch.setattr(webcam, "gui_backend", lambda: "GTK3")
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(main, ["webcam", "-m", str(tiny_model), "--backend", "torch"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "--serve" in lines[0], result.output


def test_host_without_serve_is_a_usage_error(tiny_model, make_clip, tmp_path):
    result = CliRunner().invoke(main, ["run", str(make_clip()), "-o", str(tmp_path / "o.mp4"), "--host", "0.0.0.0",
                                       "-m", str(tiny_model), "--backend", "torch", "--no-progress"])
    assert result.exit_code == 2 and "--host and --port only apply with --serve" in result.output
