"""`streamseg run` against the outside: the runtimes alone, the CPU's limit, and a naive loop.

Printed in one run, on one clip of `--frames` frames (the sample looped):
- each runtime's own network-only fps (ONNX Runtime / OpenVINO API, no
  streamseg code; in-graph argmax included), all cores;
- each stage's single-thread cost in ms/frame (decode, resize + normalise,
  inference per runtime, label resize, blend, x264 `veryfast` as streamseg
  encodes), measured with the libraries directly, one thread each;
- the CPU limit of each runtime = cores / Σ(single-thread ms/frame of every stage);
- the naive loop (benchmarks/naive_loop.py, its own process) and `streamseg run`
  (its own process), end-to-end fps and peak RSS (wait4's ru_maxrss);
- the ratios the issue-13 targets are about.

Speed claims live here, never in tests. On a shared machine compare ratios,
not absolute fps; prefix with `taskset -c N` to pin it.

    python benchmarks/pipeline.py [--model deeplab] [--frames 600] [--backend auto] [--seconds 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort

from streamseg.backends.onnx_backend import read_onnx_meta
from streamseg.cpu import native_bf16
from streamseg.checkpoint import ModelInfo, resolve_checkpoint, save_checkpoint, shipped_weights
from streamseg.preprocess import keep_size
from streamseg.runtime import BACKENDS, load_backend, onnx_file
from streamseg.threads import physical_cores, plan_threads
from machine import lscpu

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "samples" / "camseq01.mp4"
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)




def checkpoint_for(model: str, folder: Path) -> str:
    """The shipped weights, a given file, or a random-init preset checkpoint (speed does not depend on weights)."""
    if Path(model).suffix:
        return str(Path(model).resolve())  # the child processes run in the scratch folder
    if shipped_weights(model) is not None:
        return model
    info = ModelInfo.for_model(model)
    return str(save_checkpoint(folder / f"{model}.safetensors", info.build(), info))


def make_clip(sample: Path, frames: int, output: Path) -> Path:
    """Exactly `frames` frames of `sample`, looped and re-encoded (setup, not timed)."""
    with av.open(str(sample)) as probe:
        images = [f.to_ndarray(format="rgb24") for f in probe.decode(video=0)]
        rate = probe.streams.video[0].average_rate or 30
    with av.open(str(output), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(images[i % len(images)], format="rgb24")))
        out.mux(stream.encode(None))
    return output


def run_size(clip: Path, input_size: tuple[int, int]) -> tuple[int, int]:
    """The model input `streamseg run` uses for the clip (`--aspect keep`, the default): the same everywhere."""
    with av.open(str(clip)) as probe:
        stream = probe.streams.video[0]
        return keep_size((stream.height, stream.width), input_size)


def fps_of(work, seconds: float) -> float:
    """Calls per second of `work` over about `seconds` (at least 3 calls), after one warm-up call."""
    work()
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < seconds:
        work()
        calls += 1
    return calls / (time.perf_counter() - start)


def ort_session(path: Path, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ov_request(path: Path, size: tuple[int, int], threads: int | None, precision: str):
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): [1, 3, *size]})
    config = {hints.performance_mode: hints.PerformanceMode.LATENCY,
              hints.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32}
    if threads:
        config[props.inference_num_threads] = threads
    compiled = core.compile_model(model, "CPU", config)
    request, port = compiled.create_infer_request(), compiled.output("labels")
    return lambda x: request.infer({0: x})[port]


def runtimes(path: Path, size: tuple[int, int], threads: int | None) -> dict:
    """name → `predict(x)` built with each runtime's own API; threads None: every usable core
    (ORT: one per physical core, spinning on as by default; OpenVINO: its LATENCY default)."""
    session = ort_session(path, threads or physical_cores())
    found = {"onnx": lambda x: session.run(["labels"], {"images": x})[0]}
    try:
        found["openvino"] = ov_request(path, size, threads, "fp32")
        if native_bf16():
            found["openvino-bf16"] = ov_request(path, size, threads, "bf16")
    except ImportError:
        pass
    return found


def stage_costs(clip: Path, path: Path, size: tuple[int, int], count: int, seconds: float) -> dict[str, float]:
    """Single-thread ms/frame of every stage, each library told to use one thread."""
    cv2.setNumThreads(1)
    costs: dict[str, float] = {}
    with av.open(str(clip)) as source:
        source.streams.video[0].thread_count = 1
        start = time.perf_counter()
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(count), source.decode(video=0))]
        costs["decode"] = 1e3 * (time.perf_counter() - start) / len(images)
    height, width = size
    start = time.perf_counter()
    tensors = [np.ascontiguousarray(((cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA)
                                      .astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)[None])
               for im in images]
    costs["preprocess"] = 1e3 * (time.perf_counter() - start) / len(images)
    for name, predict in runtimes(path, size, threads=1).items():
        costs[f"inference {name}"] = 1e3 / fps_of(lambda p=predict: p(tensors[0]), seconds)
    labels = runtimes(path, size, threads=1)["onnx"](tensors[0])[0]
    start = time.perf_counter()
    full = [cv2.resize(labels, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_NEAREST) for im in images]
    costs["postprocess"] = 1e3 * (time.perf_counter() - start) / len(images)
    palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    start = time.perf_counter()
    blended = [cv2.addWeighted(im, 0.5, palette[lab], 0.5, 0.0) for im, lab in zip(images, full)]
    costs["render"] = 1e3 * (time.perf_counter() - start) / len(images)
    costs["encode"] = encode_cost(blended, clip.parent / "encode_only.mp4")
    return costs


def encode_cost(images: list[np.ndarray], output: Path) -> float:
    with av.open(str(output), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "23", "threads": "1"})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        start = time.perf_counter()
        for image in images:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
        return 1e3 * (time.perf_counter() - start) / len(images)


# Linux carries a process's peak RSS across exec, so a child forked from this
# (torch-laden) process would report our peak, not its own. A small launcher
# forks the measured command from itself and reports the peak like GNU time -f %M.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"PEAK_RSS_KIB {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def child(command: list[str], cwd: Path) -> tuple[str, str, float]:
    """Run a process → (stdout, stderr, its peak RSS in MiB); exits the benchmark when it fails."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} … failed:\n{done.stderr[-2000:]}")
    peak = next(line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KIB "))
    return done.stdout, done.stderr, int(peak.split()[1]) / 1024


def streamseg_run(clip: Path, model: str, backend: str, batch: int, folder: Path) -> tuple[dict, str, float]:
    stats = folder / "run.json"
    command = [sys.executable, "-c", "from streamseg.cli import main; main()", "run", str(clip), "-m", model,
               "--backend", backend, "--batch", str(batch), "-o", str(folder / "run.mp4"), "--overwrite",
               "--no-progress", "--stats-json", str(stats)]
    _, _, rss = child(command, folder)
    summary = json.loads(stats.read_text())
    words = summary["backend"].split()
    # "openvino BF16 on cpu …" is the runtimes' `openvino-bf16` row, not the float32 one
    chosen = "openvino-bf16" if words[:2] == ["openvino", "BF16"] else words[0]
    return summary, chosen, rss


def report(cpu: tuple[str, str], raw: dict, costs: dict, naive: tuple[dict, float], run: tuple[dict, str, float],
           cores: int) -> None:
    print(f"CPU: {cpu[0]}; {cores} cores usable\nflags: {cpu[1]}")
    print("\nruntime alone, network-only (in-graph argmax), all cores, batch 1:")
    for name, fps in raw.items():
        print(f"  {name:<16} {fps:7.1f} fps")
    print("\nsingle-thread cost, ms/frame:")
    for name, ms in costs.items():
        print(f"  {name:<24} {ms:7.1f}")
    others = sum(ms for name, ms in costs.items() if not name.startswith("inference"))
    limits = {name.split(" ", 1)[1]: 1e3 * cores / (others + ms) for name, ms in costs.items()
              if name.startswith("inference")}
    for name, fps in limits.items():
        print(f"  CPU limit with {name:<10} {fps:7.1f} fps  (= {cores} cores / {others + costs[f'inference {name}']:.1f} ms)")
    (naive_out, naive_rss), (stats, chosen, run_rss) = naive, run
    fps = stats["fps_end_to_end"]
    print(f"\nnaive loop (own process):    {naive_out['fps']:7.2f} fps, peak RSS {naive_rss:6.0f} MiB")
    print(f"streamseg run ({chosen}):{' ' * max(1, 13 - len(chosen))}{fps:7.2f} fps, peak RSS {run_rss:6.0f} MiB, "
          f"inference stage {stats['fps_network']:.1f} fps")
    print("\nratios (issue 13 targets):")
    print(f"  run / naive loop            {fps / naive_out['fps']:5.2f}x   (>= 2.0)")
    if chosen in limits:
        print(f"  run / CPU limit ({chosen})     {fps / limits[chosen]:5.2f}x   (>= 0.85)")
    if chosen in raw:
        print(f"  inference stage / raw {chosen} {stats['fps_network'] / raw[chosen]:5.2f}x   (>= 0.9)")
    print(f"  peak RSS run / naive        {run_rss / naive_rss:5.2f}x   (<= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplab")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=600, help="length of the clip (the sample looped)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per runtime / single-thread inference")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="streamseg-bench-"))
    try:
        model = checkpoint_for(args.model, folder)
        path = onnx_file(model, resolve_checkpoint(model), folder / "engines")  # setup: export once
        clip = make_clip(SAMPLE, args.frames, folder / f"clip{args.frames}.mp4")
        size = run_size(clip, tuple(read_onnx_meta(path).info.input_size))
        _, reason = load_backend(model, args.backend, batch=args.batch, engines_dir=folder / "engines")
        print(f"model {args.model}: {path.name}, {size[0]}x{size[1]}; --backend {args.backend}: {reason}")
        print(f"streamseg's thread plan: {plan_threads()}")
        x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
        raw = {name: fps_of(lambda p=predict: p(x), args.seconds)
               for name, predict in runtimes(path, size, None).items()}
        costs = stage_costs(clip, path, size, min(args.frames, 60), args.seconds)
        naive_command = [sys.executable, str(HERE / "naive_loop.py"), str(path), str(clip), str(folder / "naive.mp4"),
                         str(size[0]), str(size[1])]
        stdout, _, naive_rss = child(naive_command, folder)
        run = streamseg_run(clip, model, args.backend, args.batch, folder)
        report(lscpu(), raw, costs, (json.loads(stdout.splitlines()[-1]), naive_rss), run, physical_cores())
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
