"""`streamseg models`: the model zoo as a table."""
from __future__ import annotations

import click

from ..zoo import table


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also list every architecture, not just the shipped presets.")
def models(show_all: bool) -> None:
    """List models: family, backbone, parameters, GFLOPs at 360x480, shipped weights."""
    click.echo(f"{'name':<14} {'arch':<14} {'family':<8} {'backbone':<19} {'params':>8} {'GFLOPs':>7}  weights")
    for row in table(show_all):  # precomputed: no torch, no model built
        click.echo(f"{row['name']:<14} {row['arch']:<14} {row['family']:<8} {row['backbone']:<19} "
                   f"{row['params_m']:>7.2f}M {row['gflops']:>7.2f}  {'yes' if row['weights'] else 'no'}")
