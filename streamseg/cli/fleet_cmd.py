"""`streamseg run SOURCE --output-dir DIR --ray [ADDRESS]`: the same run, spread over a Ray cluster.

Parsing and reporting only; the work is `streamseg.fleet.run_fleet`. Ray is
an optional extra, imported only when `--ray` is given.
"""
from __future__ import annotations

from pathlib import Path

import click

from .run import EXPECTED, build_configs, check_codec, one_line, setup_logging, stop_on_signals

LOCAL = "local"  # what a bare `--ray` means: start a cluster on this machine


def check_address(address: str) -> str | None:
    """`--ray` → None (a local cluster); `auto`, HOST:PORT or ray://HOST:PORT as they are."""
    if address == LOCAL:
        return None
    if address == "auto" or ":" in address:
        return address
    raise click.UsageError(f"--ray takes auto, HOST:PORT or ray://HOST:PORT, or no value for a local cluster; "
                           f"got {address!r} (put a bare --ray after SOURCE)")


def refuse_single_run_options(output: Path | None, save_masks: Path | None, stats_json: Path | None) -> None:
    for name, value in (("--output", output), ("--save-masks", save_masks), ("--stats-json", stats_json)):
        if value is not None:
            raise click.UsageError(f"{name} is not used with --ray: outputs go to --output-dir and every clip's "
                                   "frames, speed and class shares to its manifest.jsonl")


def run_on_ray(source: str, address: str | None, output_dir: Path | None, workers: int | None, options: dict) -> int:
    """Run the fleet and return the exit status: 0 all done, 1 some clip failed or was left, 130/143 stopped."""
    if output_dir is None:
        raise click.UsageError("--ray needs --output-dir: the folder, reachable by every worker, for the "
                               "segmented videos and manifest.jsonl")
    refuse_single_run_options(options.pop("output"), options.pop("save_masks"), options.pop("stats_json"))
    address = check_address(address)
    try:
        from ..fleet import FleetConfig, FleetError, WorkerConfig, run_fleet
    except ImportError as error:
        if error.name != "ray":
            raise
        raise click.ClickException("--ray needs Ray: pip install 'streamseg[ray]'") from None
    setup_logging()
    pipeline, encode = build_configs(options, options["batch"])
    worker = WorkerConfig(options["model"], options["backend"], options["device"], options["batch"], pipeline, encode)
    config = FleetConfig(worker, workers=workers, overwrite=options["overwrite"])
    with stop_on_signals() as (stop, received):
        try:
            check_codec(encode.codec)
            report = run_fleet(source, output_dir, config, address=address, stop=stop,
                               progress=options["progress"])
        except (*EXPECTED, FleetError) as error:
            raise click.ClickException(one_line(error)) from None
        except KeyboardInterrupt:
            click.echo("Error: interrupted twice: workers stopped; unfinished clips are redone next run", err=True)
            return 128 + received[0]
    click.echo(f"{len(report.done)} done, {len(report.failed)} failed, {len(report.skipped)} already done, "
               f"{len(report.left)} not finished; manifest: {report.manifest}", err=True)
    if received:
        click.echo("interrupted: finished clips kept; run the same command again to do the rest", err=True)
        return 128 + received[0]
    if report.failed:
        click.echo(f"Error: {len(report.failed)} clip(s) failed (their errors are in the manifest)", err=True)
    return 0 if report.ok else 1
