"""UNet (Ronneberger, Fischer & Brox, MICCAI 2015), slim by default.

The classic encoder (double 3x3 conv + max-pool per level, dropout at the
end of the contracting path as in the paper) or a torchvision backbone, and one
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


class BackboneEncoder(nn.Module):
    """A torchvision backbone (ResNet, MobileNetV3) as UNet encoder, features at strides 2..32.

    There is no stride-1 level: a full-resolution double conv over the raw
    RGB skip would cost more than the whole MobileNetV3 (measured, ORT at
    360x480: 7.6 vs 12.2 fps) for detail the stride-2 features already hold.
    The decoder ends at stride 2 and the logits are upsampled, as smp's and
    DeepLabv3+'s decoders do.
    """

    def __init__(self, name: str, pretrained: bool, dropout: float) -> None:
        super().__init__()
        self.backbone = Backbone(name, pretrained=pretrained)
        self.keys = ("s2", "s4", "s8", "s16", "out")
        self.channels = [self.backbone.channels[k] for k in self.keys]
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone(x)
        return [features[k] for k in self.keys[:-1]] + [self.dropout(features["out"])]


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
        logits = self.classifier(self.decoder(self.encoder(x)))
        if logits.shape[-2:] != x.shape[-2:]:  # a backbone encoder's decoder ends at stride 2
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def unet(num_classes: int = 11, *, base_channels: int = 8, depth: int = 4, encoder: str = "classic",
         pretrained_backbone: bool = False, dropout: float = 0.2) -> UNet:
    """`encoder="classic"` is the paper's (`base_channels`, `depth` set its size);
    any name in BACKBONES (`"mobilenet_v3_large"`, `"resnet18"`, ...) swaps in that
    torchvision network as the encoder (ImageNet weights with `pretrained_backbone`);
    `depth` is then fixed (strides 2..32) and the decoder has `16, 8, 4, 2 x base_channels`
    channels, coarse to fine."""
    if base_channels < 1:
        raise ValueError(f"UNet needs base_channels >= 1, got {base_channels}")
    if encoder != "classic" and encoder not in BACKBONES:
        raise ValueError(f"unknown UNet encoder {encoder!r}; choose from classic, {', '.join(BACKBONES)}")
    if encoder == "classic":
        if pretrained_backbone:
            raise ValueError("the classic UNet encoder has no pretrained weights; use encoder='resnet18'")
        if not 1 <= depth <= 6:
            raise ValueError(f"UNet needs depth 1..6, got {depth}")
        enc: nn.Module = UNetEncoder(base_channels, depth, dropout)
        decoder_channels = enc.channels[:-1][::-1]
    else:
        enc = BackboneEncoder(encoder, pretrained_backbone, dropout)
        decoder_channels = [base_channels * 2 ** i for i in range(4, 0, -1)]
    return UNet(enc, num_classes, decoder_channels=decoder_channels)
