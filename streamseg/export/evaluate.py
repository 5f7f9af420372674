"""Val mIoU of any backend on a CamVid folder: the accuracy side of an export's report."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..backends.base import Backend
from .onnx_export import ExportError


def _camvid(data: str | Path, size: tuple[int, int], mean: np.ndarray, std: np.ndarray):
    try:  # the dataset reader lives with training; reuse it rather than parse CamVid twice
        from train.camvid import CamVid, DataError
    except ImportError:
        raise ExportError("--data needs the `train` package from the streamseg repository") from None

    def transform(image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        height, width = size
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        return {"image": ((image.astype(np.float32) - mean) / std), "mask": mask}

    try:
        return CamVid(data, "val", transform)
    except DataError as error:
        raise ExportError(f"--data: {error}") from None


def evaluate_miou(backend: Backend, data: str | Path, *, batch: int = 4) -> float:
    """Mean IoU over the classes present in the val split (void ignored)."""
    info = backend.info
    dataset = _camvid(data, info.input_size, np.asarray(info.mean, np.float32) * 255,
                      np.asarray(info.std, np.float32) * 255)
    classes = info.num_classes
    confusion = np.zeros((classes, classes), dtype=np.int64)
    for start in range(0, len(dataset), batch):
        items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        images = np.stack([image.numpy() for image, _ in items])
        truth = np.stack([mask.numpy() for _, mask in items]).ravel()
        predicted = backend.predict(images).ravel().astype(np.int64)
        valid = truth < classes  # drops void (index 11) and any 255 ignore label
        confusion += np.bincount(truth[valid] * classes + predicted[valid], minlength=classes ** 2).reshape(
            classes, classes)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    present = confusion.sum(1) > 0
    return float((np.diag(confusion)[present] / union[present]).mean())
