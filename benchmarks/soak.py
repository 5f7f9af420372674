"""Soak: does `streamseg run` stay flat over a long video?

A generated clip (10,000 frames at 160x120 by default) goes through
`streamseg run` in a subprocess while this script samples the process's
resident memory (VmRSS), open file descriptors (/proc/PID/fd) and threads
(/proc/PID/status) every `--interval` seconds, alongside the frames done so
far (from the progress bar). It asserts nothing: it prints frames in and
out, RSS at start (model loaded) / peak / end, the RSS slope after warm-up,
and fd and thread counts over time. Linux only (/proc).

    python benchmarks/soak.py [--frames 10000] [--size 160x120] [--model tiny] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from streamseg.checkpoint import ModelInfo, save_checkpoint

ENTRY = "from streamseg.cli import main; main(prog_name='streamseg')"


@dataclass(frozen=True)
class Sample:
    seconds: float
    frames: int
    rss_mb: float
    fds: int
    threads: int


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    """A moving gradient with some noise (so the encoder has real work), H.264 at 30 fps."""
    ys, xs = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 24, (64, height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.stack([(xs + 3 * i) % 256, (ys + i) % 256, np.full_like(xs, i % 256)], -1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image + noise[i % 64], format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def make_model(name: str, folder: Path, height: int, width: int) -> str:
    """`tiny`: a random-init 4-channel UNet at the clip's size; a preset name: random init; else a path."""
    if name == "tiny":
        info = ModelInfo.for_model("unet", options={"base_channels": 4, "depth": 2}, input_size=(height, width))
    elif Path(name).exists():
        return name
    else:
        info = ModelInfo.for_model(name)
    return str(save_checkpoint(folder / f"{name}.safetensors", info.build(), info))


def sample(pid: int, started: float, log: Path) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss, threads = re.search(r"VmRSS:\s+(\d+)", status), re.search(r"Threads:\s+(\d+)", status)
    if rss is None or threads is None:  # a zombie between exit and reaping has no memory lines
        return None
    done = re.findall(r"(\d+)/\d+ \[", log.read_text(errors="replace")[-4000:])
    return Sample(time.monotonic() - started, int(done[-1]) if done else 0, int(rss.group(1)) / 1024, fds,
                  int(threads.group(1)))


def soak(args: argparse.Namespace, folder: Path) -> tuple[list[Sample], int, str]:
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(folder / "soak.mp4", args.frames, width, height)
    model = make_model(args.model, folder, height, width)
    command = [sys.executable, "-c", ENTRY, "run", str(clip), "--model", model, "--backend", args.backend,
               "--batch", str(args.batch), "-o", str(folder / "out.mp4")]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    log = folder / "stderr.log"
    samples: list[Sample] = []
    with open(log, "w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        started = time.monotonic()
        while process.poll() is None:
            if (point := sample(process.pid, started, log)) is not None:
                samples.append(point)
            time.sleep(args.interval)
    return samples, process.returncode, log.read_text(errors="replace")


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def report(samples: list[Sample], code: int, stderr: str, frames_in: int, frames_out: int) -> None:
    summary = [line for line in stderr.replace("\r", "\n").splitlines() if line and not re.search(r"\d+/\d+ \[", line)]
    print("\n".join(f"  | {line}" for line in summary[-8:]))
    print(f"exit code {code}; frames in {frames_in}, frames out {frames_out}")
    working = [s for s in samples if s.frames > 0] or samples
    if not working:
        print("no samples (the run ended before the first one)")
        return
    rss = [s.rss_mb for s in working]
    print(f"RSS MB: start {rss[0]:.1f} (first frames), peak {max(rss):.1f}, end {rss[-1]:.1f}")
    steady = [s for s in working if s.frames >= 0.1 * frames_in]
    if len(steady) >= 2 and steady[-1].frames > steady[0].frames:
        slope = (steady[-1].rss_mb - steady[0].rss_mb) / (steady[-1].frames - steady[0].frames) * 1000
        print(f"RSS after 10% of the frames: {steady[0].rss_mb:.1f} -> {steady[-1].rss_mb:.1f} MB "
              f"({slope:+.2f} MB per 1000 frames)")
    print(f"open fds: min {min(s.fds for s in working)}, max {max(s.fds for s in working)}; "
          f"threads: min {min(s.threads for s in working)}, max {max(s.threads for s in working)}")
    print(f"{'t (s)':>7} {'frames':>7} {'RSS MB':>8} {'fds':>5} {'threads':>8}")
    step = max(1, len(samples) // 20)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        print(f"{s.seconds:7.1f} {s.frames:7d} {s.rss_mb:8.1f} {s.fds:5d} {s.threads:8d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--size", default="160x120", help="WIDTHxHEIGHT of the generated clip")
    parser.add_argument("--model", default="tiny", help="tiny, a preset name (random init) or a checkpoint path")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the run (0: leave as is)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamseg-soak-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        samples, code, stderr = soak(args, folder)
        out = folder / "out.mp4"
        frames_out = count_frames(out) if out.exists() else 0
        print(f"soak: {args.frames} frames at {args.size}, model {args.model}, backend {args.backend}, "
              f"batch {args.batch}, OMP_NUM_THREADS={args.threads or os.environ.get('OMP_NUM_THREADS', 'unset')}, "
              f"{time.monotonic() - started:.0f} s in all")
        report(samples, code, stderr, count_frames(folder / "soak.mp4"), frames_out)


if __name__ == "__main__":
    main()
