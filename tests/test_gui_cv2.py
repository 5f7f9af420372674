"""The installed OpenCV must be a GUI build: the webcam demo opens a window.

albumentations pulls in opencv-python-headless, which shadows the GUI build;
README and .ci/run swap it back. With Xvfb installed, a window is really
created and destroyed on a virtual display; without it that part skips.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import cv2
import pytest

from streamseg.webcam import gui_backend


def test_opencv_is_a_gui_build():
    backend = gui_backend()
    assert backend != "NONE", ("opencv-python-headless is installed: run `pip uninstall -y opencv-python-headless "
                               "&& pip install --force-reinstall --no-deps opencv-python`")


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


def test_a_window_opens_and_closes(virtual_display):
    if gui_backend() == "NONE":
        pytest.skip("headless OpenCV build (see test_opencv_is_a_gui_build)")
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
