"""What a run leaves behind after each epoch: checkpoints, history, metrics; and its plots.

Every file is written atomically (temp + rename), so a run killed at any
moment leaves the previous version of each file, never half of one.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamseg.checkpoint import ModelInfo, atomic_write, load_checkpoint, save_checkpoint
from streamseg.data import CamVid, read_rgb
from streamseg.evaluate import AtInputSize
from streamseg.metrics import json_safe

from .config import TrainConfig
from .plots import plot_confusion, plot_curves, plot_per_class_iou, plot_predictions
from .state import RunState, rng_state, save_resume

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "pixel_accuracy", "mIoU", "lr", "seconds", "images_per_s"]


def remove_partial_files(out: Path) -> list[Path]:
    """Temp files a killed run left mid-write (`.NAME.XXXX.tmp`, see `atomic_write`)."""
    partial = sorted(out.glob(".*.tmp"))
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: dict) -> Path:
    """Strict JSON (NaN → null), written atomically."""
    return write_text(path, json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")


def write_history(out: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(out / "history.csv", buffer.getvalue())


def predictions(model: nn.Module, val_set: CamVid, device: torch.device, count: int = 3) -> list:
    """A few evenly spaced val frames: (image, ground truth, prediction)."""
    model.eval()
    picks = np.unique(np.linspace(0, len(val_set) - 1, count).astype(int))
    rows = []
    with torch.inference_mode():
        for i in picks:
            image, target = val_set[int(i)]
            prediction = model(image[None].to(device)).argmax(1)[0].cpu().numpy().astype(np.uint8)
            rows.append((read_rgb(val_set.pairs[int(i)][0]), target.numpy().astype(np.uint8), prediction))
    return rows


def draw_plots(out: Path, val_set: CamVid, device: torch.device, drawn_epoch: int = 0) -> None:
    """curves.png, and the best epoch's confusion matrix, per-class IoU and predictions when the
    best came after `drawn_epoch`, the epoch of the last drawing (from metrics.json and
    best.safetensors, so any moment of the run can draw them)."""
    plot_curves(out / "history.csv", out / "curves.png")
    best_file = out / "metrics.json"
    best = json.loads(best_file.read_text()) if best_file.exists() else {}
    if best.get("epoch", 0) <= drawn_epoch:
        return
    plot_confusion(best, out / "confusion.png")
    plot_per_class_iou(best, out / "per_class_iou.png")
    model, info = load_checkpoint(out / "best.safetensors", device)
    model = AtInputSize(model, info.input_size)
    plot_predictions(predictions(model, val_set, device), info.palette, out / "predictions.png")


def info_with_summary(info: ModelInfo, cfg: TrainConfig, epoch: int, metrics: dict, seconds: float,
                      precision: str = "float32") -> ModelInfo:
    # precision: what the steps ran in, which `amp` alone does not say (the CPU's bf16 is chosen by timing)
    summary = {"epoch": epoch, "val_mIoU": metrics["mIoU"], "val_pixel_accuracy": metrics["pixel_accuracy"],
               "train_seconds": round(seconds, 1), "precision": precision, "config": cfg.to_dict()}
    return ModelInfo(**{**info.__dict__, "training": json_safe(summary)})


def save_epoch(cfg: TrainConfig, out: Path, model: nn.Module, info: ModelInfo, state: RunState, metrics: dict,
               improved: bool, optimisation: tuple, ema: nn.Module | None = None,
               precision: str = "float32") -> None:
    """Order matters for crash safety: artefacts first, the resume file last, so a
    resume file always describes an epoch whose artefacts are complete. With an EMA,
    the checkpoints hold the averaged weights (what was validated); the resume file
    holds both."""
    optimizer, scheduler, scaler = optimisation
    net, model = model, (ema.module if ema is not None else model)
    write_history(out, state.history)
    summary = info_with_summary(info, cfg, state.epoch, metrics, state.seconds, precision)
    save_checkpoint(out / "last.safetensors", model, summary)
    if improved:
        save_checkpoint(out / "best.safetensors", model, summary)
        write_json(out / "metrics.json", {**metrics, "epoch": state.epoch})
    save_resume(out, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                      "rng": rng_state(), "state": dataclasses.asdict(state), "config": cfg.to_dict(),
                      "precision": precision,
                      **({"ema": ema.state_dict()} if ema is not None else {})})
