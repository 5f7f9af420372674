"""Albumentations pipelines. Masks follow every geometric transform with
nearest-neighbour interpolation, and pixels revealed by padding/rotation are
void in the mask (so they cost nothing in the loss)."""
from __future__ import annotations

import albumentations as A
import cv2

from .config import TrainConfig


def train_transform(cfg: TrainConfig, mean: tuple, std: tuple, void: int) -> A.Compose:
    fill = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": void}
    steps = [
        # scale_limit is relative to 1: (min-1, max-1) gives factors in [min, max].
        A.RandomScale(scale_limit=(cfg.scale_min - 1, cfg.scale_max - 1), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(min_height=cfg.crop_height, min_width=cfg.crop_width, **fill),
        A.RandomCrop(height=cfg.crop_height, width=cfg.crop_width),
    ]
    if cfg.hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if cfg.vflip:
        steps.append(A.VerticalFlip(p=0.5))
    if cfg.rotate > 0:
        steps.append(A.Rotate(limit=cfg.rotate, interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST, p=0.5, **fill))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5), p=0.8))
    steps.append(A.Normalize(mean=mean, std=std))
    return A.Compose(steps)
