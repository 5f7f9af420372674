"""Albumentations pipelines. Masks follow every geometric transform with
nearest-neighbour interpolation, and pixels revealed by padding/rotation are
void in the mask (so they cost nothing in the loss)."""
from __future__ import annotations

import albumentations as A
import cv2

from .config import THIN_CLASSES, TrainConfig


def _crop(cfg: TrainConfig, classes: tuple[str, ...], void: int) -> A.BasicTransform:
    """A random crop; with --rare-crop, that share of the crops centred on a random thin-class pixel."""
    size = {"height": cfg.crop_height, "width": cfg.crop_width}
    if cfg.rare_crop == 0:
        return A.RandomCrop(**size)
    thin = [i for i, name in enumerate(classes) if name in THIN_CLASSES]
    if not thin or 0 in thin:  # the crop looks for non-zero mask values once the others are zeroed
        raise ValueError(f"--rare-crop needs {', '.join(THIN_CLASSES)} among the classes (index > 0); "
                         f"these labels have {', '.join(classes)}")
    others = [i for i in range(len(classes)) if i not in thin] + [void]
    # OneOf picks one child with probability proportional to its p; a frame without a thin-class
    # pixel gets a random crop either way.
    return A.OneOf([A.RandomCrop(**size, p=1 - cfg.rare_crop),
                    A.CropNonEmptyMaskIfExists(**size, ignore_values=others, p=cfg.rare_crop)], p=1.0)


def train_transform(cfg: TrainConfig, mean: tuple, std: tuple, void: int, classes: tuple[str, ...]) -> A.Compose:
    fill = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": void}
    steps = [
        # scale_limit is relative to 1: (min-1, max-1) gives factors in [min, max].
        A.RandomScale(scale_limit=(cfg.scale_min - 1, cfg.scale_max - 1), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(min_height=cfg.crop_height, min_width=cfg.crop_width, **fill),
        _crop(cfg, classes, void),
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
