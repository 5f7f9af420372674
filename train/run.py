"""The training loop: epochs, evaluation, checkpoints, early stopping, artefacts."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from streamseg.checkpoint import ModelInfo, save_checkpoint

from .camvid import CamVid, read_rgb
from .config import TrainConfig
from .engine import evaluate, is_main, train_one_epoch
from .plots import plot_confusion, plot_curves, plot_per_class_iou, plot_predictions
from .setup import (build_criterion, build_data, build_network, build_optimizer, lr_factor, model_info,
                    seed_everything, set_frozen, setup_distributed)
from .state import load_resume, rng_state, save_resume, set_rng_state

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "pixel_accuracy", "mIoU", "lr", "seconds", "images_per_s"]


def _bare(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def write_history(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def predictions(model: nn.Module, val_set: CamVid, device: torch.device, count: int = 3) -> list:
    """A few evenly spaced val frames: (image, ground truth, prediction)."""
    model.eval()
    picks = np.linspace(0, len(val_set) - 1, count).astype(int)
    rows = []
    with torch.inference_mode():
        for i in picks:
            image, target = val_set[int(i)]
            prediction = model(image[None].to(device)).argmax(1)[0].cpu().numpy().astype(np.uint8)
            rows.append((read_rgb(val_set.pairs[int(i)][0]), target.numpy().astype(np.uint8), prediction))
    return rows


def save_best_artefacts(out: Path, metrics: dict, model: nn.Module, val_set: CamVid, device, info) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_confusion(metrics, out / "confusion.png")
    plot_per_class_iou(metrics, out / "per_class_iou.png")
    plot_predictions(predictions(model, val_set, device), info.palette, out / "predictions.png")


def _info_with_summary(info: ModelInfo, cfg: TrainConfig, epoch: int, metrics: dict, seconds: float) -> ModelInfo:
    summary = {"epoch": epoch, "val_mIoU": metrics["mIoU"], "val_pixel_accuracy": metrics["pixel_accuracy"],
               "train_seconds": round(seconds, 1), "config": cfg.to_dict()}
    return ModelInfo(**{**info.__dict__, "training": summary})


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) a training run; returns the best epoch's metrics."""
    rank, world, device = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + rank)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    probe = build_data(cfg, ModelInfo.for_model(cfg.model), world)
    train_set, val_set, train_loader, val_loader = probe
    info = model_info(cfg, train_set.classes, train_set.palette)
    model = build_network(cfg, info).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    set_frozen(model, cfg.freeze, True)
    criterion, _ = build_criterion(cfg, train_set)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, len(train_loader)))
    amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    state = {"epoch": 0, "best_miou": -1.0, "best_epoch": 0, "stale": 0, "history": [], "seconds": 0.0}
    if cfg.resume:
        state = resume(cfg.resume, model, optimizer, scheduler, scaler)
    if world > 1:
        model = DistributedDataParallel(model, find_unused_parameters=cfg.freeze is not None)
    best = fit(cfg, model, info, state, (train_set, val_set, train_loader, val_loader),
               (criterion, optimizer, scheduler, scaler), device, amp, out)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return best


def resume(spec: str, model, optimizer, scheduler, scaler) -> dict:
    payload = load_resume(spec)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    set_rng_state(payload["rng"])
    print(f"resumed from {spec} at epoch {payload['state']['epoch']}")
    return payload["state"]


def fit(cfg, model, info, state, data, optimisation, device, amp, out) -> dict:
    train_set, val_set, train_loader, val_loader = data
    criterion, optimizer, scheduler, scaler = optimisation
    best_metrics: dict = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if cfg.patience and state["stale"] >= cfg.patience:
            break
        if cfg.freeze and cfg.unfreeze_after and epoch == cfg.unfreeze_after + 1:
            set_frozen(_bare(model), cfg.freeze, False)
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        # Shuffle order and worker seeds depend on (seed, epoch) only, so a resumed run
        # sees exactly the batches the uninterrupted run would have seen.
        train_loader.generator.manual_seed(cfg.seed * 100_003 + epoch)
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(model, train_loader, criterion, optimizer, scheduler.step, device, scaler,
                                epoch=epoch, amp=amp, channels_last=cfg.channels_last)
        val_loss, confusion = evaluate(model, val_loader, criterion, device, info.num_classes,
                                       train_set.ignore_index, amp=amp)
        metrics = confusion.compute(info.classes)
        seconds = time.perf_counter() - start
        state["seconds"] += seconds
        row = {"epoch": epoch, "train_loss": round(stats["train_loss"], 5), "val_loss": round(val_loss, 5),
               "pixel_accuracy": round(metrics["pixel_accuracy"], 5), "mIoU": round(metrics["mIoU"], 5),
               "lr": f"{lr:.3g}", "seconds": round(seconds, 1), "images_per_s": round(stats["images_per_s"], 2)}
        state["history"].append(row)
        improved = metrics["mIoU"] > state["best_miou"]
        state["stale"] = 0 if improved else state["stale"] + 1
        if improved:
            state["best_miou"], state["best_epoch"], best_metrics = metrics["mIoU"], epoch, metrics
        state["epoch"] = epoch
        if is_main():
            log_epoch(row, stats, improved)
            save_epoch(cfg, out, _bare(model), info, state, metrics, improved,
                       (optimizer, scheduler, scaler), val_set, device)
    return best_metrics


def log_epoch(row: dict, stats: dict, improved: bool) -> None:
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
          f"pixel acc {row['pixel_accuracy']:.4f}  mIoU {row['mIoU']:.4f}  lr {row['lr']}  "
          f"{row['images_per_s']:.1f} img/s (data {stats['data_share']:.0%})  {row['seconds']:.0f}s"
          + ("  *best*" if improved else ""), flush=True)


def save_epoch(cfg, out, model, info, state, metrics, improved, optimisation, val_set, device) -> None:
    """Order matters for crash safety: artefacts first, the resume file last."""
    optimizer, scheduler, scaler = optimisation
    write_history(out, state["history"])
    plot_curves(out / "history.csv", out / "curves.png")
    summary = _info_with_summary(info, cfg, state["epoch"], metrics, state["seconds"])
    save_checkpoint(out / "last.safetensors", model, summary)
    if improved:
        save_checkpoint(out / "best.safetensors", model, summary)
        save_best_artefacts(out, {**metrics, "epoch": state["epoch"]}, model, val_set, device, info)
    save_resume(out, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                      "rng": rng_state(), "state": state, "config": cfg.to_dict()})
