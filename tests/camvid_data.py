"""Tiny synthetic CamVid-like data sets, written at test time (never ../shared).

Each frame is sky above road with a car rectangle, a tree disc and a void
stripe; the picture's colours follow the labels (plus noise), so a model can
learn something in one epoch.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamseg.classes import CAMVID_PALETTE, VOID_INDEX

SKY, BUILDING, ROAD, TREE, CAR = 0, 1, 3, 5, 8
# (name, RGB) of the colour layout's label_colors.txt: real CamVid entries, so the
# 32 → 11 grouping applies to them.
RAW_CLASSES = ("Sky", "Building", "Road", "Tree", "Car")  # --classes camvid32 on COLOR_TABLE: Void is ignored
COLOR_TABLE = (("Sky", (128, 128, 128)), ("Building", (128, 0, 0)), ("Road", (128, 64, 128)),
               ("Tree", (128, 128, 0)), ("Car", (64, 0, 128)), ("Void", (0, 0, 0)))
INDEX_TO_COLOR_ROW = {SKY: 0, BUILDING: 1, ROAD: 2, TREE: 3, CAR: 4, VOID_INDEX: 5}


def make_mask(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(H, W) uint8 class indices: sky/road halves, a car box, a tree disc, a void stripe."""
    rng = np.random.default_rng(seed)
    mask = np.full((height, width), ROAD, np.uint8)
    mask[: height // 2 - int(rng.integers(0, 6))] = SKY
    x, y = int(rng.integers(0, width - 20)), int(rng.integers(height // 2, height - 10))
    mask[y:y + 10, x:x + 20] = CAR
    cv2.circle(mask, (int(rng.integers(8, width - 8)), int(rng.integers(6, height // 2))), 6, TREE, -1)
    mask[:, int(rng.integers(0, width - 3)):][:, :2] = VOID_INDEX
    if seed % 2:
        mask[: height // 4, : width // 4] = BUILDING
    return mask


def make_image(mask: np.ndarray, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB whose colours follow the mask."""
    palette = np.array(CAMVID_PALETTE + ((0, 0, 0),) * (256 - len(CAMVID_PALETTE)), np.int16)
    noise = np.random.default_rng(1000 + seed).integers(-20, 21, (*mask.shape, 3))
    return np.clip(palette[mask] + noise, 0, 255).astype(np.uint8)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def make_camvid(root: Path, splits: dict[str, int] | None = None, *, height: int = 48, width: int = 64) -> Path:
    """Index layout: `<split>/NAME.png` + `<split>annot/NAME.png` (void = 11)."""
    splits = splits or {"train": 6, "val": 3}
    for offset, (split, count) in enumerate(splits.items()):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(exist_ok=True)
        for i in range(count):
            seed = offset * 100 + i
            mask = make_mask(seed, height, width)
            write_rgb(root / split / f"f{i:03d}.png", make_image(mask, seed))
            cv2.imwrite(str(root / f"{split}annot" / f"f{i:03d}.png"), mask)
    return root


def make_camvid_color(root: Path, splits: dict[str, int] | None = None) -> Path:
    """Colour layout: `<split>/NAME.png` with `<split>/NAME_L.png` beside it, plus label_colors.txt."""
    make_camvid(root, splits)
    colors = np.array([rgb for _, rgb in COLOR_TABLE], np.uint8)
    lut = np.zeros(256, np.uint8)
    for index, row in INDEX_TO_COLOR_ROW.items():
        lut[index] = row
    for annot in root.glob("*annot"):
        split = annot.name[: -len("annot")]
        for label in sorted(annot.glob("*.png")):
            mask = cv2.imread(str(label), cv2.IMREAD_GRAYSCALE)
            write_rgb(root / split / f"{label.stem}_L.png", colors[lut[mask]])
            label.unlink()
        annot.rmdir()
    lines = [f"{r} {g} {b}\t{name}" for name, (r, g, b) in COLOR_TABLE]
    (root / "label_colors.txt").write_text("\n".join(lines) + "\n")
    return root


def valid_pixels(root: Path, split: str) -> int:
    """Labelled (non-void) pixels of a split: index maps (void = 11) or colour labels (void = black)."""
    annot = root / f"{split}annot"
    if annot.is_dir():
        return sum(int((cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) != VOID_INDEX).sum()) for p in annot.glob("*.png"))
    return sum(int(cv2.imread(str(p)).any(axis=2).sum()) for p in (root / split).glob("*_L.png"))
