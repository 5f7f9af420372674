"""`python -m train`: train a model on CamVid. Every TrainConfig field is a flag, generated from the field."""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .config import TrainConfig, weighted


def click_type(kind: Any, meta: Mapping[str, Any]) -> Any:
    """The click parameter type of a TrainConfig field: its Literal's choices, its range, or its type."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None: the flag takes an X
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return click.Choice(typing.get_args(kind))
    if "range" in meta:
        return (click.IntRange if kind is int else click.FloatRange)(**meta["range"])
    return kind


def _option(field: dataclasses.Field) -> Callable:
    name = field.name.replace("_", "-")
    kind = typing.get_type_hints(TrainConfig)[field.name]
    meta = field.metadata
    if kind is bool:
        return click.option(f"--{name}/--no-{name}", default=field.default, show_default=True, help=meta["help"])
    flags = [f"--{name}"] + ([meta["alias"]] if meta["alias"] else [])
    if typing.get_origin(kind) is tuple:  # tuple[str, ...]: a repeatable flag
        return click.option(*flags, field.name, multiple=True, default=field.default, help=meta["help"])
    return click.option(*flags, field.name, type=click_type(kind, meta), default=field.default, show_default=True,
                        help=meta["help"])


def _run(kwargs: dict[str, Any]) -> None:
    """Train a segmentation model on CamVid."""
    ctx = click.get_current_context()
    given = {k for k in kwargs if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    cfg = TrainConfig(**kwargs)
    if not cfg.resume and not Path(cfg.data).is_dir():  # say so before seconds of torch imports
        from streamseg.classes import missing_data  # numpy only: still before torch
        raise click.ClickException(missing_data(cfg.data))
    if cfg.scale_min > cfg.scale_max:
        raise click.UsageError(f"--scale-min {cfg.scale_min} is larger than --scale-max {cfg.scale_max}")
    from streamseg.data import DataError
    from streamseg.models import PretrainedWeightsError

    from .run import train
    from .state import resumed_config
    try:
        cfg = resumed_config(cfg, given) if cfg.resume else cfg
        if "class_weights" in given and not weighted(cfg.loss):  # else the flag would be silently ignored
            raise click.UsageError(f"--class-weights weights only --loss wce or wce+dice, not {cfg.loss}")
        if "paste_class" in given and cfg.paste == 0:  # likewise
            raise click.UsageError("--paste-class chooses what --paste copies: give --paste P (> 0) too")
        train(cfg)
    except (DataError, OSError, ValueError, PretrainedWeightsError) as error:  # incl. CheckpointError
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo(f"interrupted; continue with --resume {cfg.out}", err=True)
        sys.exit(130)


def _command() -> click.Command:
    def main(**kwargs: Any) -> None:
        """Train a segmentation model on CamVid.

        With --resume, the saved run's settings are reused; flags given explicitly
        (e.g. a larger --epochs) override them.
        """
        _run(kwargs)
    for field in reversed(dataclasses.fields(TrainConfig)):
        main = _option(field)(main)
    return click.command(context_settings={"help_option_names": ["-h", "--help"]})(main)


cli = _command()

if __name__ == "__main__":
    cli(prog_name="python -m train")
