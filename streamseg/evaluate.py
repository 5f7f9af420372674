"""Evaluate a checkpoint on a CamVid split at full resolution (`streamseg eval`, and training's val pass)."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .backends.torch_backend import pick_device
from .checkpoint import ModelInfo, atomic_write, load_checkpoint
from .classes import CAMVID_CLASSES
from .data import CamVid, DataError, EvalTransform
from .metrics import ConfusionMatrix, is_main, json_safe, mean_across_ranks
from .preprocess import keep_size
from .tta import FlipScaleTTA

# Redraw often on a terminal, rarely in a log file (background runs).
MININTERVAL = 0.5 if sys.stderr.isatty() else 60.0
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, target) → scalar; training's criterion


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str                     # a .safetensors file (presets are resolved by the CLI)
    data: str
    split: str = "val"
    label_format: str = "auto"          # index | color | auto
    device: str = "auto"                # auto = CUDA when available
    workers: int = 0
    tta: bool = False                   # flips and scales (streamseg.tta): slower, usually more accurate


class AtInputSize(nn.Module):
    """Runs `model` at the size `streamseg run` gives a frame of this shape (`keep_size` of the
    checkpoint's `input_size`) and returns logits at the frame's own size, so val numbers are
    those of the masks users get, measured against full-resolution labels."""

    def __init__(self, model: nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.model, self.input_size = model, tuple(input_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        frame = tuple(image.shape[-2:])
        size = keep_size(frame, self.input_size)
        if size == frame:
            return self.model(image)
        # logits back bilinearly, as the heads do
        return F.interpolate(self.model(to_input_size(image, size)), size=frame, mode="bilinear",
                             align_corners=False)


def to_input_size(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(N, 3, H, W)` normalised frames resized to the model input `size`: bilinear, antialiased
    when shrinking, as preprocess's INTER_AREA."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < image.shape[-2])


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision in `dtype`, or none (float32) when it is None."""
    kind = device if isinstance(device, str) else device.type
    return torch.autocast(kind, dtype=dtype or torch.float16, enabled=dtype is not None)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, criterion: Loss | None, device: torch.device,
             num_classes: int, ignore_index: int, *, amp_dtype: torch.dtype | None = None
             ) -> tuple[float, ConfusionMatrix]:
    """Full-resolution evaluation; the confusion matrix is summed across DDP ranks."""
    model.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index)
    total, count = 0.0, 0
    for image, target in tqdm(loader, desc="eval", leave=False, disable=not is_main(),
                              mininterval=MININTERVAL):
        image, target = image.to(device), target.to(device)
        with autocast(device, amp_dtype):
            logits = model(image)
        if criterion is not None:
            total += criterion(logits, target).item() * image.shape[0]
            count += image.shape[0]
        confusion.update(target, logits.argmax(1))
    confusion.reduce()
    return mean_across_ranks(total, count, device), confusion


def open_split(cfg: EvalConfig, info: ModelInfo) -> CamVid:
    """The split, labelled with the checkpoint's classes (11 groups, or the raw colour table)."""
    classes = "camvid11" if info.classes == CAMVID_CLASSES else "camvid32"
    dataset = CamVid(cfg.data, cfg.split, EvalTransform(info.mean, info.std), label_format=cfg.label_format,
                     classes=classes)
    if dataset.classes != info.classes:
        raise DataError(f"the checkpoint's {info.num_classes} classes ({', '.join(info.classes[:3])}, …) do not "
                        f"match the data's {len(dataset.classes)} ({', '.join(dataset.classes[:3])}, …)")
    return dataset


def evaluate_checkpoint(cfg: EvalConfig) -> dict:
    """Metrics of `cfg.checkpoint` on `cfg.split`: per-class IoU/precision/recall/F1, their
    macro means, pixel and mean accuracy, mIoU, fwIoU and the confusion matrix."""
    device = pick_device(cfg.device)
    model, info = load_checkpoint(cfg.checkpoint, device)
    # TTA's scales are around the model's own input size, as in `streamseg run --tta`
    model = AtInputSize(FlipScaleTTA(model) if cfg.tta else model, info.input_size)
    dataset = open_split(cfg, info)
    # Batch 1: frames of a split may differ in size, and this is the full-resolution number.
    loader = DataLoader(dataset, batch_size=1, num_workers=cfg.workers, pin_memory=device.type == "cuda")
    start = time.perf_counter()
    _, confusion = evaluate(model, loader, None, device, info.num_classes, dataset.ignore_index)
    metrics = confusion.compute(info.classes)
    return {"checkpoint": str(cfg.checkpoint), "model": info.name, "arch": info.arch,
            "data": str(Path(cfg.data)), "split": cfg.split, "label_format": dataset.format,
            "images": len(dataset), "pixels": int(confusion.matrix.sum()), "device": str(device),
            "tta": cfg.tta, "seconds": round(time.perf_counter() - start, 2), **metrics,
            "training": info.training}  # the run that made the checkpoint (epoch, val mIoU, config)


def format_table(metrics: dict) -> str:
    """Per-class IoU / precision / recall / F1, then the summary; '-' marks a class with no pixels."""
    def cell(value: float | None) -> str:
        return f"{value:>9.4f}" if value is not None and value == value else f"{'-':>9}"

    width = max(12, *(len(n) for n in metrics["classes"]))
    lines = [f"{'class':<{width}} {'IoU':>9} {'precision':>9} {'recall':>9} {'F1':>9}"]
    for name in metrics["classes"]:
        lines.append(f"{name:<{width}} " + " ".join(cell(metrics[k][name]) for k in ("iou", "precision",
                                                                                      "recall", "f1")))
    lines.append(f"{'macro':<{width}} " + " ".join(cell(metrics[k]) for k in ("mIoU", "precision_macro",
                                                                             "recall_macro", "f1_macro")))
    lines.append(f"pixel accuracy {cell(metrics['pixel_accuracy']).strip()}  mean accuracy "
                 f"{cell(metrics['mean_accuracy']).strip()}  mIoU {cell(metrics['mIoU']).strip()}  "
                 f"fwIoU {cell(metrics['fwIoU']).strip()}")
    return "\n".join(lines)


def save_report(path: str | Path, metrics: dict) -> Path:
    """Strict JSON (a class with no pixels → null), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(metrics), indent=1, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
