"""`streamseg models`: the model zoo as a table."""
from __future__ import annotations

from typing import Any

import click

from ..checkpoint import shipped_weights


def describe(name: str, height: int = 360, width: int = 480) -> dict[str, Any]:
    """Parameters and GFLOPs (multiply-add = 2 FLOPs) of a model at H x W."""
    import torch  # here, not at the top: `streamseg run` on ONNX needs no torch (cli/__init__ imports us)
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import FAMILIES, build_model, default_options, resolve

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


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also list every architecture, not just the shipped presets.")
def models(show_all: bool) -> None:
    """List models: family, backbone, parameters, GFLOPs at 360x480, shipped weights."""
    from ..models import PRESETS, list_models

    names = list_models() if show_all else list(PRESETS)
    click.echo(f"{'name':<14} {'arch':<14} {'family':<8} {'backbone':<19} {'params':>8} {'GFLOPs':>7}  weights")
    for name in names:
        row = describe(name)
        click.echo(f"{row['name']:<14} {row['arch']:<14} {row['family']:<8} {row['backbone']:<19} "
                   f"{row['params_m']:>7.2f}M {row['gflops']:>7.2f}  {'yes' if row['weights'] else 'no'}")
