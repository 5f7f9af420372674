"""`streamseg run CLIP --serve` watched in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Checks what a person would: frames arrive and move, the alpha slider and a
class checkbox change the frames the pipeline serves, the live numbers show;
then Ctrl-C stops server and pipeline and the output file is finalised.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamseg.runtime import load_backend

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The page's current frame, exactly as the browser decoded it.
GRAB = """() => { const img = document.getElementById('view');
  if (!img.naturalWidth) return null;
  const canvas = Object.assign(document.createElement('canvas'), {width: img.naturalWidth, height: img.naturalHeight});
  canvas.getContext('2d').drawImage(img, 0, 0);
  return canvas.toDataURL('image/png'); }"""

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)")]


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll until `check()` is truthy; a bound on waiting, not a speed claim."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result is not None and (isinstance(result, np.ndarray) or bool(result)):
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def grab(page) -> np.ndarray | None:
    url = page.evaluate(GRAB)
    if url is None:
        return None
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def nearest_class(image: np.ndarray, palette: np.ndarray, within: float = 20) -> np.ndarray:
    """Per pixel: the index of the palette colour within `within` (RGB distance), or -1."""
    body = image[: image.shape[0] - 24].reshape(-1, 1, 3).astype(np.float32)  # without the stats line
    distance = np.linalg.norm(body - palette[None].astype(np.float32), axis=2)
    index = distance.argmin(axis=1)
    index[distance.min(axis=1) > within] = -1
    return index


def start_server(clip: Path, model: Path, output: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-c", "from streamseg.cli import main; main()", "run", str(clip), "-o", str(output),
               "-m", str(model), "--backend", "torch", "--serve", "--port", "0", "--no-progress"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in server.stderr:
        if found := re.search(r"serving the live view at (http://\S+)", line):
            return server, found.group(1)
    server.wait(timeout=60)
    raise AssertionError(f"the server never said where it serves (exit {server.returncode})")


def test_the_page_shows_the_live_overlay_and_its_controls_work(tiny_model, make_clip, tmp_path):
    from playwright.sync_api import sync_playwright

    palette = np.asarray(load_backend(str(tiny_model), "torch", "cpu")[0].info.palette)
    clip = make_clip(frames=600, size=(240, 320), rate=10)  # 60 s at its own pace: outlasts the test
    server, url = start_server(clip, tiny_model, tmp_path / "out.mp4")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 720, "height": 520})
            page.goto(url, wait_until="domcontentloaded")
            check_frames_arrive(page)
            check_alpha_changes_the_frames(page, palette)
            check_a_class_toggle_changes_the_frames(page, palette)
            wait_for(lambda: re.search(r"[1-9][\d.]* fps · latency \d+ ms", page.inner_text("#stats")), "live numbers")
            page.locator("#alpha").fill("0.5")
            page.screenshot(path=str(tmp_path / "serve.png"))
            server.send_signal(signal.SIGINT)  # Ctrl-C with a viewer still attached
            _, errors = server.communicate(timeout=120)
            browser.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 130, errors
    kept = int(re.search(r"interrupted; kept (\d+) frames", errors).group(1))
    with av.open(str(tmp_path / "out.mp4")) as container:  # finalised: it opens and has every frame reported
        assert sum(1 for _ in container.decode(video=0)) == kept > 0
    assert (tmp_path / "serve.png").stat().st_size > 10_000


def check_frames_arrive(page) -> None:
    first = wait_for(lambda: grab(page), "the first frame")
    assert first.shape == (240, 320, 3)
    wait_for(lambda: np.abs(grab(page).astype(int) - first).mean() > 2, "a newer frame (the clip moves)")


def check_alpha_changes_the_frames(page, palette: np.ndarray) -> None:
    """At alpha 0.5 the frame shows through; at 1 every pixel is a class colour."""
    assert (nearest_class(grab(page), palette) >= 0).mean() < 0.5
    page.locator("#alpha").fill("1")
    wait_for(lambda: (nearest_class(grab(page), palette) >= 0).mean() > 0.9, "frames drawn at alpha 1")


def check_a_class_toggle_changes_the_frames(page, palette: np.ndarray) -> None:
    """Hiding the most common class leaves its pixels showing the video instead of its colour."""
    classes = nearest_class(grab(page), palette)
    counts = np.bincount(classes[classes >= 0], minlength=len(palette))
    common = int(counts.argmax())
    before = counts[common] / classes.size
    name = page.locator("#legend input").nth(common).get_attribute("value")
    page.locator(f"#legend input[value='{name}']").uncheck()
    wait_for(lambda: (nearest_class(grab(page), palette) == common).mean() < before / 3, f"frames without {name}")
    page.locator(f"#legend input[value='{name}']").check()
    wait_for(lambda: (nearest_class(grab(page), palette) == common).mean() > before / 2, f"{name} drawn again")
