"""Network-only frames/s of each default model: torch on CPU vs ONNX Runtime FP32 vs INT8.

    python benchmarks/backends.py [--batches 1 4] [--size 360 480] [--rounds 5] [--data CAMVID]

Every configuration is measured in the same run, round-robin (one call of each
backend per round, order rotating), so load from other processes on a shared
CPU hits all of them alike; the median per-frame time of the rounds is
reported. Warm-up calls are not timed. Without shipped weights the models are
random-init (speed does not depend on the weights; accuracy is only reported
with --data and trained weights via --weights-dir).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from streamseg.backends import Backend, OnnxBackend, TorchBackend
from streamseg.checkpoint import ModelInfo, load_checkpoint, save_checkpoint, shipped_weights
from streamseg.export import export_onnx, load_frames, quantize_int8, to_batch
from streamseg.export.run import make_meta
from streamseg.models import PRESETS
from streamseg.threads import physical_cores


def checkpoint_for(name: str, folder: Path, weights_dir: Path | None) -> tuple[Path, str]:
    """Trained weights when there are any, else a random-init checkpoint (same speed)."""
    candidate = weights_dir / f"{name}.safetensors" if weights_dir else shipped_weights(name)
    if candidate is not None and candidate.is_file():
        return candidate, "trained"
    torch.manual_seed(0)
    info = ModelInfo.for_model(name)
    return save_checkpoint(folder / f"{name}.safetensors", info.build(), info), "random-init"


def prepare(name: str, folder: Path, weights_dir: Path | None,
            size: tuple[int, int]) -> tuple[dict[str, Backend], str, np.ndarray]:
    checkpoint, kind = checkpoint_for(name, folder, weights_dir)
    model, info = load_checkpoint(checkpoint)
    frames = to_batch(load_frames(None, 32), info, size)  # calibration and timing frames from the sample clip
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    start = time.perf_counter()
    export_onnx(model, make_meta(info, checkpoint, 4, size, False), fp32, frames[:1])
    quantize_int8(fp32, int8, frames)
    print(f"{name}: {kind} weights; exported FP32 + INT8 in {time.perf_counter() - start:.0f} s", flush=True)
    backends = {"torch-cpu": TorchBackend(model, info, "cpu"), "ort-fp32": OnnxBackend(fp32, "cpu"),
                "ort-int8": OnnxBackend(int8, "cpu")}
    return backends, kind, frames


def measure(backends: dict[str, Backend], images: np.ndarray, rounds: int) -> dict[str, float]:
    """Frames/s of each backend on `images`, interleaved round-robin."""
    for backend in backends.values():
        backend.predict(images)  # warm-up: allocation, kernel selection
    names = list(backends)
    times: dict[str, list[float]] = {n: [] for n in names}
    for round_index in range(rounds):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            start = time.perf_counter()
            backends[name].predict(images)
            times[name].append(time.perf_counter() - start)
    return {n: len(images) / float(np.median(t)) for n, t in times.items()}


def accuracy(backends: dict[str, Backend], data: Path) -> str:
    from streamseg.export.evaluate import evaluate_miou

    fp32, int8 = (evaluate_miou(backends[k], data) for k in ("ort-fp32", "ort-int8"))
    return f"val mIoU FP32 {fp32:.1%}, INT8 {int8:.1%} ({(int8 - fp32) * 100:+.1f} points)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--size", nargs=2, type=int, default=[360, 480], metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=physical_cores(), help="torch threads (ORT uses the same)")
    parser.add_argument("--weights-dir", type=Path, default=None, help="trained <name>.safetensors files")
    parser.add_argument("--data", type=Path, default=None, help="CamVid folder: INT8 vs FP32 val mIoU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            backends, kind, frames = prepare(name, Path(scratch), args.weights_dir, size)
            for batch in args.batches:
                images = np.concatenate([frames] * (batch // len(frames) + 1))[:batch]
                rows.append((name, kind, batch, measure(backends, images, args.rounds)))
            if args.data:
                print(f"{name}: {accuracy(backends, args.data)}", flush=True)
    print(f"\nframes/s, network only (predict incl. argmax), {size[0]}x{size[1]}, {args.threads} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'model':<8} {'weights':<11} {'batch':>5} {'torch-cpu':>10} {'ort-fp32':>16} {'ort-int8':>16} "
          f"{'int8/fp32':>9}")
    for name, kind, batch, fps in rows:
        torch_fps = fps["torch-cpu"]
        print(f"{name:<8} {kind:<11} {batch:>5} {torch_fps:>10.2f} "
              f"{fps['ort-fp32']:>8.2f} ({fps['ort-fp32'] / torch_fps:4.2f}x) "
              f"{fps['ort-int8']:>8.2f} ({fps['ort-int8'] / torch_fps:4.2f}x) "
              f"{fps['ort-int8'] / fps['ort-fp32']:>8.2f}x")


if __name__ == "__main__":
    main()
