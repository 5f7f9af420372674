"""Val mIoU of any backend on a CamVid folder: the accuracy side of an export's report."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..backends.base import Backend
from ..data import CamVid, DataError, EvalTransform
from ..metrics import ConfusionMatrix, metrics_from_confusion
from .errors import ExportError


def evaluate_miou(backend: Backend, data: str | Path, *, batch: int = 4) -> float:
    """The val split's mIoU (the one definition, `streamseg.metrics`), frames resized to the model's input."""
    info = backend.info
    try:
        dataset = CamVid(data, "val", EvalTransform(info.mean, info.std, tuple(info.input_size)))
    except DataError as error:
        raise ExportError(f"--data: {error}") from None
    confusion = ConfusionMatrix(info.num_classes, dataset.ignore_index)
    for start in range(0, len(dataset), batch):
        items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        images = np.stack([image.numpy() for image, _ in items])
        truth = torch.stack([mask for _, mask in items])
        confusion.update(truth, torch.from_numpy(backend.predict(images)))
    return metrics_from_confusion(confusion.matrix.numpy(), info.classes)["mIoU"]
