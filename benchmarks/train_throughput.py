"""How fast does each default preset train on this machine, and how much of
the time is data loading?

For fcn, unet and deeplab at the TrainConfig defaults (256x256 crops, batch 8,
2 DataLoader workers, the default augmentations, AdamW, CE loss), measured in
one run:
- train images/s over `--steps` optimiser steps after `--warmup` steps (worker
  start-up and first-call allocations excluded),
- the share of that wall time spent waiting for the next batch (data) vs in
  forward + backward + step (compute),
- the loader alone (images/s it can supply with no training attached), and
  compute alone (the same batch over and over), so the two can be compared
  side by side: loader/compute > 1 means data loading is not the bottleneck.

On a shared machine the absolute numbers move with the load (the 1-minute
load average is printed); the shares and ratios are measured seconds apart.

    python benchmarks/train_throughput.py [--data ../shared/data/camvid] [--steps 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time

import torch

# train/ is a package of the repository, not of the install (as torchvision's references).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from machine import cpu_line  # noqa: E402
from streamseg.checkpoint import ModelInfo  # noqa: E402
from streamseg.evaluate import autocast  # noqa: E402
from streamseg.models import PRESETS  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.setup import (autocast_dtype, build_criterion, build_data, build_network, build_optimizer, model_info,
                         seed_everything)

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "camvid")


def train_step(model, criterion, optimizer, image: torch.Tensor, target: torch.Tensor,
               amp_dtype: torch.dtype | None = None) -> None:
    with autocast("cpu", amp_dtype):
        loss = criterion(model(image), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure_training(cfg: TrainConfig, steps: int, warmup: int, amp_dtype: torch.dtype | None = None) -> dict:
    """Time `steps` real training steps: waiting for batches vs computing on them."""
    seed_everything(cfg.seed)
    train_set, _, loader, _ = build_data(cfg, ModelInfo.for_model(cfg.model))
    info = model_info(cfg, train_set.classes, train_set.palette)
    model = build_network(cfg, info).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion, _ = build_criterion(cfg, train_set)
    optimizer = build_optimizer(cfg, model)
    batches = iter(loader)
    for image, target in itertools.islice(batches, warmup):
        train_step(model, criterion, optimizer, image, target, amp_dtype)
    data = compute = 0.0
    last_batch = None
    for _ in range(steps):
        tick = time.perf_counter()
        last_batch = next(batches)
        tock = time.perf_counter()
        train_step(model, criterion, optimizer, *last_batch, amp_dtype)
        data, compute = data + tock - tick, compute + time.perf_counter() - tock
    total = data + compute
    alone = time.perf_counter()
    for _ in range(steps):  # compute alone: no loader in the loop at all
        train_step(model, criterion, optimizer, *last_batch, amp_dtype)
    alone = time.perf_counter() - alone
    images = steps * cfg.batch_size
    return {"model": cfg.model, "arch": info.arch, "train_img_s": images / total, "data_share": data / total,
            "compute_share": compute / total, "compute_alone_img_s": images / alone,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def measure_loader(cfg: TrainConfig, steps: int, warmup: int) -> float:
    """Images/s the training DataLoader supplies on its own (augmentations included)."""
    _, _, loader, _ = build_data(cfg, ModelInfo.for_model(cfg.model))
    batches = iter(loader)
    for _ in itertools.islice(batches, warmup):
        pass
    start = time.perf_counter()
    for _ in itertools.islice(batches, steps):
        pass
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--models", nargs="+", default=list(PRESETS))
    parser.add_argument("--steps", type=int, default=5, help="measured optimiser steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="steps run first and not counted")
    parser.add_argument("-b", "--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("-j", "--workers", type=int, default=defaults.workers)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    print(cpu_line())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; crop {defaults.crop_height}x{defaults.crop_width}, "
          f"batch {args.batch_size}, {args.workers} workers, {args.steps} steps after {args.warmup} warm-up")
    rows = []
    # float32 in both memory layouts; bf16 autocast where the CPU computes it natively (training then keeps it
    # only for the models it measures faster with, `train.setup.faster_cpu_precision`).
    variants = [("fp32 NCHW", False, None), ("fp32 channels_last", True, None)]
    if autocast_dtype(torch.device("cpu")) is not None:
        variants.append(("bf16 channels_last", True, torch.bfloat16))
    for name, (label, channels_last, amp_dtype) in itertools.product(args.models, variants):
        cfg = dataclasses.replace(defaults, model=name, data=args.data, batch_size=args.batch_size,
                                  workers=args.workers, channels_last=channels_last)
        row = {**measure_training(cfg, args.steps, args.warmup, amp_dtype), "variant": label}
        row["loader_img_s"] = measure_loader(cfg, args.steps, args.warmup)
        rows.append(row)
        print(f"{name:<8} {label:<19} {row['arch']:<14} train {row['train_img_s']:6.2f} img/s   "
              f"data {row['data_share']:5.1%}"
              f"  compute {row['compute_share']:5.1%}   compute alone {row['compute_alone_img_s']:6.2f} img/s"
              f"   loader alone {row['loader_img_s']:6.2f} img/s   loader/compute "
              f"{row['loader_img_s'] / row['compute_alone_img_s']:5.2f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average": os.getloadavg()[0], "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
