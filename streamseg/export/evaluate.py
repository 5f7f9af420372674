"""Val mIoU of any backend on a CamVid folder: the accuracy side of an export's report."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..backends.base import Backend
from ..data import CamVid, DataError, EvalTransform
from ..evaluate import to_input_size
from ..metrics import ConfusionMatrix, metrics_from_confusion
from ..preprocess import keep_size
from .errors import ExportError


def evaluate_miou(backend: Backend, data: str | Path) -> float:
    """The val split's mIoU (the one definition, `streamseg.metrics`) of the masks `streamseg run`
    would write: each frame run at the model's input size (or the backend's only one), its labels
    resized back with nearest neighbour and scored against the full-resolution ground truth."""
    info = backend.info
    try:
        dataset = CamVid(data, "val", EvalTransform(info.mean, info.std))
    except DataError as error:
        raise ExportError(f"--data: {error}") from None
    confusion = ConfusionMatrix(info.num_classes, dataset.ignore_index)
    for image, truth in dataset:  # one frame at a time: a split's frames may differ in size
        frame = tuple(image.shape[-2:])
        image = to_input_size(image[None], backend.fixed_size or keep_size(frame, info.input_size))
        labels = torch.from_numpy(backend.predict(image.numpy()))[:, None].float()
        confusion.update(truth[None], F.interpolate(labels, size=frame, mode="nearest")[:, 0].long())
    return metrics_from_confusion(confusion.matrix.numpy(), info.classes)["mIoU"]
