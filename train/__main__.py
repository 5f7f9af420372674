"""`python -m train`: train a model on CamVid. Every TrainConfig field is a flag."""
from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import click
from click.core import ParameterSource

from .config import TrainConfig

HELP = {
    "model": "Preset (fcn, unet, deeplab) or architecture name (see `streamseg models --all`).",
    "data": "CamVid root with <split>/ and <split>annot/ folders.",
    "out": "Run directory: checkpoints, history.csv, plots, metrics.json.",
    "train_split": "Training split folder name.", "val_split": "Validation split folder name.",
    "label_format": "Label layout; auto detects colour-coded *_L.png labels.",
    "classes": "camvid11 (grouped) or camvid32 (the raw classes of label_colors.txt, Void ignored; "
               "colour layout only).",
    "epochs": "Number of epochs.", "lr": "Peak learning rate.", "batch_size": "Images per batch (per process).",
    "workers": "DataLoader worker processes.", "optimizer": "Optimiser.", "momentum": "SGD/RMSprop momentum.",
    "nesterov": "Nesterov momentum (SGD).", "weight_decay": "Weight decay.",
    "schedule": "LR schedule after warm-up.", "warmup_epochs": "Linear warm-up epochs.",
    "loss": "ce, wce (median-frequency-weighted CE), dice, or ce+dice; all ignore void.",
    "crop_height": "Training crop height.", "crop_width": "Training crop width.",
    "scale_min": "Smallest random scale.", "scale_max": "Largest random scale.",
    "hflip": "Random horizontal flips.", "vflip": "Random vertical flips.",
    "rotate": "Max random rotation (degrees, 0 = off).", "color_jitter": "Colour jitter strength (0 = off).",
    "dropout": "Override the architecture's dropout probability.",
    "ema": "Exponential moving average of the weights (decay per step, e.g. 0.999), used for validation and "
           "every saved checkpoint; 0 = off.",
    "patience": "Early stopping: epochs without val mIoU gain (0 = off).", "seed": "Random seed.",
    "amp": "Mixed precision on CUDA.", "channels_last": "channels_last memory format.",
    "init": "Start from this streamseg checkpoint (mismatched head layers are re-initialised).",
    "pretrained_backbone": "ImageNet backbone weights from torchvision (needs internet or a cache).",
    "freeze": "Freeze this part's weights at the start (its BatchNorm statistics still adapt).", "unfreeze_after": "Unfreeze after N epochs (0 = never).",
    "resume": "Continue a run (its directory, DIR/last or DIR/last.resume.pt) with its saved settings; "
              "flags given explicitly override them.",
    "threads": "torch CPU threads (0 = default).",
}
CHOICES = {"label_format": ["auto", "index", "color"], "classes": ["camvid11", "camvid32"],
           "optimizer": ["adam", "adamw", "sgd", "rmsprop"], "schedule": ["constant", "poly", "cosine"],
           "loss": ["ce", "wce", "dice", "ce+dice"], "freeze": ["backbone", "encoder"]}
POSITIVE, NATURAL = click.IntRange(min=1), click.IntRange(min=0)
RANGES = {"epochs": POSITIVE, "batch_size": POSITIVE, "crop_height": POSITIVE, "crop_width": POSITIVE,
          "workers": NATURAL, "warmup_epochs": NATURAL, "patience": NATURAL, "unfreeze_after": NATURAL,
          "threads": NATURAL, "lr": click.FloatRange(min=0), "weight_decay": click.FloatRange(min=0),
          "momentum": click.FloatRange(0, 1), "scale_min": click.FloatRange(min=0, min_open=True),
          "scale_max": click.FloatRange(min=0, min_open=True), "rotate": click.FloatRange(0, 180),
          "color_jitter": click.FloatRange(0, 1), "dropout": click.FloatRange(0, 1, max_open=True),
          "ema": click.FloatRange(0, 1, max_open=True)}
# torchvision references' spellings, as users know them.
SHORT = {"batch_size": "-b", "workers": "-j", "weight_decay": "--wd", "warmup_epochs": "--lr-warmup-epochs"}


def _option(field: dataclasses.Field) -> typing.Callable:
    name = field.name.replace("_", "-")
    kind = typing.get_type_hints(TrainConfig)[field.name]
    if kind is bool:
        return click.option(f"--{name}/--no-{name}", default=field.default, show_default=True, help=HELP[field.name])
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    ptype = click.Choice(CHOICES[field.name]) if field.name in CHOICES else RANGES.get(field.name, base)
    flags = [f"--{name}"] + ([SHORT[field.name]] if field.name in SHORT else [])
    return click.option(*flags, field.name, type=ptype, default=field.default, show_default=True,
                        help=HELP[field.name])


def _run(kwargs: dict[str, typing.Any]) -> None:
    """Train a segmentation model on CamVid."""
    ctx = click.get_current_context()
    given = {k for k in kwargs if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    cfg = TrainConfig(**kwargs)
    if not cfg.resume and not Path(cfg.data).is_dir():  # say so before seconds of torch imports
        raise click.ClickException(f"data directory not found: {cfg.data}")
    if cfg.scale_min > cfg.scale_max:
        raise click.UsageError(f"--scale-min {cfg.scale_min} is larger than --scale-max {cfg.scale_max}")
    from streamseg.data import DataError
    from streamseg.models import PretrainedWeightsError

    from .run import train
    from .state import resumed_config
    try:
        cfg = resumed_config(cfg, given) if cfg.resume else cfg
        train(cfg)
    except (DataError, OSError, ValueError, PretrainedWeightsError) as error:  # incl. CheckpointError
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo(f"interrupted; continue with --resume {cfg.out}", err=True)
        sys.exit(130)


def _command() -> click.Command:
    def main(**kwargs: typing.Any) -> None:
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
