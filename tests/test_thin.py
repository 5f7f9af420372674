"""train.thin: the thin-class diagnosis (tolerance, shifts, stride ceiling) and its CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from streamseg.checkpoint import ModelInfo, save_checkpoint
from tests.camvid_data import make_camvid
from train.thin import best_shift, confusion, diagnose, iou, main, stride_ceiling, tolerant_scores

POLE, VOID = 2, 11


def pole_labels(frames: int = 2, x: int = 20) -> np.ndarray:
    """Road frames with a 2-px-wide pole at column `x` and a void corner."""
    labels = np.full((frames, 32, 48), 3, np.uint8)
    labels[:, 4:28, x:x + 2] = POLE
    labels[:, :2, :2] = VOID
    return labels


def test_a_mask_one_pixel_off_scores_zero_exact_and_full_within_one_pixel() -> None:
    labelled = pole_labels() == POLE
    predicted = np.roll(labelled, 2, axis=2)  # the 2-px pole moved right by its own width
    assert tolerant_scores(predicted, labelled, 0) == (0.0, 0.0)
    assert tolerant_scores(predicted, labelled, 1) == (0.5, 0.5)  # the near column of each is within 1 px
    assert tolerant_scores(predicted, labelled, 2) == (1.0, 1.0)


def test_best_shift_finds_a_systematic_offset_and_prefers_no_shift_on_ties() -> None:
    labelled = pole_labels() == POLE
    assert best_shift(np.roll(labelled, (1, -3), axis=(1, 2)), labelled) == (1.0, -1, 3)
    assert best_shift(labelled, labelled) == (1.0, 0, 0)
    assert iou(np.zeros_like(labelled), labelled) == 0.0


def test_a_coarse_head_cannot_draw_a_two_pixel_pole_that_a_fine_one_can() -> None:
    labels = pole_labels(frames=1, x=21)
    fine = stride_ceiling(labels, POLE, 1, 11, VOID, steps=60)
    coarse = stride_ceiling(labels, POLE, 16, 11, VOID, steps=60)
    assert fine > 0.95
    assert coarse < fine - 0.2


def test_diagnose_names_where_the_labelled_pixels_went() -> None:
    labels = pole_labels()
    predictions = labels.copy()
    predictions[:, 4:12, 20:22] = 1  # the pole's upper third called Building
    classes = ("Sky", "Building", "Pole", "Road")
    matrix = confusion(predictions, labels, len(classes), VOID)
    lines = diagnose(predictions, labels, matrix, classes, "Pole", VOID)
    assert lines[0] == "Pole: IoU 0.667  precision 1.000  recall 0.667  (48 labelled, 32 predicted px per frame)"
    assert lines[4].endswith("best whole-frame shift: (+0, +0) px → IoU 0.667")
    assert "its labelled pixels predicted as: Pole 0.67, Building 0.33, " in lines[5]


def test_cli_reports_each_class_and_rejects_an_unknown_one(tmp_path: Path) -> None:
    data = make_camvid(tmp_path / "camvid")
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2})
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", info.build(), info)
    args = ["-m", str(checkpoint), "--data", str(data), "--every", "1"]
    result = CliRunner().invoke(main, [*args, "--classes", "Car,Tree"])
    assert result.exit_code == 0, result.output
    assert "on val (3 frames, every 1)" in result.output
    assert result.output.count("within 2 px") == 2
    assert "Car: IoU " in result.output and "Tree: IoU " in result.output
    bad = CliRunner().invoke(main, [*args, "--classes", "Pole,Lamp"])
    assert bad.exit_code == 2
    assert "Lamp not among Sky, Building" in bad.output
    no_split = CliRunner().invoke(main, [*args, "--split", "test"])
    assert no_split.exit_code == 1 and "Traceback" not in no_split.output
    assert no_split.output.startswith("Error: ") and no_split.output.count("\n") == 1
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    junk = CliRunner().invoke(main, ["-m", str(tmp_path / "junk.safetensors"), "--data", str(data)])
    assert junk.exit_code == 1 and junk.output.startswith("Error: ")
