"""Make docs/serve.png: `streamseg run samples/camseq01.mp4 --serve` with the shipped UNet, seen in headless Chromium.

    python docs/serve_screenshot.py   # needs Debian's chromium and `pip install -e '.[test]'`
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", "from streamseg.cli import main; main()", "run",
                   str(ROOT / "samples/camseq01.mp4"), "-m", "unet", "--backend", "torch", "--no-legend",
                   "--serve", "--port", "0", "--no-progress", "-o", f"{folder}/out.mp4"]
        server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            url = next(found.group(1) for line in server.stderr
                       if (found := re.search(r"serving the live view at (http://\S+)", line)))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 820, "height": 410})
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_function("document.getElementById('view').naturalWidth > 0", timeout=300_000)
                page.locator("#legend input[value='Sky']").uncheck()  # show that toggles work
                time.sleep(20)  # a few frames drawn with the toggle, and fps/latency measured
                page.screenshot(path=str(ROOT / "docs/serve.png"))
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=300)
    print(f"wrote {ROOT / 'docs/serve.png'}")


if __name__ == "__main__":
    main()
