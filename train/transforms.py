"""Albumentations pipelines. Masks follow every geometric transform with
nearest-neighbour interpolation, and pixels revealed by padding/rotation are
void in the mask (so they cost nothing in the loss)."""
from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from streamseg.classes import class_indices
from streamseg.data import CamVid, read_rgb

from .config import PASTE_CLASSES, THIN_CLASSES, TrainConfig


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


@dataclass(frozen=True)
class Cutout:
    """One training frame's thin-object pixels: flat indices into its (H, W), their RGB and labels."""
    shape: tuple[int, int]
    index: np.ndarray
    rgb: np.ndarray
    label: np.ndarray


def thin_cutouts(dataset: CamVid, names: tuple[str, ...] = ()) -> list[Cutout]:
    """The pixels of classes `names` (default: those of PASTE_CLASSES the labels have) of every frame of
    `dataset` that has any (read once: ~25 MB for CamVid's train and the default classes)."""
    if names:
        try:
            wanted = class_indices(names, dataset.classes)
        except ValueError as error:
            raise ValueError(f"--paste-class: {error}") from None
    else:
        wanted = [i for i, name in enumerate(dataset.classes) if name in PASTE_CLASSES]
    if not wanted:
        raise ValueError(f"--paste needs one of {', '.join(PASTE_CLASSES)} among the classes (or --paste-class); "
                         f"these labels have {', '.join(dataset.classes)}")
    cutouts = []
    for image_path, label_path in dataset.pairs:
        mask = dataset.read_mask(label_path)
        index = np.flatnonzero(np.isin(mask, wanted))
        if index.size:
            rgb = read_rgb(image_path).reshape(-1, 3)
            if len(rgb) != mask.size:
                raise ValueError(f"{image_path} and its label {label_path} differ in size")
            cutouts.append(Cutout(mask.shape, index, rgb[index], mask.reshape(-1)[index]))
    return cutouts


class ThinPaste:
    """Copy-paste of thin objects before `transform`: ClassMix (Olsson et al., WACV 2021) narrowed to a
    few classes (PASTE_CLASSES by default). With probability `p` a frame gets a random training frame's
    pixels of them at the same place, mirrored half the time. Driving frames share one perspective, so a
    pole moved this way still stands where poles stand; the mirror doubles the places."""

    def __init__(self, transform: A.Compose, cutouts: list[Cutout], p: float) -> None:
        self.transform, self.cutouts, self.p = transform, cutouts, p
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed: int) -> None:  # setup.seed_transform's hook, as Albumentations'
        self.rng = np.random.default_rng(seed)
        self.transform.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        if self.cutouts and self.rng.random() < self.p:
            cut = self.cutouts[self.rng.integers(len(self.cutouts))]
            if cut.shape == mask.shape:  # a frame of another size keeps its own pixels
                index = cut.index
                if self.rng.random() < 0.5:
                    width = mask.shape[1]
                    index = index - 2 * (index % width) + width - 1  # x -> width - 1 - x
                image, mask = image.copy(), mask.copy()
                image.reshape(-1, 3)[index] = cut.rgb
                mask.reshape(-1)[index] = cut.label
        return self.transform(image=image, mask=mask)
