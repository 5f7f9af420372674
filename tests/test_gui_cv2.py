"""`streamseg webcam`'s local window, on a real (virtual) display.

The default install has OpenCV's headless build (what albumentations also
depends on), which cannot open a window: then these tests skip and say how to
install the GUI build (README, "A local window"); the browser view (`--serve`)
is what headless machines use. With the GUI build and Xvfb installed, a window
is really created and destroyed on a virtual display.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import cv2
import pytest

from streamseg import webcam

GUI_INSTALL = "pip uninstall -y opencv-python-headless && pip install --force-reinstall --no-deps opencv-python"


def require_gui_build() -> None:
    """Skip, saying why and what to do, where the installed OpenCV cannot open a window."""
    if webcam.gui_backend() == "NONE":
        pytest.skip(f"OpenCV here is the headless build ({cv2.__version__}, no GUI backend): no local window to "
                    f"test; for one, install the GUI build: {GUI_INSTALL}")


def test_a_headless_build_skips_with_the_reason_and_the_fix(monkeypatch):
    monkeypatch.setattr(webcam, "gui_backend", lambda: "NONE")
    with pytest.raises(pytest.skip.Exception, match="headless build .* install the GUI build: pip uninstall"):
        require_gui_build()
    monkeypatch.setattr(webcam, "gui_backend", lambda: "GTK3")
    require_gui_build()  # a GUI build: the window test runs


@pytest.fixture()
def virtual_display(monkeypatch):
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    display = ":99"
    socket = f"/tmp/.X11-unix/X{display[1:]}"
    if os.path.exists(socket):  # a display server already runs there: use it
        monkeypatch.setenv("DISPLAY", display)
        yield display
        return
    server = subprocess.Popen([xvfb, display, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(socket) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(socket):
        server.kill()
        pytest.skip(f"Xvfb did not start on {display}")
    monkeypatch.setenv("DISPLAY", display)
    yield display
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture()
def gui_build() -> None:
    require_gui_build()


def test_a_window_opens_and_closes(gui_build, virtual_display):  # the build first: its skip reason is the one to see
    # A child process: a GUI toolkit that cannot start may abort, and must not take pytest with it.
    code = ("import cv2, numpy as np\n"
            "cv2.namedWindow('t', cv2.WINDOW_NORMAL)\n"
            "cv2.imshow('t', np.zeros((48, 64, 3), np.uint8)); cv2.waitKey(50)\n"
            "assert cv2.getWindowProperty('t', cv2.WND_PROP_VISIBLE) >= 1\n"
            "cv2.destroyWindow('t'); cv2.waitKey(50)\n"
            "print('window ok', cv2.__file__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "DISPLAY": virtual_display})
    assert result.returncode == 0 and "window ok" in result.stdout, result.stderr[-2000:]
    # The window came from the OpenCV streamseg itself imports, not another build found first on the path.
    assert result.stdout.split()[-1] == cv2.__file__
