"""The `streamseg` command: a thin click layer over the library.

Each sub-command lives in its own module here and only parses options,
builds configs and calls library functions.
"""
from __future__ import annotations

import click

from .evaluate import evaluate
from .export import export
from .models import models
from .run import run_command, webcam_command
from .train_cmd import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="streamseg")
def main() -> None:
    """Semantic segmentation of driving video (CamVid classes)."""


main.add_command(models)
main.add_command(run_command)
main.add_command(webcam_command)
main.add_command(export)
main.add_command(evaluate)
main.add_command(train_command)
