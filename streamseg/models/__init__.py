"""The model zoo: plain builder functions in one explicit dict.

Every model maps `(N, 3, H, W) float32` → `(N, num_classes, H, W)` logits at
the input size, for any H and W.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from .backbones import BACKBONES, PretrainedWeightsError
from .deeplab import deeplabv2, deeplabv3, deeplabv3plus
from .fcn import fcn8s, fcn16s, fcn32s
from .unet import unet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "unet": unet,
    "deeplabv2": deeplabv2,
    "deeplabv3": deeplabv3,
    "deeplabv3plus": deeplabv3plus,
}

# The three configurations we train and ship. Chosen to run at >= 10 fps on a
# 2-core CPU at 360x480 and to train from scratch on CPU (see README).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "fcn": ("fcn8s", {"backbone": "mobilenet_v3_large"}),
    "unet": ("unet", {"encoder": "mobilenet_v3_large", "base_channels": 8}),
    "deeplab": ("deeplabv3plus", {"backbone": "mobilenet_v3_large", "output_stride": 16}),
}

FAMILIES = {"fcn32s": "FCN", "fcn16s": "FCN", "fcn8s": "FCN", "unet": "UNet",
            "deeplabv2": "DeepLab", "deeplabv3": "DeepLab", "deeplabv3plus": "DeepLab"}


def list_models() -> list[str]:
    """Preset short names first, then every architecture."""
    return list(PRESETS) + [name for name in MODELS if name not in PRESETS]


def did_you_mean(name: str, choices: list[str]) -> str:
    """`"did you mean 'deeplab'? "` for the closest of `choices` to a mistyped name, or ""."""
    close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def resolve(name: str, **options: Any) -> tuple[str, dict[str, Any]]:
    """A preset or architecture name, in any case → (architecture, options with preset defaults)."""
    key = name.lower()  # `DeepLab`, `FCN8s`: names are identifiers, not file names
    if key in PRESETS:
        arch, defaults = PRESETS[key]
        return arch, {**defaults, **options}
    if key in MODELS:
        return key, dict(options)
    raise ValueError(f"unknown model {name!r}; {did_you_mean(name, list_models())}"
                     f"choose from {', '.join(list_models())}")


def default_options(arch: str) -> dict[str, Any]:
    """The keyword options an architecture's builder takes, with their defaults."""
    parameters = inspect.signature(MODELS[arch]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}


def build_model(name: str, num_classes: int = 11, **options: Any) -> nn.Module:
    """A preset or architecture by name; unknown names and options raise `ValueError`."""
    arch, resolved = resolve(name, **options)
    known = default_options(arch)
    unknown = sorted(set(resolved) - set(known))
    if unknown:
        # Checked up front rather than by catching TypeError, which would also
        # swallow genuine bugs inside a builder.
        raise ValueError(f"{arch} has no option {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(known)}")
    return MODELS[arch](num_classes, **resolved)


__all__ = ["BACKBONES", "FAMILIES", "MODELS", "PRESETS", "PretrainedWeightsError",
           "build_model", "default_options", "did_you_mean", "list_models", "resolve"]
