"""One training epoch (torchvision references' shape); the evaluation pass is `streamseg.evaluate.evaluate`."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from streamseg.evaluate import MININTERVAL, autocast
from streamseg.metrics import is_main, mean_across_ranks

from .losses import Loss


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: Loss, optimizer: torch.optim.Optimizer,
                    step_scheduler: Callable[[], None], device: torch.device, scaler: torch.amp.GradScaler,
                    *, epoch: int, amp_dtype: torch.dtype | None, channels_last: bool) -> dict:
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
        with autocast(device, amp_dtype):
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
    return {"train_loss": mean_across_ranks(total, count, device), "images_per_s": images / max(elapsed, 1e-9),
            "data_share": data_time / max(elapsed, 1e-9)}
