"""Confusion-matrix metrics (torchvision references' bincount approach): the one mIoU.

mIoU, everywhere in streamseg (`streamseg eval`, training's val pass,
`export --int8 --data`): per-class IoU = TP / (TP + FP + FN) from the confusion
matrix summed over the whole split, void pixels ignored, averaged over the
classes present in the split's ground truth (the CamVid papers' convention).
A class absent from the ground truth has no IoU, even when it is predicted:
its false positives already lower the IoU of the classes they were taken from.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Rows: ground truth, columns: prediction. Pixels labelled `ignore_index` are skipped."""

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        n = self.num_classes
        keep = (target != self.ignore_index) & (target >= 0) & (target < n)
        index = n * target[keep].to(torch.int64) + prediction[keep].to(torch.int64)
        self.matrix += torch.bincount(index.cpu(), minlength=n * n).reshape(n, n)

    def reduce(self) -> None:
        """Sum over DDP ranks (no-op when not distributed)."""
        if dist.is_available() and dist.is_initialized():
            m = self.matrix.clone()
            dist.all_reduce(m)
            self.matrix = m

    def compute(self, class_names: tuple[str, ...] | None = None) -> dict:
        return metrics_from_confusion(self.matrix.numpy(), class_names)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(a.shape, np.nan), where=b > 0)


def metrics_from_confusion(matrix: np.ndarray, class_names: tuple[str, ...] | None = None) -> dict:
    """Pixel accuracy, mean accuracy, IoU, precision, recall, F1 (per class and macro), fwIoU.

    `matrix`: `(C, C)` counts, rows ground truth, columns prediction. IoU and recall
    are NaN for a class without ground-truth pixels and precision for one never
    predicted; NaN scores are left out of the macro means (mIoU: the classes present
    in the ground truth, see the module docstring).
    """
    m = matrix.astype(np.float64)
    tp, gt, pred = np.diag(m), m.sum(1), m.sum(0)
    iou = np.where(gt > 0, _ratio(tp, gt + pred - tp), np.nan)
    recall, precision = _ratio(tp, gt), _ratio(tp, pred)
    f1 = _ratio(2 * tp, gt + pred)
    freq = gt / max(gt.sum(), 1)
    names = class_names or tuple(str(i) for i in range(len(tp)))

    def per_class(values: np.ndarray) -> dict:
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, values)}

    def macro(values: np.ndarray) -> float:
        return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")

    return {
        "pixel_accuracy": float(tp.sum() / max(m.sum(), 1)),
        "mean_accuracy": macro(recall),
        "mIoU": macro(iou),
        "fwIoU": float(np.nansum(freq * np.nan_to_num(iou))),
        "precision_macro": macro(precision), "recall_macro": macro(recall), "f1_macro": macro(f1),
        "iou": per_class(iou), "precision": per_class(precision), "recall": per_class(recall),
        "f1": per_class(f1),
        "confusion_matrix": matrix.astype(int).tolist(),
        "classes": list(names),
    }


def json_safe(value: object) -> object:
    """NaN/inf → None and numpy scalars → Python numbers, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def is_main() -> bool:
    """Rank 0, or not distributed: the process that prints and writes."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def mean_across_ranks(total: float, count: int, device: torch.device) -> float:
    """`sum(total) / sum(count)` over DDP ranks (the local ratio when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        total, count = t.tolist()
    return total / max(count, 1)
