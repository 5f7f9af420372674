"""The run's pictures: curves, confusion matrix, per-class IoU, predictions."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from streamseg.checkpoint import atomic_write  # noqa: E402
from streamseg.classes import colorize  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png"))
    plt.close(fig)


def plot_curves(history_csv: Path, path: Path) -> None:
    """Train vs val loss and val mIoU per epoch: the over/under-fitting picture."""
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], label="train loss")
    ax_loss.plot(epochs, [float(r["val_loss"]) for r in rows], label="val loss")
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("loss"), ax_loss.legend()
    ax_iou.plot(epochs, [float(r["mIoU"]) for r in rows], label="val mIoU", color="C2")
    ax_iou.plot(epochs, [float(r["pixel_accuracy"]) for r in rows], label="val pixel acc.", color="C3")
    ax_iou.set_xlabel("epoch"), ax_iou.set_ylim(0, 1), ax_iou.legend()
    _save(fig, path)


def plot_confusion(metrics: dict, path: Path) -> None:
    """Row-normalised confusion matrix (recall on the diagonal)."""
    m = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    names = metrics["classes"]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            if m[i, j] >= 0.01:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if m[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("ground truth")
    _save(fig, path)


def plot_per_class_iou(metrics: dict, path: Path) -> None:
    names = metrics["classes"]
    values = [metrics["iou"][n] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(names)), values, color="C0")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1), ax.set_ylabel("IoU"), ax.set_title(f"mIoU {metrics['mIoU']:.3f}")
    _save(fig, path)


def plot_predictions(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], palette: tuple, path: Path) -> None:
    """Rows of image / ground truth / prediction; images are (H, W, 3) uint8."""
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 2.4 * len(samples)), squeeze=False)
    for row, (image, truth, prediction) in zip(axes, samples):
        for ax, picture, title in zip(row, (image, colorize(truth, palette), colorize(prediction, palette)),
                                      ("image", "ground truth", "prediction")):
            ax.imshow(picture), ax.set_title(title, fontsize=8), ax.axis("off")
    _save(fig, path)
