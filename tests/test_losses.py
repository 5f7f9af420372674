"""Each loss on a hand-made case, and median-frequency weights on hand-made masks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train.losses import (
    CLASS_WEIGHTS,
    build_loss,
    dice_loss,
    log_frequency_weights,
    lovasz_softmax,
    median_frequency_weights,
    ohem_cross_entropy,
)

VOID = 2


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes, three pixels in a row: logits [0, 0], [ln 3, 0], [5, -5]; targets 0, 1, void."""
    logits = torch.tensor([[0.0, math.log(3), 5.0], [0.0, 0.0, -5.0]]).reshape(1, 2, 1, 3)
    return logits, torch.tensor([[[0, 1, VOID]]])


def test_cross_entropy_ignores_void() -> None:
    logits, target = _case()
    # pixel 1: p(0) = 1/2; pixel 2: p(1) = 1/(3+1) = 1/4; the void pixel costs nothing.
    expected = (math.log(2) + math.log(4)) / 2
    assert build_loss("ce", VOID)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_is_a_weighted_mean() -> None:
    logits, target = _case()
    weights = torch.tensor([1.0, 3.0])
    expected = (1 * math.log(2) + 3 * math.log(4)) / (1 + 3)
    assert build_loss("wce", VOID, weights)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_soft_probabilities() -> None:
    # Uniform logits: every pixel is 1/2 class 0, 1/2 class 1. Targets 0, 1, void.
    logits, target = torch.zeros(1, 2, 1, 3), torch.tensor([[[0, 1, VOID]]])
    # per class: |P∩G| = 0.5, |P| = 1 (void masked out), |G| = 1 → (2·0.5 + 1) / (2 + 1) = 2/3
    assert dice_loss(logits, target, VOID).item() == pytest.approx(1 - 2 / 3, rel=1e-6)
    assert build_loss("dice", VOID)(logits, target).item() == pytest.approx(1 / 3, rel=1e-6)


def test_dice_hard_predictions() -> None:
    # Confident predictions 0, 1, 1, (anything on void) for targets 0, 0, 1, void.
    logits = torch.tensor([[30.0, -30, -30, 30], [-30, 30, 30, -30]]).reshape(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 1, VOID]]])
    # class 0: (2·1 + 1) / (1 + 2 + 1) = 3/4; class 1: (2·1 + 1) / (2 + 1 + 1) = 3/4
    assert dice_loss(logits, target, VOID).item() == pytest.approx(0.25, abs=1e-6)


def test_ce_plus_dice_is_the_sum() -> None:
    logits, target = _case()
    total = build_loss("ce+dice", VOID)(logits, target)
    parts = build_loss("ce", VOID)(logits, target) + build_loss("dice", VOID)(logits, target)
    assert total.item() == pytest.approx(parts.item(), rel=1e-6)


def test_ohem_keeps_only_the_hard_pixels() -> None:
    # Targets 0, 1, void, 0: p(true) = 1/2, 1/4, -, ~1. The two hard pixels (p < 0.7) are averaged;
    # the easy pixel (p ≈ 1) and the void pixel are left out.
    logits = torch.tensor([[0.0, math.log(3), 5.0, 20.0], [0.0, 0.0, -5.0, 0.0]]).reshape(1, 2, 1, 4)
    target = torch.tensor([[[0, 1, VOID, 0]]])
    expected = (math.log(2) + math.log(4)) / 2
    assert build_loss("ohem", VOID)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_ohem_keeps_a_minimum_of_the_hardest_pixels() -> None:
    # Every pixel easy: OHEM still keeps the hardest `min_kept` share (here 1 of the 3 valid pixels).
    logits = torch.tensor([[4.0, 6.0, 8.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 0, VOID]]])
    hardest = math.log(1 + math.exp(-4.0))  # CE of p(0) = e^4 / (e^4 + 1)
    assert ohem_cross_entropy(logits, target, VOID, min_kept=0.2).item() == pytest.approx(hardest, rel=1e-5)
    both = (hardest + math.log(1 + math.exp(-6.0))) / 2
    assert ohem_cross_entropy(logits, target, VOID, min_kept=0.5).item() == pytest.approx(both, rel=1e-5)


def test_lovasz_on_hard_predictions_is_one_minus_iou_per_image() -> None:
    # Near-one-hot logits make the surrogate exact: the mean over images of the mean over the classes
    # labelled in that image of 1 - IoU. Image 0: class 0 IoU 2/3, class 1 IoU 1/2; image 1: only
    # class 1 labelled, on 2 pixels, 1 of them predicted (the other prediction is on void): IoU 1/2.
    pred = torch.tensor([[[0, 0, 1, 0]], [[1, 0, 0, 1]]])
    target = torch.tensor([[[0, 0, 1, 1]], [[VOID, 1, VOID, 1]]])
    logits = 50.0 * (torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float() - 0.5)
    image0 = ((1 - 2 / 3) + (1 - 1 / 2)) / 2
    image1 = 1 - 1 / 2
    assert lovasz_softmax(logits, target, VOID).item() == pytest.approx((image0 + image1) / 2, abs=1e-6)
    assert build_loss("lovasz", VOID)(logits, target).item() == pytest.approx((image0 + image1) / 2, abs=1e-6)


def test_lovasz_is_zero_when_perfect_and_pulls_towards_the_labels() -> None:
    target = torch.tensor([[[0, 1, 1, VOID]]])
    perfect = 50.0 * (torch.nn.functional.one_hot(target.clamp(max=1), 2).permute(0, 3, 1, 2).float() - 0.5)
    assert lovasz_softmax(perfect, target, VOID).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.zeros(1, 2, 1, 4, requires_grad=True)
    lovasz_softmax(logits, target, VOID).backward()
    # a gradient step raises each labelled pixel's own class and leaves the void pixel alone
    assert logits.grad[0, 0, 0, 0] < 0 and logits.grad[0, 1, 0, 1] < 0 and logits.grad[0, 1, 0, 2] < 0
    assert logits.grad[0, :, 0, 3].abs().sum() == 0


def test_ce_plus_lovasz_is_the_sum() -> None:
    logits, target = _case()
    total = build_loss("ce+lovasz", VOID)(logits, target)
    parts = build_loss("ce", VOID)(logits, target) + build_loss("lovasz", VOID)(logits, target)
    assert total.item() == pytest.approx(parts.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["ce", "wce", "dice", "ce+dice", "wce+dice", "ohem", "lovasz", "ce+lovasz"])
def test_all_void_batch_is_zero_and_finite(name: str) -> None:
    logits = torch.randn(2, 2, 3, 3, requires_grad=True)
    loss = build_loss(name, VOID, torch.ones(2))(logits, torch.full((2, 3, 3), VOID))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_unknown_loss_and_missing_weights() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("focal", VOID)
    with pytest.raises(ValueError, match="weights"):
        build_loss("wce", VOID)
    with pytest.raises(ValueError, match="weights"):
        build_loss("wce+dice", VOID)


def test_weighted_ce_plus_dice_is_the_sum_of_its_parts() -> None:
    logits, target = _case()
    weights = torch.tensor([1.0, 3.0])
    total = build_loss("wce+dice", VOID, weights)(logits, target)
    parts = build_loss("wce", VOID, weights)(logits, target) + build_loss("dice", VOID)(logits, target)
    assert total.item() == pytest.approx(parts.item(), rel=1e-6)
    assert total.item() != pytest.approx(build_loss("ce+dice", VOID)(logits, target).item(), rel=1e-3)


def test_median_frequency_weights() -> None:
    masks = [np.array([[0, 0, 0, 1]], np.uint8), np.array([[0, 2, 2, 9]], np.uint8)]  # 9 = void
    weights = median_frequency_weights(masks, num_classes=4, ignore_index=9)
    # pixels / pixels of the images the class appears in (void excluded):
    # f0 = 4/7, f1 = 1/4, f2 = 2/3 → median 4/7; class 3 never appears → weight 0.
    np.testing.assert_allclose(weights.numpy(), [1.0, 16 / 7, 6 / 7, 0.0], rtol=1e-6)
    assert weights.dtype == torch.float32


def test_log_frequency_weights() -> None:
    masks = [np.array([[0, 0, 0, 1]], np.uint8), np.array([[0, 2, 2, 9]], np.uint8)]  # 9 = void
    # shares of the 7 labelled pixels: 4/7, 1/7, 2/7, 0 → w = 1 / ln(c + share); an absent class gets the cap 1/ln(c).
    for name, c in (("enet", 1.02), ("cgnet", 1.10)):
        expected = [1 / math.log(c + share) for share in (4 / 7, 1 / 7, 2 / 7, 0.0)]
        np.testing.assert_allclose(CLASS_WEIGHTS[name](masks, 4, 9).numpy(), expected, rtol=1e-6)
    weights = log_frequency_weights(masks, num_classes=4, ignore_index=9, c=1.10)
    assert weights.dtype == torch.float32
    assert weights[1] > weights[2] > weights[0]  # rarer classes weigh more
    np.testing.assert_allclose(CLASS_WEIGHTS["median-frequency"](masks, 4, 9).numpy(),
                               median_frequency_weights(masks, 4, 9).numpy())
