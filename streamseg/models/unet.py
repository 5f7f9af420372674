"""UNet (Ronneberger, Fischer & Brox, MICCAI 2015), slim by default.

The classic encoder (double 3x3 conv + max-pool per level, dropout at the
end of the contracting path as in the paper) or a ResNet encoder, and one
decoder: upsample, concatenate the skip, double conv. Unlike the paper we
pad convolutions ("same"), add batch norm and resize to the skip's size, so
any input size works and the output matches the input.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES, Backbone


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )


class UNetEncoder(nn.Module):
    """`depth` levels; level i has `base * 2**i` channels at stride `2**i`."""

    def __init__(self, base_channels: int, depth: int, dropout: float) -> None:
        super().__init__()
        widths = [base_channels * 2 ** i for i in range(depth + 1)]
        self.levels = nn.ModuleList(
            [DoubleConv(3, widths[0])] + [DoubleConv(a, b) for a, b in itertools.pairwise(widths)])
        self.dropout = nn.Dropout2d(dropout)
        self.channels = widths

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.levels[0](x)]
        for level in self.levels[1:]:
            features.append(level(F.max_pool2d(features[-1], 2)))
        features[-1] = self.dropout(features[-1])
        return features  # fine → coarse


class ResNetEncoder(nn.Module):
    """A torchvision backbone (a ResNet, usually) as UNet encoder; the input itself is the stride-1 "feature"."""

    def __init__(self, name: str, pretrained: bool, dropout: float) -> None:
        super().__init__()
        self.backbone = Backbone(name, pretrained=pretrained)
        self.keys = ("s2", "s4", "s8", "s16", "out")
        self.channels = [3] + [self.backbone.channels[k] for k in self.keys]
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone(x)
        return [x] + [features[k] for k in self.keys[:-1]] + [self.dropout(features["out"])]


class UNetDecoder(nn.Module):
    """Coarse → fine: upsample ×2 (bilinear), concat the skip, double conv."""

    def __init__(self, encoder_channels: list[int], decoder_channels: list[int]) -> None:
        super().__init__()
        skips = encoder_channels[:-1][::-1]
        inputs = [encoder_channels[-1]] + decoder_channels[:-1]
        self.blocks = nn.ModuleList(DoubleConv(i + s, o) for i, s, o in zip(inputs, skips, decoder_channels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, features[:-1][::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class UNet(nn.Module):
    """`(N, 3, H, W)` → `(N, num_classes, H, W)` logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, *, decoder_channels: list[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = UNetDecoder(encoder.channels, decoder_channels)
        self.classifier = nn.Conv2d(decoder_channels[-1], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(self.encoder(x)))


def unet(num_classes: int = 11, *, base_channels: int = 8, depth: int = 4, encoder: str = "classic",
         pretrained_backbone: bool = False, dropout: float = 0.2) -> UNet:
    """`encoder="classic"` is the paper's (`base_channels`, `depth` set its size);
    any name in BACKBONES (`"resnet18"`, `"resnet34"`, ...) swaps in that torchvision
    network as a five-level encoder (ImageNet weights with `pretrained_backbone`);
    `depth` is then fixed at 5 and `base_channels` sets the decoder width (min 16)."""
    if encoder != "classic" and encoder not in BACKBONES:
        raise ValueError(f"unknown UNet encoder {encoder!r}; choose from classic, {', '.join(BACKBONES)}")
    if encoder == "classic":
        if pretrained_backbone:
            raise ValueError("the classic UNet encoder has no pretrained weights; use encoder='resnet18'")
        if not 1 <= depth <= 6 or base_channels < 1:
            raise ValueError(f"UNet needs depth 1..6 and base_channels >= 1, got {depth} and {base_channels}")
        enc: nn.Module = UNetEncoder(base_channels, depth, dropout)
        decoder_channels = enc.channels[:-1][::-1]
    else:
        enc = ResNetEncoder(encoder, pretrained_backbone, dropout)
        decoder_channels = [max(base_channels, 16) * 2 ** i for i in range(4, -1, -1)]
    return UNet(enc, num_classes, decoder_channels=decoder_channels)
