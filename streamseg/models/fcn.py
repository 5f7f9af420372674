"""FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer & Darrell, CVPR 2015).

The backbone's deepest map is scored by a small conv head ("fc6/fc7 as
convolutions"); FCN-16s adds a 1x1 score of the stride-16 features, FCN-8s
also of the stride-8 features, each after upsampling the coarser score.
Upsampling is bilinear (fixed, as in the paper's final layer), so the model
accepts any input size.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone

SKIPS = {"fcn32s": (), "fcn16s": ("s16",), "fcn8s": ("s16", "s8")}


class FCNHead(nn.Sequential):
    """fc6/fc7 as a 3x3 + 1x1 conv pair with dropout (the paper's 0.5), then the score layer."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int, dropout: float) -> None:
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(width, num_classes, 1),
        )


class FCN(nn.Module):
    """`(N, 3, H, W)` → `(N, num_classes, H, W)` logits."""

    def __init__(self, backbone: Backbone, num_classes: int, *, skips: tuple[str, ...],
                 head_width: int, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = FCNHead(backbone.channels["out"], num_classes, width=head_width, dropout=dropout)
        self.skips = skips
        self.skip_scores = nn.ModuleDict({k: nn.Conv2d(backbone.channels[k], num_classes, 1) for k in skips})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        score = self.head(features["out"])
        for key in self.skips:  # coarse → fine, as in the paper
            skip = features[key]
            score = F.interpolate(score, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            score = score + self.skip_scores[key](skip)
        return F.interpolate(score, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _variant(variant: str) -> Callable[..., FCN]:
    """One builder per skip variant, with an explicit signature so the options
    (and their defaults) can be listed and checked by `inspect`."""

    def build(num_classes: int = 11, *, backbone: str = "resnet18", pretrained_backbone: bool = False,
              head_width: int = 256, dropout: float = 0.5) -> FCN:
        return FCN(Backbone(backbone, pretrained=pretrained_backbone), num_classes,
                   skips=SKIPS[variant], head_width=head_width, dropout=dropout)

    build.__name__ = build.__qualname__ = variant
    build.__doc__ = f"{variant.upper()}: skips from {', '.join(SKIPS[variant]) or 'none'} on a choice of backbone."
    return build


fcn32s = _variant("fcn32s")
fcn16s = _variant("fcn16s")
fcn8s = _variant("fcn8s")
