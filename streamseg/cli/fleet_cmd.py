"""`streamseg run SOURCE --output-dir DIR --ray [ADDRESS]`: the same run, spread over a Ray cluster.

Parsing and reporting only; the work is `streamseg.fleet.run_fleet`. Ray is
an optional extra, imported only when `--ray` is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..jobs import ModelConfig
from .errors import one_line_errors
from .run import build_configs, echo, setup_logging, stop_on_signals

if TYPE_CHECKING:
    from ..fleet import FleetReport

LOCAL = "local"  # what a bare `--ray` means: start a cluster on this machine


def check_address(address: str) -> str | None:
    """`--ray` → None (a local cluster); `auto`, HOST:PORT or ray://HOST:PORT as they are."""
    if address == LOCAL:
        return None
    if address == "auto" or ":" in address:
        return address
    raise click.UsageError(f"--ray takes auto, HOST:PORT or ray://HOST:PORT, or no value for a local cluster; "
                           f"got {address!r} (put a bare --ray after SOURCE)")


def refuse_single_run_options(options: dict) -> None:
    for name in ("output", "save_masks", "stats_json", "serve"):
        if options.pop(name):
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} is not used with --ray: outputs go to --output-dir and every clip's "
                                   "frames, speed and class shares to its manifest.jsonl")


def run_on_ray(source: str, address: str, output_dir: Path | None, workers: int | None, options: dict) -> int:
    """Run the fleet and return the exit status: 0 all done, 1 some clip failed or was left, 130/143 stopped."""
    if output_dir is None:
        raise click.UsageError("--ray needs --output-dir: the folder, reachable by every worker, for the "
                               "segmented videos and manifest.jsonl")
    refuse_single_run_options(options)
    cluster = check_address(address)
    try:
        from ..fleet import FleetConfig, FleetError, WorkerConfig, run_fleet
    except ImportError as error:
        if error.name != "ray":
            raise
        raise click.ClickException("--ray needs Ray: pip install 'streamseg[ray]'") from None
    setup_logging()
    report = None
    with stop_on_signals() as (stop, received):
        try:
            with one_line_errors(interrupted=lambda: bool(received)):
                pipeline, encode = build_configs(options, options["batch"], propagate=options["propagate"])
                model = ModelConfig(options["model"], options["backend"], options["device"], options["tta"])
                config = FleetConfig(WorkerConfig(model, pipeline, encode), workers=workers,
                                     overwrite=options["overwrite"])
                try:
                    report = run_fleet(source, output_dir, config, address=cluster, stop=stop,
                                       progress=options["progress"])
                except FleetError as error:
                    raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            echo("Error: interrupted twice: workers stopped; unfinished clips are redone next run")
            return 128 + received[0]
    if report is None:  # a signal while connecting or loading: one_line_errors said so
        return 128 + received[0]
    return finish(report, received)


def finish(report: FleetReport, received: list[int]) -> int:
    echo(f"{len(report.done)} done, {len(report.failed)} failed, {len(report.skipped)} already done, "
         f"{len(report.left)} not finished; manifest: {report.manifest}")
    if received:
        echo("interrupted: finished clips kept; run the same command again to do the rest")
        return 128 + received[0]
    if report.failed:
        echo(f"Error: {len(report.failed)} clip(s) failed (their errors are in the manifest)")
    return 0 if report.ok else 1
