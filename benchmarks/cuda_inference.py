"""Network-only frames/s of the shipped models on a CUDA GPU: float32 vs FP16 autocast, by batch.

The third column is the default backend, which times both precisions on its first batch and keeps
the faster: it should match the better of the first two at every batch.

    python benchmarks/cuda_inference.py [--batches 1 8 32] [--size 360 480] [--calls 20]

Through `TorchBackend.predict`, the path `streamseg run` takes on a GPU without TensorRT: the
host→GPU copy from a pinned buffer, channels_last forward, argmax on the GPU, the uint8 labels
copied back (so the GPU work is finished when a call returns). Speed does not depend on the
weights (random inputs). Timed as benchmarks/backends.py times the CPU runtimes: a warm-up call
each (cuDNN's kernel search), then `--rounds` interleaved rounds, the median per configuration.
Without CUDA it says so and exits 1.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backends import measure  # noqa: E402
from machine import cpu_line  # noqa: E402
from streamseg.backends import TorchBackend  # noqa: E402
from streamseg.checkpoint import load_checkpoint, resolve_checkpoint  # noqa: E402
from streamseg.models import PRESETS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--size", nargs=2, type=int, default=[360, 480], metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_inference.py needs a CUDA device (torch.cuda.is_available() is False here)")
    print(cpu_line())
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}: frames/s at {args.size[0]}x{args.size[1]}, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'model':<8} {'batch':>5} {'float32':>9} {'fp16':>9} {'fp16/fp32':>9} {'default':>9}  chose")
    for name in args.models:
        model, info = load_checkpoint(resolve_checkpoint(name))
        backends = {"float32": TorchBackend(model, info, "cuda", fp16=False),
                    "fp16": TorchBackend(model, info, "cuda", fp16=True),
                    "default": TorchBackend(model, info, "cuda")}
        for batch in args.batches:
            images = np.random.default_rng(0).standard_normal((batch, 3, *args.size)).astype(np.float32)
            fps = measure(backends, images, args.rounds)
            fp32, fp16 = fps["float32"], fps["fp16"]
            chose = "fp16" if backends["default"].fp16_by_shape[images.shape] else "float32"
            print(f"{name:<8} {batch:>5} {fp32:>9.1f} {fp16:>9.1f} {fp16 / fp32:>8.2f}x {fps['default']:>9.1f}  {chose}",
                  flush=True)


if __name__ == "__main__":
    main()
