"""Why a thin class scores low: one checkpoint on one split, measured four ways.

    python -m train.thin -m runs/unet-mnv3/last.safetensors --data ../shared/data/camvid --split val

For each class asked (Pole and SignSymbol by default) it prints
- IoU, precision and recall, and the share of the class's labelled pixels per predicted class;
- precision and recall with a tolerance of r pixels (a predicted pixel counts when a labelled one
  lies within r, and the other way round): high here but low exact means right masks, misplaced;
- the best IoU over whole-frame shifts of the prediction up to 3 px: a systematic offset (an
  upsampling or alignment bug) would show as a shift that beats (0, 0);
- with `--ceiling S`, the IoU that the best stride-S logit map can reach through the bilinear
  upsampling every head ends with (free logits fitted to each label map): whether the head's
  output stride rules the class out before any learning.
"""
from __future__ import annotations

import click
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from streamseg.checkpoint import load_checkpoint, read_info
from streamseg.data import DataError
from streamseg.evaluate import AtInputSize, EvalConfig, open_split
from streamseg.metrics import ConfusionMatrix, metrics_from_confusion
from streamseg.modelinfo import CheckpointError


@torch.inference_mode()
def predict_split(checkpoint: str, data: str, split: str, every: int
                  ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], int]:
    """(predictions, labels) as (N, H, W) uint8 over every `every`-th frame, the class names and
    the labels' void index."""
    model, info = load_checkpoint(checkpoint, "cpu")
    model = AtInputSize(model, info.input_size)  # the masks `streamseg eval` scores
    dataset = open_split(EvalConfig(checkpoint, data, split), info)
    predictions, labels = [], []
    for index in range(0, len(dataset), every):
        image, label = dataset[index]
        predictions.append(model(image[None]).argmax(1)[0].numpy().astype(np.uint8))
        labels.append(label.numpy().astype(np.uint8))
    return np.stack(predictions), np.stack(labels), info.classes, dataset.ignore_index


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in masks]).astype(bool)


def tolerant_scores(predicted: np.ndarray, labelled: np.ndarray, radius: int) -> tuple[float, float]:
    """(precision, recall) of boolean (N, H, W) masks when `radius` pixels of misplacement are forgiven."""
    precision = (predicted & _dilate(labelled, radius)).sum() / max(predicted.sum(), 1)
    recall = (labelled & _dilate(predicted, radius)).sum() / max(labelled.sum(), 1)
    return float(precision), float(recall)


def iou(predicted: np.ndarray, labelled: np.ndarray) -> float:
    return float((predicted & labelled).sum() / max((predicted | labelled).sum(), 1))


def best_shift(predicted: np.ndarray, labelled: np.ndarray, reach: int = 3) -> tuple[float, int, int]:
    """(IoU, dy, dx) of the whole-frame shift of the prediction, up to `reach` px, that scores best."""
    def shifted(dy: int, dx: int) -> float:
        return iou(np.roll(predicted, (dy, dx), axis=(1, 2)), labelled)
    scores = [(shifted(dy, dx), dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    return max(scores, key=lambda s: (s[0], -abs(s[1]) - abs(s[2])))  # ties: the smaller shift


def fitted_map(label: torch.Tensor, stride: int, num_classes: int, ignore_index: int, steps: int) -> torch.Tensor:
    """The (H, W) class map of free stride-`stride` logits fitted to `label` with cross-entropy
    through bilinear upsampling, as a head's logits reach the input size."""
    height, width = label.shape
    logits = torch.zeros(1, num_classes, -(-height // stride), -(-width // stride), requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.3)
    for _ in range(steps):
        upsampled = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        loss = F.cross_entropy(upsampled, label[None], ignore_index=ignore_index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False).argmax(1)[0]


def stride_ceiling(labels: np.ndarray, class_index: int, stride: int, num_classes: int,
                   ignore_index: int, steps: int = 150) -> float:
    """IoU of `class_index` over `labels` reached by `fitted_map`: an upper bound for any head at that stride."""
    inter = union = 0
    for label in torch.from_numpy(labels.astype(np.int64)):
        predicted = fitted_map(label, stride, num_classes, ignore_index, steps) == class_index
        predicted &= label != ignore_index
        labelled = label == class_index
        inter += int((predicted & labelled).sum())
        union += int((predicted | labelled).sum())
    return inter / max(union, 1)


def confusion(predictions: np.ndarray, labels: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """The split's confusion matrix (rows: labelled, columns: predicted), as `streamseg eval` counts it."""
    matrix = ConfusionMatrix(num_classes, ignore_index)
    matrix.update(torch.from_numpy(labels), torch.from_numpy(predictions))
    return matrix.matrix.numpy()


def _score(value: float | None) -> str:
    """'-' where the metrics have no value (a class never labelled, or never predicted), as `streamseg eval` prints it."""
    return "-" if value is None else f"{value:.3f}"


def diagnose(predictions: np.ndarray, labels: np.ndarray, matrix: np.ndarray, classes: tuple, name: str,
             ignore_index: int) -> list[str]:
    """The report's lines for one class; IoU, precision, recall and where its pixels went are
    `matrix`'s, the metrics every other number in streamseg comes from."""
    c = classes.index(name)
    metrics = metrics_from_confusion(matrix, classes)
    predicted, labelled = (predictions == c) & (labels != ignore_index), labels == c
    frames = len(labels)
    iou_, precision_, recall_ = (_score(metrics[k][name]) for k in ("iou", "precision", "recall"))
    lines = [(f"{name}: IoU {iou_}  precision {precision_}  recall {recall_}  ({matrix[c].sum() / frames:.0f} labelled, "
              f"{matrix[:, c].sum() / frames:.0f} predicted px per frame)")]
    for radius in (1, 2, 3):
        precision, recall = tolerant_scores(predicted, labelled, radius)
        lines.append(f"  within {radius} px: precision {precision:.3f}  recall {recall:.3f}")
    score, dy, dx = best_shift(predicted, labelled)
    lines.append(f"  best whole-frame shift: ({dy:+d}, {dx:+d}) px → IoU {score:.3f}")
    shares = matrix[c] / max(matrix[c].sum(), 1)
    lines.append("  its labelled pixels predicted as: " + ", ".join(
        f"{classes[i]} {shares[i]:.2f}" for i in np.argsort(shares)[::-1][:4]))
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="val", show_default=True)
@click.option("--classes", "names", default="Pole,SignSymbol", show_default=True, help="comma-separated")
@click.option("--every", default=2, show_default=True, type=click.IntRange(min=1), help="use every n-th frame")
@click.option("--ceiling", "strides", multiple=True, type=click.IntRange(min=1),
              help="also fit the best logit map at this output stride (repeatable; slow: ~10 s a frame)")
def main(checkpoint: str, data: str, split: str, names: str, every: int, strides: tuple[int, ...]) -> None:
    try:  # a file that is no checkpoint, a split that is not there: one line, no traceback
        wanted, known = [n.strip() for n in names.split(",")], read_info(checkpoint).classes
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise click.BadParameter(f"{', '.join(unknown)} not among {', '.join(known)}", param_hint="--classes")
        predictions, labels, classes, ignore_index = predict_split(checkpoint, data, split, every)
    except (CheckpointError, DataError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{checkpoint} on {split} ({len(labels)} frames, every {every}):")
    matrix = confusion(predictions, labels, len(classes), ignore_index)
    for name in wanted:
        for line in diagnose(predictions, labels, matrix, classes, name, ignore_index):
            click.echo(line)
        for stride in strides:
            ceiling = stride_ceiling(labels[::5], classes.index(name), stride, len(classes), ignore_index)
            click.echo(f"  ceiling of a stride-{stride} head (every 5th of these frames): IoU {ceiling:.3f}")


if __name__ == "__main__":
    main()
