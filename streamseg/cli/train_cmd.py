"""`streamseg train ...`: the same command as `python -m train ...`, every argument passed through."""
from __future__ import annotations

import click

from .evaluate import import_train


@click.command("train", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_command(args: tuple[str, ...]) -> None:
    """Train a model on CamVid (see `streamseg train --help`; same as `python -m train`)."""
    import_train("train")  # fail early, in one line, when albumentations/matplotlib are missing
    from train.__main__ import cli
    # standalone_mode keeps click's own handling: usage errors exit 2, ClickException exits 1.
    cli.main(list(args), prog_name="streamseg train", standalone_mode=True)
