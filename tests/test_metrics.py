"""Metrics against hand-computed confusion matrices (void handling, absent classes)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from streamseg.metrics import ConfusionMatrix, json_safe, metrics_from_confusion

VOID = 3
TARGET = torch.tensor([[0, 0, 1, 1], [2, 2, VOID, VOID]])
PREDICTION = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 2]])   # void pixels' predictions must not count
EXPECTED = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]                # rows: truth, columns: prediction


def test_confusion_matrix_skips_void_and_accumulates() -> None:
    confusion = ConfusionMatrix(3, VOID)
    confusion.update(TARGET, PREDICTION)
    assert confusion.matrix.tolist() == EXPECTED
    confusion.update(TARGET[:1], PREDICTION[:1])
    assert confusion.matrix.tolist() == [[2, 2, 0], [0, 4, 0], [1, 0, 1]]
    confusion.reduce()  # not distributed: a no-op
    assert confusion.matrix.sum().item() == 10


def test_labels_outside_the_class_range_are_ignored() -> None:
    confusion = ConfusionMatrix(3, 255)
    confusion.update(torch.tensor([0, 255, 7]), torch.tensor([0, 1, 1]))
    assert confusion.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_metrics_by_hand() -> None:
    m = metrics_from_confusion(np.array(EXPECTED), ("a", "b", "c"))
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)
    assert m["iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 1 / 2})
    assert m["precision"] == pytest.approx({"a": 1 / 2, "b": 2 / 3, "c": 1.0})
    assert m["recall"] == pytest.approx({"a": 1 / 2, "b": 1.0, "c": 1 / 2})
    assert m["f1"] == pytest.approx({"a": 2 / 4, "b": 4 / 5, "c": 2 / 3})
    assert m["mIoU"] == pytest.approx(0.5)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx(m["mean_accuracy"])
    assert m["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert m["fwIoU"] == pytest.approx((2 / 6) * (1 / 3 + 2 / 3 + 1 / 2))
    assert m["confusion_matrix"] == EXPECTED and m["classes"] == ["a", "b", "c"]


def test_class_absent_from_truth_and_prediction_is_left_out_of_macro() -> None:
    matrix = np.zeros((4, 4), int)
    matrix[:3, :3] = EXPECTED  # class "d" never appears and is never predicted
    m = metrics_from_confusion(matrix, ("a", "b", "c", "d"))
    assert m["iou"]["d"] is None and m["precision"]["d"] is None and m["f1"]["d"] is None
    assert m["mIoU"] == pytest.approx(0.5)
    assert m["mean_accuracy"] == pytest.approx(2 / 3)
    assert m["fwIoU"] == pytest.approx(0.5)


def test_predicted_but_absent_class_is_left_out_of_miou() -> None:
    # truth: 2 px of a; prediction: one a, one b → b is not in the split: no IoU, no recall, precision 0;
    # its false positive already costs a (IoU 1/2).
    m = metrics_from_confusion(np.array([[1, 1], [0, 0]]), ("a", "b"))
    assert m["iou"] == {"a": 0.5, "b": None}
    assert m["recall"]["b"] is None and m["precision"]["b"] == 0.0
    assert m["mIoU"] == pytest.approx(0.5)


def test_miou_is_over_the_whole_split_not_a_mean_of_per_image_scores() -> None:
    """Two images: a alone, then a and b; per-class IoU comes from the summed matrix."""
    first = ConfusionMatrix(2, 255)
    first.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1]))   # a: 3 right, 1 taken for b
    first.update(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 1, 1, 0]))   # b: 2 right, 1 taken for a
    m = first.compute(("a", "b"))
    assert m["confusion_matrix"] == [[4, 1], [1, 2]]
    # a: 4 / (4 + 1 + 1); b: 2 / (2 + 1 + 1); mean over both (both are in the ground truth)
    assert m["iou"] == pytest.approx({"a": 4 / 6, "b": 2 / 4})
    assert m["mIoU"] == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_void_and_absent_classes_with_camvid_sizes() -> None:
    """11 classes + void 11, as CamVid: void pixels never count, whatever they are predicted as;
    classes 2..10 are absent from the truth (one of them predicted) and do not enter the mean."""
    target = torch.tensor([0, 0, 1, 1, 11, 11, 11])
    prediction = torch.tensor([0, 5, 1, 1, 0, 1, 7])
    confusion = ConfusionMatrix(11, 11)
    confusion.update(target, prediction)
    m = confusion.compute()
    assert int(confusion.matrix.sum()) == 4
    assert m["iou"]["0"] == pytest.approx(1 / 2) and m["iou"]["1"] == pytest.approx(1.0)
    assert m["iou"]["5"] is None and m["precision"]["5"] == 0.0
    assert m["mIoU"] == pytest.approx(0.75)


def test_empty_matrix_gives_nan_macro_not_an_error() -> None:
    m = metrics_from_confusion(np.zeros((2, 2), int))
    assert m["pixel_accuracy"] == 0.0 and math.isnan(m["mIoU"])
    text = json.dumps(json_safe(m), allow_nan=False)  # strict JSON: NaN → null
    assert json.loads(text)["mIoU"] is None


def test_json_safe_converts_numpy_and_nan() -> None:
    assert json_safe({"a": np.float32(0.5), "b": [float("nan"), np.int64(3)], "c": (1, float("inf"))}) == \
        {"a": 0.5, "b": [None, 3], "c": [1, None]}
