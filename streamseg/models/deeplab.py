"""DeepLab v2 / v3 / v3+ (Chen et al., TPAMI 2017; arXiv 1706.05587; ECCV 2018).

- v2: ASPP-L — one 3x3 atrous classifier per rate, summed (rates 6/12/18/24).
- v3: ASPP (1x1, three atrous 3x3, image pooling) → 3x3 conv → classifier.
- v3+: v3's ASPP plus a decoder that fuses stride-4 low-level features.
The backbone is dilated to output stride 16 (rates 6/12/18) or 8 (12/24/36).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone

RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
V2_RATES = {8: (6, 12, 18, 24), 16: (3, 6, 9, 12)}  # the paper's OS8 rates, halved at OS16


def _dilated_backbone(name: str, output_stride: int, pretrained: bool) -> Backbone:
    """DeepLab's atrous backbone; only output strides 8 and 16 have ASPP rates."""
    if output_stride not in RATES:
        raise ValueError(f"DeepLab output_stride must be one of {', '.join(map(str, RATES))}, got {output_stride}")
    return Backbone(name, output_stride=output_stride, pretrained=pretrained)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1,
                  separable: bool = False) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    if separable and kernel > 1:  # depthwise + pointwise, as v3+ uses in ASPP and decoder
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel, padding=padding, dilation=dilation,
                      groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            *_conv_bn_relu(in_channels, out_channels))
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation,
                                   bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ImagePooling(nn.Module):
    """ASPP's global-context branch. No batch norm here: a 1x1 map has one value
    per channel, which breaks batch-norm training at batch size 1."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(x.mean(dim=(2, 3), keepdim=True))
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...], *,
                 separable: bool, dropout: float) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, out_channels)]
            + [_conv_bn_relu(in_channels, out_channels, 3, r, separable) for r in rates]
            + [ImagePooling(in_channels, out_channels)])
        self.project = nn.Sequential(*_conv_bn_relu(out_channels * len(self.branches), out_channels),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class ASPPSum(nn.Module):
    """DeepLabV2's ASPP-L: per-rate 3x3 atrous classifiers whose scores are summed."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r) for r in rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        return sum(branch(x) for branch in self.branches)  # type: ignore[return-value]


class DeepLab(nn.Module):
    """`(N, 3, H, W)` → `(N, num_classes, H, W)` logits. `decoder` only for v3+."""

    def __init__(self, backbone: Backbone, head: nn.Module, classifier: nn.Module,
                 decoder: nn.ModuleDict | None = None) -> None:
        super().__init__()
        self.backbone, self.head, self.classifier, self.decoder = backbone, head, classifier, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        y = self.head(features["out"])
        if self.decoder is not None:
            low = self.decoder["reduce"](features["s4"])
            y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
            y = self.decoder["fuse"](torch.cat([y, low], dim=1))
        return F.interpolate(self.classifier(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplabv2(num_classes: int = 11, *, backbone: str = "resnet50", output_stride: int = 8,
              pretrained_backbone: bool = False, dropout: float = 0.5) -> DeepLab:
    body = _dilated_backbone(backbone, output_stride, pretrained_backbone)
    return DeepLab(body, ASPPSum(body.channels["out"], num_classes, V2_RATES[output_stride], dropout), nn.Identity())


def deeplabv3(num_classes: int = 11, *, backbone: str = "resnet50", output_stride: int = 16,
              aspp_channels: int = 256, separable: bool = False, pretrained_backbone: bool = False,
              dropout: float = 0.5) -> DeepLab:
    body = _dilated_backbone(backbone, output_stride, pretrained_backbone)
    head = nn.Sequential(ASPP(body.channels["out"], aspp_channels, RATES[output_stride],
                              separable=separable, dropout=dropout),
                         _conv_bn_relu(aspp_channels, aspp_channels, 3, separable=separable))
    return DeepLab(body, head, nn.Conv2d(aspp_channels, num_classes, 1))


def deeplabv3plus(num_classes: int = 11, *, backbone: str = "mobilenet_v3_large", output_stride: int = 16,
                  aspp_channels: int = 128, low_level_channels: int = 32, separable: bool = True,
                  pretrained_backbone: bool = False, dropout: float = 0.1) -> DeepLab:
    body = _dilated_backbone(backbone, output_stride, pretrained_backbone)
    head = ASPP(body.channels["out"], aspp_channels, RATES[output_stride], separable=separable, dropout=dropout)
    decoder = nn.ModuleDict({
        "reduce": _conv_bn_relu(body.channels["s4"], low_level_channels),
        "fuse": nn.Sequential(
            _conv_bn_relu(aspp_channels + low_level_channels, aspp_channels, 3, separable=separable),
            _conv_bn_relu(aspp_channels, aspp_channels, 3, separable=separable)),
    })
    return DeepLab(body, head, nn.Conv2d(aspp_channels, num_classes, 1), decoder)
