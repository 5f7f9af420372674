"""The model zoo as data: each model's family, backbone, size, cost and shipped weights.

Above `models` and `checkpoint` (it reads both); used by `streamseg models`
and by the training report.

`TABLE` holds the counts `describe` computes, precomputed: computing them
imports torch and builds every model (~10 s on a loaded CPU), and `streamseg
models` should answer at once. tests/test_cli_models.py checks every row
against `describe`, so a changed model fails the suite until the row is
updated (the test prints the new row).
"""
from __future__ import annotations

from typing import Any

from .checkpoint import shipped_weights

# name, arch, family, backbone, parameters, FLOPs at 360x480 (multiply-add = 2)
# in `streamseg.models.list_models()` order: the presets first.
TABLE: tuple[tuple[str, str, str, str, int, int], ...] = (
    ("fcn", "fcn8s", "FCN", "mobilenet_v3_large", 5254873, 2326643040),
    ("unet", "unet", "UNet", "mobilenet_v3_large", 4532907, 5688987360),
    ("deeplab", "deeplabv3plus", "DeepLab", "mobilenet_v3_large", 3744155, 4187437920),
    ("fcn32s", "fcn32s", "FCN", "resnet18", 12425547, 13192304640),
    ("fcn16s", "fcn16s", "FCN", "resnet18", 12428374, 13196190720),
    ("fcn8s", "fcn8s", "FCN", "resnet18", 12429793, 13203793920),
    ("deeplabv2", "deeplabv2", "DeepLab", "resnet50", 24319084, 135779328000),
    ("deeplabv3", "deeplabv3", "DeepLab", "resnet50", 39636043, 64935586816),
    ("deeplabv3plus", "deeplabv3plus", "DeepLab", "mobilenet_v3_large", 3744155, 4187437920),
)
PRESET_COUNT = 3  # the first rows: `streamseg.models.PRESETS`, checked by the test


def _row(name: str, arch: str, family: str, backbone: str, params: int, flops: int) -> dict[str, Any]:
    return {"name": name, "arch": arch, "family": family, "backbone": backbone, "params_m": params / 1e6,
            "gflops": flops / 1e9, "weights": shipped_weights(name) is not None}


def table(show_all: bool = False) -> list[dict[str, Any]]:
    """`describe` of the presets (or of every model), from `TABLE`: no torch, no model built."""
    return [_row(*row) for row in (TABLE if show_all else TABLE[:PRESET_COUNT])]


def describe(name: str, height: int = 360, width: int = 480) -> dict[str, Any]:
    """Parameters and GFLOPs (multiply-add = 2 FLOPs) of a model at H x W, counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .models import FAMILIES, build_model, default_options, resolve

    arch, options = resolve(name)
    options = {**default_options(arch), **options}  # the builder's defaults fill what a preset leaves out
    # On the meta device nothing is allocated or computed, yet shapes flow and
    # every op is counted: no memory is needed even for ResNet-50 DeepLabs.
    with torch.device("meta"):
        model = build_model(name).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, height, width))
    return {"name": name, "arch": arch, "family": FAMILIES[arch],
            "backbone": options.get("backbone", options.get("encoder", "")),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflops": counter.get_total_flops() / 1e9,
            "weights": shipped_weights(name) is not None}
