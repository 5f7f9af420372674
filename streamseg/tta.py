"""Test-time augmentation: class probabilities averaged over horizontal flips and input scales.

The usual CamVid/Cityscapes evaluation trick (DeepLab, PSPNet): each view costs one
more network pass, so quality is bought with speed (`streamseg eval --tta`,
`streamseg run --tta`). Probabilities, not logits, are averaged so that no single
view's confident scale dominates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import to_multiple  # scaled inputs keep a size every model divides evenly

SCALES = (0.75, 1.0, 1.25)


class FlipScaleTTA(nn.Module):
    """Wraps a segmentation model: `(N, 3, H, W)` → `(N, C, H, W)` mean class probabilities."""

    def __init__(self, model: nn.Module, *, scales: tuple[float, ...] = SCALES, flip: bool = True) -> None:
        super().__init__()
        self.model, self.scales, self.flip = model, scales, flip

    def views(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        total = None
        for scale in self.scales:
            size = (height, width) if scale == 1 else (to_multiple(height * scale), to_multiple(width * scale))
            scaled = image if size == (height, width) else F.interpolate(image, size=size, mode="bilinear",
                                                                         align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                logits = self.model(scaled.flip(-1) if flipped else scaled)
                logits = logits.flip(-1) if flipped else logits
                if logits.shape[-2:] != (height, width):
                    logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
                probabilities = logits.float().softmax(1)
                total = probabilities if total is None else total + probabilities
        return total / self.views()

