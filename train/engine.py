"""One training epoch and one evaluation pass (torchvision references' shape)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .losses import Loss
from .metrics import ConfusionMatrix


# Redraw often on a terminal, rarely in a log file (background runs).
MININTERVAL = 0.5 if sys.stderr.isatty() else 60.0


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _mean_across_ranks(total: float, count: int, device: torch.device) -> float:
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        total, count = t.tolist()
    return total / max(count, 1)


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: Loss, optimizer: torch.optim.Optimizer,
                    step_scheduler: Callable[[], None], device: torch.device, scaler: torch.amp.GradScaler,
                    *, epoch: int, amp: bool, channels_last: bool) -> dict:
    """Returns mean train loss and throughput (images/s, data-loading share)."""
    model.train()
    total, count, images, data_time = 0.0, 0, 0, 0.0
    start = tick = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not is_main(), dynamic_ncols=True,
               mininterval=MININTERVAL)
    for image, target in bar:
        data_time += time.perf_counter() - tick
        image, target = image.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = criterion(model(image), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step_scheduler()
        total += loss.item() * image.shape[0]
        count += image.shape[0]
        images += image.shape[0]
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{total / count:.4f}", img_s=f"{images / elapsed:.1f}", refresh=False)
        tick = time.perf_counter()
    elapsed = time.perf_counter() - start
    return {"train_loss": _mean_across_ranks(total, count, device), "images_per_s": images / max(elapsed, 1e-9),
            "data_share": data_time / max(elapsed, 1e-9)}


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, criterion: Loss | None, device: torch.device,
             num_classes: int, ignore_index: int, *, amp: bool = False) -> tuple[float, ConfusionMatrix]:
    """Full-resolution evaluation; the confusion matrix is summed across DDP ranks."""
    model.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index)
    total, count = 0.0, 0
    for image, target in tqdm(loader, desc="eval", leave=False, disable=not is_main(),
                              mininterval=MININTERVAL):
        image, target = image.to(device), target.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(image)
        if criterion is not None:
            total += criterion(logits, target).item() * image.shape[0]
            count += image.shape[0]
        confusion.update(target, logits.argmax(1))
    confusion.reduce()
    return _mean_across_ranks(total, count, device), confusion
