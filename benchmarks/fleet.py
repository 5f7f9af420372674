"""What does Ray cost, and what does it buy? Clips/s through `--ray` vs the plain sequential CLI.

Measured in one run on the same clips (copies of the sample clip), same model
and backend, each variant writing its own output folder:
- `streamseg run 'clips/*.mp4' -o seq/`: one process, model loaded once,
  clips one after another (the pipeline's stage threads still overlap);
- `streamseg run 'clips/*.mp4' --output-dir ray/ --ray --workers W`: a local
  cluster started by the command (its start-up is part of the wall time);
- `run_fleet` on an already running local cluster: the steady state of a
  real cluster, where `ray start` happened long before (workers still start
  and load the model inside the timing).
Printed: clips/s of each, speed-up over sequential, and efficiency per worker
(ray clips/s / (sequential clips/s x W)); 1.0 means Ray and the actors cost
nothing. On a machine with fewer free cores than W the workers share cores
and efficiency says so; compare on an idle machine.

How it scales to N machines. Per clip, on one worker: reading the input,
decode → inference → encode, writing the output (the same work as the
sequential CLI, so a worker's clips/s is about the sequential clips/s of its
machine divided by the workers sharing that machine). Once per worker:
process start and model load (seconds; amortised over its clips). Shared by
all: the driver (one `ray.wait` and one fsync'd manifest line per clip,
well under a millisecond of work each, so thousands of clips/s), the
progress actor (4 small calls/s per worker), and the shared filesystem
(each clip's input read once and output written once: N workers need N x
that bandwidth). Throughput is N x per-worker clips/s until the filesystem
or, for sub-second clips, the driver saturates; keep clips longer than a
few seconds of video so per-clip overhead (~tens of ms) stays small.

    python benchmarks/fleet.py [--model deeplab] [--backend auto] [--clips 8] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import cpu_line

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camseq01.mp4"




def make_clips(folder: Path, count: int, source: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        shutil.copyfile(source, folder / f"clip{i:03d}.mp4")
    return folder


def cli(args: list[str], cwd: Path) -> float:
    """Wall seconds of one `streamseg` command (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from streamseg.cli import main; main()", *args], cwd=cwd, check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"streamseg {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def warm_cluster_run(clips: Path, out: Path, model: str, backend: str, workers: int) -> float:
    """`run_fleet` on a cluster started beforehand: the start-up a real cluster has already paid."""
    import ray

    from streamseg.fleet import FleetConfig, WorkerConfig, run_fleet
    from streamseg.jobs import ModelConfig

    # As many CPUs as workers, whatever this process's affinity: the cold run's cluster (CPU count
    # from the OS) also fits them all, so both Ray runs use the same number of workers.
    ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        started = time.perf_counter()
        report = run_fleet(str(clips / "*.mp4"), out, FleetConfig(WorkerConfig(ModelConfig(model, backend)), workers=workers),
                           progress=False, log=lambda line: None)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    if not report.ok:
        raise SystemExit(f"fleet run failed: {[row.error for row in report.failed]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplab")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clip", type=Path, default=SAMPLE)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    folder = Path(tempfile.mkdtemp(prefix="streamseg-fleet-bench-"))
    clips = make_clips(folder / "clips", args.clips, args.clip)
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    common = ["-m", model, "--backend", args.backend, "--no-progress"]
    print(cpu_line())
    print(f"{args.clips} copies of {args.clip.name}, model {args.model}, backend {args.backend}, "
          f"{args.workers} workers; load average {os.getloadavg()[0]:.1f}")
    (folder / "seq").mkdir()
    # One untimed run first: the ONNX export cache (~/.cache/streamseg) is filled and files are in the page cache.
    cli(["run", str(clips / "clip000.mp4"), "-o", str(folder / "warm.mp4"), *common], folder)
    sequential = cli(["run", str(clips / "*.mp4"), "-o", str(folder / "seq"), *common], folder)
    cold = cli(["run", str(clips / "*.mp4"), "--output-dir", str(folder / "ray"), "--ray", "--workers",
                str(args.workers), *common], folder)
    os.chdir(folder)  # the workers find the cached ONNX export where the CLI runs put it
    warm = warm_cluster_run(clips, folder / "ray_warm", model, args.backend, args.workers)
    rates = {"sequential CLI": args.clips / sequential, "--ray, local cluster started by the command":
             args.clips / cold, "run_fleet on a running local cluster": args.clips / warm}
    base = rates["sequential CLI"]
    for name, rate in rates.items():
        extra = "" if rate == base else (f" = {rate / base:.2f}x sequential, per-worker efficiency "
                                         f"{rate / (base * args.workers):.2f}")
        print(f"{name}: {args.clips} clips in {args.clips / rate:.1f} s, {rate:.3f} clips/s{extra}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
