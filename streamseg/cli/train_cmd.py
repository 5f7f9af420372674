"""`streamseg train ...`: runs `python -m train ...` with every argument passed through.

Training is the repository's `train/` package, not part of the installed
library (which never imports it): the command starts it as a subprocess with
the repository root on PYTHONPATH, from the current folder, so relative
`--data`/`--out` paths mean what they mean to `python -m train`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

# The repository root holds streamseg/ and train/ side by side (an editable install or a clone).
REPOSITORY = Path(__file__).resolve().parents[2]


def train_environment(root: Path) -> dict[str, str]:
    """This environment with `root` first on PYTHONPATH, so `-m train` finds the repository's package."""
    paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@click.command("train", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_command(args: tuple[str, ...]) -> None:
    """Train a model on CamVid (same as `python -m train`; see `streamseg train --help`)."""
    if not (REPOSITORY / "train" / "__main__.py").is_file():
        raise click.ClickException("streamseg train runs the repository's train/ package, which this install "
                                   "lacks: clone the streamseg repository and run `python -m train` in it")
    child = subprocess.Popen([sys.executable, "-m", "train", *args], env=train_environment(REPOSITORY))
    try:
        code = child.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: let it save its resume hint and exit
        code = child.wait()
    sys.exit(128 - code if code < 0 else code)  # killed by signal N: the shell's 128 + N
