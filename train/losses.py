"""Segmentation losses; every one ignores void pixels."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .config import weighted

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def median_frequency_weights(masks: Iterable[np.ndarray], num_classes: int, ignore_index: int) -> torch.Tensor:
    """SegNet's median-frequency balancing: w_c = median(f) / f_c, where f_c is the
    class's pixel count over the pixels of the images in which it appears."""
    counts = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)
    for mask in masks:
        valid = mask[mask != ignore_index]
        present = np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
        counts += present
        image_pixels[present > 0] += valid.size
    freq = np.divide(counts, image_pixels, out=np.zeros_like(counts), where=image_pixels > 0)
    median = np.median(freq[freq > 0])
    weights = np.divide(median, freq, out=np.zeros_like(freq), where=freq > 0)
    return torch.tensor(weights, dtype=torch.float32)


def log_frequency_weights(masks: Iterable[np.ndarray], num_classes: int, ignore_index: int,
                          c: float) -> torch.Tensor:
    """ENet's class weighting: w_c = 1 / ln(c + p_c), p_c the class's share of all labelled pixels.

    Bounded by 1 / ln(c) for the rarest classes (ENet's c = 1.02: 50; CGNet's c = 1.10: 10.5), so rare
    classes weigh more without median-frequency balancing's extremes (on CamVid train it weighs Pole 32x
    Road; c = 1.02: 10x; c = 1.10: 3.4x).
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for mask in masks:
        valid = mask[mask != ignore_index]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    share = counts / max(counts.sum(), 1.0)
    return torch.tensor(1.0 / np.log(c + share), dtype=torch.float32)


# Class weights for wce / wce+dice, by --class-weights; each takes (masks, num_classes, ignore_index).
CLASS_WEIGHTS = {
    "median-frequency": median_frequency_weights,
    "enet": lambda masks, n, ignore: log_frequency_weights(masks, n, ignore, c=1.02),
    "cgnet": lambda masks, n, ignore: log_frequency_weights(masks, n, ignore, c=1.10),
}


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, eps: float = 1.0) -> torch.Tensor:
    """Multi-class soft Dice: 1 - mean over classes of 2|P∩G| / (|P|+|G|), void pixels masked out.

    Classes absent from both prediction and target score 1 through the `eps` smoothing.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    probs = logits.float().softmax(dim=1) * valid
    onehot = F.one_hot(target.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * intersection + eps) / (total + eps)).mean()


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, threshold: float = 0.7,
                       min_kept: float = 1 / 16) -> torch.Tensor:
    """Online hard example mining (PSPNet/BiSeNet's OHEM CE): the mean CE over the pixels whose
    true-class probability is below `threshold`, and never fewer than `min_kept` of the valid
    pixels (the hardest ones), so the easy road and sky pixels stop drowning out poles and signs
    without fixed class weights."""
    losses = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = losses[target != ignore_index]
    if valid.numel() == 0:
        return logits.float().sum() * 0.0  # an all-void crop: no NaN
    hard = int((valid > -math.log(threshold)).sum())  # CE > -log(p) ⇔ true-class probability < p
    keep = min(valid.numel(), max(hard, math.ceil(valid.numel() * min_kept)))
    return valid.topk(keep, sorted=False).values.mean()


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Lovász-softmax (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU, per image and class.

    For each class the pixels are sorted by their error |1[y = c] - p_c|; the error vector dotted with the
    Lovász extension's gradient of the Jaccard loss at that order equals 1 - IoU exactly when the
    predictions are hard. Averaged over the classes present in an image, then over the images, so a pole
    weighs as much in its frame as the road does: Dice pools the batch, where small objects drown.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(logits.shape[0], -1, num_classes)
    per_image = []
    for p, y in zip(probs, target.reshape(target.shape[0], -1)):
        valid = y != ignore_index
        if not valid.any():
            continue
        fg = F.one_hot(y[valid], num_classes).to(p.dtype)         # (pixels, classes)
        errors, order = (fg - p[valid]).abs().sort(dim=0, descending=True)
        fg_sorted = fg.gather(0, order)
        labelled = fg_sorted.sum(0)
        jaccard = 1 - (labelled - fg_sorted.cumsum(0)) / (labelled + (1 - fg_sorted).cumsum(0))
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        present = labelled > 0
        per_image.append((errors * grad).sum(0)[present].mean())
    if not per_image:
        return logits.float().sum() * 0.0  # an all-void batch: no NaN
    return torch.stack(per_image).mean()


def build_loss(name: str, ignore_index: int, weights: torch.Tensor | None = None) -> Loss:
    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != ignore_index).any():
            # An all-void crop: PyTorch's mean over zero pixels is NaN, which would poison the weights.
            return logits.float().sum() * 0.0
        w = weights.to(logits.device) if weights is not None else None
        return F.cross_entropy(logits.float(), target, weight=w, ignore_index=ignore_index)

    def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, target, ignore_index)

    def ohem(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ohem_cross_entropy(logits, target, ignore_index)

    def lovasz(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lovasz_softmax(logits, target, ignore_index)

    losses: dict[str, Loss] = {"ce": ce, "wce": ce, "dice": dice, "ohem": ohem, "lovasz": lovasz,
                               "ce+dice": lambda logits, target: ce(logits, target) + dice(logits, target),
                               "ce+lovasz": lambda logits, target: ce(logits, target) + lovasz(logits, target)}
    losses["wce+dice"] = losses["ce+dice"]  # `ce` applies the weights whenever they are given
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(losses)}")
    if weighted(name) and weights is None:
        raise ValueError("loss 'wce' needs class weights")
    return losses[name]
