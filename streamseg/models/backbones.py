"""Feature-extracting backbones shared by the three families.

A backbone maps `(N, 3, H, W)` to a dict of feature maps keyed by stride:
`s2`, `s4`, `s8`, `s16` and `out` (the deepest map, at stride 32, or 16/8 when
dilated). We reuse torchvision's classification networks and
`IntermediateLayerGetter`, as torchvision's own segmentation models do.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models._utils import IntermediateLayerGetter


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were asked for but cannot be fetched (e.g. offline)."""


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[..., nn.Module]
    weights: str                        # torchvision weights enum name
    body: Callable[[nn.Module], nn.Module]
    return_layers: dict[str, str]       # layer name in body → stride key
    channels: dict[str, int]            # stride key → channels
    dilatable: dict[int, dict[str, int]]  # output stride → {layer: dilation rate}


def _resnet(build: Callable[..., nn.Module], weights: str, expansion: int) -> BackboneSpec:
    return BackboneSpec(
        build=build, weights=weights, body=lambda m: m,
        return_layers={"relu": "s2", "layer1": "s4", "layer2": "s8", "layer3": "s16", "layer4": "out"},
        channels={"s2": 64, "s4": 64 * expansion, "s8": 128 * expansion,
                  "s16": 256 * expansion, "out": 512 * expansion},
        dilatable={16: {"layer4": 2}, 8: {"layer3": 2, "layer4": 4}},
    )


def _mobilenet_v3_large(**kw) -> nn.Module:
    # torchvision uses BN momentum 0.01 (tuned for long ImageNet runs); trained from
    # scratch for a few hundred steps, running stats lag the weights and eval-mode
    # accuracy collapses. 0.1 is PyTorch's default and tracks them. Not in state_dict.
    return tvm.mobilenet_v3_large(norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.1), **kw)


def _vgg16_bn(**kw) -> nn.Module:
    return tvm.vgg16_bn(**kw)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": _resnet(tvm.resnet18, "ResNet18_Weights", 1),
    "resnet34": _resnet(tvm.resnet34, "ResNet34_Weights", 1),
    "resnet50": _resnet(tvm.resnet50, "ResNet50_Weights", 4),
    "resnet101": _resnet(tvm.resnet101, "ResNet101_Weights", 4),
    # Stage ends (before each stride-2 block) of torchvision's MobileNetV3-Large.
    "mobilenet_v3_large": BackboneSpec(
        build=_mobilenet_v3_large, weights="MobileNet_V3_Large_Weights",
        body=lambda m: m.features,
        return_layers={"1": "s2", "3": "s4", "6": "s8", "12": "s16", "16": "out"},
        channels={"s2": 16, "s4": 24, "s8": 40, "s16": 112, "out": 960},
        dilatable={16: {str(i): 2 for i in range(13, 17)},
                   8: {**{str(i): 2 for i in range(7, 13)}, **{str(i): 4 for i in range(13, 17)}}},
    ),
    # VGG16 (with batch norm, which from-scratch training needs): pool2..pool5.
    "vgg16": BackboneSpec(
        build=_vgg16_bn, weights="VGG16_BN_Weights", body=lambda m: m.features,
        return_layers={"6": "s2", "13": "s4", "23": "s8", "33": "s16", "43": "out"},
        channels={"s2": 64, "s4": 128, "s8": 256, "s16": 512, "out": 512},
        dilatable={},
    ),
}


def _load_pretrained(spec: BackboneSpec, name: str) -> nn.Module:
    weights = getattr(tvm, spec.weights).IMAGENET1K_V1
    try:
        return spec.build(weights=weights)
    except Exception as error:  # noqa: BLE001 — urllib/SSL/OS/hash errors vary by platform
        reason = " ".join(str(error).split())  # one line, whatever the platform's message looks like
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise PretrainedWeightsError(
            f"cannot load ImageNet weights for {name} ({type(error).__name__}: {reason}); "
            f"connect to the internet once or copy {weights.url.rsplit('/', 1)[-1]} into {cache}, "
            "or train without --pretrained-backbone") from None


def _dilate(module: nn.Module, dilation: int) -> None:
    """Turn a stage's stride-2 convs/pools into stride 1 and dilate its 3x3+ convs.

    This is DeepLab's "atrous" trick: the deeper layers keep their receptive
    field while the feature map stays at a higher resolution.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1):
                layer.stride = (1, 1)
            if layer.kernel_size[0] > 1:
                pad = dilation * (layer.kernel_size[0] - 1) // 2
                layer.dilation, layer.padding = (dilation, dilation), (pad, pad)


class Backbone(nn.Module):
    """`(N, 3, H, W)` → `{"s2", "s4", "s8", "s16", "out"}` feature maps."""

    def __init__(self, name: str, *, output_stride: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
        spec = BACKBONES[name]
        if output_stride != 32 and output_stride not in spec.dilatable:
            raise ValueError(f"backbone {name} supports output stride 32"
                             + "".join(f", {s}" for s in spec.dilatable) + f", not {output_stride}")
        network = _load_pretrained(spec, name) if pretrained else spec.build()
        body = spec.body(network)
        for layer_name, rate in spec.dilatable.get(output_stride, {}).items():
            _dilate(getattr(body, layer_name), rate)
        self.body = IntermediateLayerGetter(body, return_layers=spec.return_layers)
        self.channels = dict(spec.channels)
        self.name, self.output_stride = name, output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.body(x))
