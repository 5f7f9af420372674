"""CamVid classes: the label_colors.txt parser, colour → index conversion, palettes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamseg.classes import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    GROUPS_32_TO_11,
    VOID_INDEX,
    ColorClass,
    LabelColorsError,
    color_to_index,
    colorize,
    load_label_colors,
    palette_array,
    parse_label_colors,
)

# A byte-for-byte copy of CamVid's label_colors.txt: tabs, double tabs and runs of spaces mixed.
LABEL_COLORS = Path(__file__).parent / "data" / "label_colors.txt"


@pytest.fixture(scope="module")
def colors32() -> list[ColorClass]:
    return load_label_colors(LABEL_COLORS)


def test_parses_the_mixed_tab_space_file(colors32: list[ColorClass]) -> None:
    raw = LABEL_COLORS.read_text()
    assert "\t\t" in raw and "   " in raw  # the fixture really has both separators
    assert len(colors32) == 32
    by_name = {c.name: c.rgb for c in colors32}
    assert by_name["Animal"] == (64, 128, 64)            # spaces
    assert by_name["Archway"] == (192, 0, 128)           # one tab
    assert by_name["Pedestrian"] == (64, 64, 0)          # two tabs
    assert by_name["RoadShoulder"] == (128, 128, 192)    # one space
    assert by_name["Void"] == (0, 0, 0)
    assert [c.name for c in colors32][:3] == ["Animal", "Archway", "Bicyclist"]  # file order kept
    assert len({c.rgb for c in colors32}) == 32


def test_grouping_covers_exactly_the_32_classes(colors32: list[ColorClass]) -> None:
    assert {c.name for c in colors32} == set(GROUPS_32_TO_11)
    assert set(GROUPS_32_TO_11.values()) == set(CAMVID_CLASSES) | {"void"}


def test_blank_lines_comments_and_crlf_are_fine() -> None:
    text = "# R G B Name\r\n\r\n128 128 128\tSky\r\n  64 0 128   Car  \r\n"
    assert parse_label_colors(text) == [ColorClass("Sky", (128, 128, 128)), ColorClass("Car", (64, 0, 128))]


def test_names_may_contain_spaces() -> None:
    assert parse_label_colors("1 2 3 Traffic Cone\n")[0].name == "Traffic Cone"


@pytest.mark.parametrize("bad", [
    "128 128\tSky",        # a value missing
    "128 128 128",         # no name
    "128 x 128\tSky",      # not an integer
    "128 12.5 128\tSky",   # not an integer either
    "256 0 0\tSky",        # out of range
    "-1 0 0\tSky",
])
def test_malformed_line_names_file_and_line(bad: str) -> None:
    text = "64 128 64\tAnimal\n\n" + bad + "\n0 0 0\tVoid\n"
    with pytest.raises(LabelColorsError) as error:
        parse_label_colors(text, source="colors.txt")
    message = str(error.value)
    assert message.startswith("colors.txt:3:")
    assert "\n" not in message


def test_errors_from_a_file_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("0 0 0\tVoid\n1 2\tBroken\n")
    with pytest.raises(LabelColorsError, match=r"mine\.txt:2:"):
        load_label_colors(path)


def test_a_file_without_classes_is_an_error() -> None:
    with pytest.raises(LabelColorsError, match="no classes"):
        parse_label_colors("# only a comment\n\n")
    assert issubclass(LabelColorsError, ValueError)


# --- colour-coded labels → index maps -------------------------------------------------------------

def _swatch(colors: list[ColorClass], extra: tuple[int, int, int]) -> np.ndarray:
    """A (2, 33, 3) label image: every table colour once, an unknown colour, then the same reversed."""
    row = np.array([c.rgb for c in colors] + [extra], dtype=np.uint8)
    return np.stack([row, row[::-1]])


def test_grouped_conversion_to_the_11_classes(colors32: list[ColorClass]) -> None:
    image = _swatch(colors32, extra=(1, 2, 3))
    index = color_to_index(image, colors32)
    assert index.shape == (2, 33) and index.dtype == np.uint8
    lookup = {name: i for i, name in enumerate(CAMVID_CLASSES)}
    expected = [lookup.get(GROUPS_32_TO_11[c.name], VOID_INDEX) for c in colors32] + [VOID_INDEX]
    assert index[0].tolist() == expected
    assert index[1].tolist() == expected[::-1]
    by_name = dict(zip((c.name for c in colors32), index[0].tolist()))
    assert by_name["Wall"] == by_name["Building"] == CAMVID_CLASSES.index("Building")
    assert by_name["Child"] == CAMVID_CLASSES.index("Pedestrian")
    assert by_name["Void"] == VOID_INDEX


def test_ungrouped_conversion_gives_table_positions(colors32: list[ColorClass]) -> None:
    index = color_to_index(_swatch(colors32, extra=(1, 2, 3)), colors32, grouping=None)
    assert index[0].tolist() == list(range(32)) + [255]


def test_groups_outside_the_targets_are_void(colors32: list[ColorClass]) -> None:
    image = np.array([[[128, 64, 128], [64, 0, 128], [128, 128, 128]]], dtype=np.uint8)  # Road, Car, Sky
    index = color_to_index(image, colors32, target_classes=("Road", "Car"))
    assert index.tolist() == [[0, 1, VOID_INDEX]]


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 4), (4, 5, 1)])
def test_conversion_wants_an_rgb_image(colors32: list[ColorClass], shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="colour label image"):
        color_to_index(np.zeros(shape, dtype=np.uint8), colors32)


# --- palettes and colourising ---------------------------------------------------------------------

def test_camvid_definition() -> None:
    assert len(CAMVID_CLASSES) == len(CAMVID_PALETTE) == VOID_INDEX == 11
    assert len(set(CAMVID_PALETTE)) == 11
    assert CAMVID_PALETTE[CAMVID_CLASSES.index("Road")] == (128, 64, 128)
    assert CAMVID_PALETTE[CAMVID_CLASSES.index("Sky")] == (128, 128, 128)


def test_palette_array_is_a_256_entry_table() -> None:
    table = palette_array()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert table[:11].tolist() == [list(c) for c in CAMVID_PALETTE]
    assert not table[11:].any()  # void and unused indices draw black
    assert palette_array([(1, 2, 3)])[0].tolist() == [1, 2, 3]


def test_colorize_maps_every_class_and_blacks_out_void() -> None:
    labels = np.array([[0, 3, 8], [10, VOID_INDEX, 255]], dtype=np.uint8)
    image = colorize(labels)
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    assert [tuple(p) for p in image[0]] == [CAMVID_PALETTE[0], CAMVID_PALETTE[3], CAMVID_PALETTE[8]]
    assert tuple(image[1, 0]) == CAMVID_PALETTE[10]
    assert not image[1, 1:].any()


def test_colorize_then_convert_round_trips() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 11, size=(37, 53), dtype=np.uint8)
    table = [ColorClass(name, rgb) for name, rgb in zip(CAMVID_CLASSES, CAMVID_PALETTE)]
    assert np.array_equal(color_to_index(colorize(labels), table, grouping=None), labels)
    grouped = {name: name for name in CAMVID_CLASSES}
    assert np.array_equal(color_to_index(colorize(labels), table, grouping=grouped), labels)


def test_colorize_with_a_custom_palette() -> None:
    image = colorize(np.array([[0, 1]], dtype=np.uint8), [(255, 0, 0), (0, 255, 0)])
    assert image.tolist() == [[[255, 0, 0], [0, 255, 0]]]
