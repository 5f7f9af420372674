"""The model zoo as data: each model's family, backbone, size, cost and shipped weights.

Above `models` and `checkpoint` (it reads both); used by `streamseg models`
and by the training report.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import shipped_weights
from .models import FAMILIES, build_model, default_options, resolve


def describe(name: str, height: int = 360, width: int = 480) -> dict[str, Any]:
    """Parameters and GFLOPs (multiply-add = 2 FLOPs) of a model at H x W."""
    arch, options = resolve(name)
    options = {**default_options(arch), **options}  # the builder's defaults fill what a preset leaves out
    # On the meta device nothing is allocated or computed, yet shapes flow and
    # every op is counted: the table is instant even for ResNet-50 DeepLabs.
    with torch.device("meta"):
        model = build_model(name).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, height, width))
    return {"name": name, "arch": arch, "family": FAMILIES[arch],
            "backbone": options.get("backbone", options.get("encoder", "")),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflops": counter.get_total_flops() / 1e9,
            "weights": shipped_weights(name) is not None}
