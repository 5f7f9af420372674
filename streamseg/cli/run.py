"""`streamseg run` (video files, URLs, cameras → segmented video) and `streamseg webcam` (live demo).

Options map one-to-one onto the stages' frozen configs; everything else is
in the library (`streamseg.jobs.run_many`, `streamseg.webcam`).
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..checkpoint import check_model
from ..classes import load_label_colors
from ..encode import EncodeConfig, VideoWriter, check_codec, check_writable
from ..jobs import ModelConfig, open_backend, report, run_many, view_hooks
from ..overlay import VIEWS, OverlayConfig
from ..pipeline import PipelineConfig
from ..preprocess import ASPECTS, PreprocessConfig
from ..propagate import AUTO, MAX_INTERVAL, MOTIONS, PropagateConfig
from ..runtime import BACKENDS
from ..source import open_source
from ..threads import plan_threads
from ..webcam import check_display, run_webcam
from .errors import one_line_errors
from .serving import open_view, serve_options

# x264's and x265's presets: a typo would otherwise surface as "Invalid argument" after the model loaded.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def model_options(command: Callable) -> Callable:
    options = [
        click.option("--model", "-m", default="deeplab", show_default=True,
                     help="Preset name (fcn, unet, deeplab; any case) or a .safetensors/.onnx/.engine file."),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     help="Inference backend; auto picks the fastest one available for the model."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--tta", is_flag=True, help="Test-time augmentation: average flips and scales 0.75/1/1.25 "
                                                 "(torch backend, ~6x slower, usually more accurate masks)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def view_options(command: Callable) -> Callable:
    options = [
        click.option("--view", type=click.Choice(VIEWS), default="overlay", show_default=True),
        click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                     help="Weight of the class colours in the overlay view."),
        click.option("--legend/--no-legend", default=True, show_default=True),
        click.option("--info/--no-info", "info_line", default=True, show_default=True,
                     help="Draw the FPS / latency line."),
        click.option("--classes", default=None, help="Comma-separated classes to draw, e.g. road,car (default all)."),
        click.option("--palette", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="Class colours in CamVid's label_colors.txt format ('R G B Name' per line)."),
        click.option("--aspect", type=click.Choice(ASPECTS), default="keep", show_default=True,
                     help="keep: run the model at the frame's aspect ratio (short side at its input size); "
                          "pad: letterbox into the model's input size; stretch: fill the model input."),
        click.option("--codec", default="libx264", show_default=True, help="FFmpeg video encoder."),
        click.option("--crf", type=click.IntRange(0, 51), default=23, show_default=True),
        click.option("--preset", type=click.Choice(X264_PRESETS), default="veryfast", show_default=True,
                     help="x264/x265 speed preset."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class KeyframeInterval(click.ParamType):
    """An integer 1-MAX_INTERVAL, or `auto`."""
    name = "N|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if value == AUTO or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit() and 1 <= int(text) <= MAX_INTERVAL:
            return int(text)
        self.fail(f"{value!r} is not a whole number from 1 to {MAX_INTERVAL}, or auto", param, ctx)


def build_configs(options: dict, batch: int = 1, save_masks: Path | None = None,
                  propagate: PropagateConfig = PropagateConfig()) -> tuple[PipelineConfig, EncodeConfig]:
    classes = tuple(c.strip() for c in options["classes"].split(",") if c.strip()) if options["classes"] else None
    colors = tuple((c.name, c.rgb) for c in load_label_colors(options["palette"])) if options["palette"] else ()
    overlay = OverlayConfig(options["view"], options["alpha"], options["legend"], classes, options["info_line"], colors)
    pipeline = PipelineConfig(PreprocessConfig(options["aspect"]), overlay, batch, save_masks=save_masks,
                              propagate=propagate)
    encode = EncodeConfig(options["codec"], options["crf"], options["preset"], audio=options.get("audio", True),
                          threads=plan_threads().encode)
    return pipeline, encode


@contextmanager
def stop_on_signals() -> Iterator[tuple[threading.Event, list[int]]]:
    """Ctrl-C / SIGTERM set `stop` (the run drains and finalises); a second one aborts at once."""
    stop, received = threading.Event(), []

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def echo(message: str) -> None:
    click.echo(message, err=True)


def setup_logging() -> None:
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    logging.getLogger("libav").setLevel(logging.ERROR)


def exit_code(received: list[int]) -> int:
    """128 + signal number, the shell's convention: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + received[0] if received else 0


@click.command("run")
@click.argument("source")
@model_options
@click.option("--batch", "-b", type=click.IntRange(1), default=1, show_default=True,
              help="Frames per inference call (files only; live sources use 1).")
@click.option("--keyframe-interval", "-k", type=KeyframeInterval(), default="1", show_default=True,
              help="Run the network every N frames and warp its labels by motion to the frames between; "
                   "auto: re-run it when the warped labels stop being trustworthy. 1: every frame.")
@click.option("--motion", type=click.Choice(MOTIONS), default="auto", show_default=True,
              help="Motion for --keyframe-interval: the decoder's motion vectors (mv, H.264 files and streams) "
                   "or optical flow (flow, any source); auto: flow (faster and more accurate on CamSeq01, see README).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Output video (default: NAME_seg.mp4 next to the input), or a folder for several inputs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output video (and --stats-json file).")
@view_options
@click.option("--audio/--no-audio", default=True, show_default=True, help="Copy the input's audio unchanged.")
@click.option("--save-masks", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each frame's class ids as a palettised PNG (000000.png, …; values are class ids, "
                   "viewers show the class colours) into this folder.")
@click.option("--stats-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the timing summary as JSON.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@serve_options
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Spread the clips over a Ray cluster: bare --ray starts a local one, 'auto' joins the one "
                   "`ray start` made, or HOST:PORT. Needs --output-dir.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --ray: folder every worker can reach, for the outputs and manifest.jsonl.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --ray: number of workers (default: one per GPU, else one per CPU of the cluster).")
@click.pass_context
def run_command(ctx: click.Context, source: str, model: str, backend: str, device: str, tta: bool, batch: int,
                keyframe_interval: int | str, motion: str, output: Path | None, overwrite: bool,
                save_masks: Path | None, stats_json: Path | None, progress: bool, serve: bool, host: str, port: int,
                ray_address: str | None, output_dir: Path | None, workers: int | None, **view: object) -> None:
    """Segment a video file, URL, glob ('clips/*.mp4') or camera index (0) into an annotated video."""
    if ray_address is not None or output_dir is not None or workers is not None:
        from .fleet_cmd import run_on_ray  # Ray is an optional extra

        if ray_address is None:
            raise click.UsageError("--output-dir and --workers are for --ray runs; use --output FOLDER without it")
        ctx.exit(run_on_ray(source, ray_address, output_dir, workers, dict(
            view, model=model, backend=backend, device=device, tta=tta, batch=batch, output=output, overwrite=overwrite,
            save_masks=save_masks, stats_json=stats_json, progress=progress, serve=serve,
            propagate=PropagateConfig(keyframe_interval, motion))))
    setup_logging()
    # Signals are caught from the start: Ctrl-C while connecting or loading the model is an
    # interruption (128 + signal, nothing written), not an error or a traceback.
    with stop_on_signals() as (stop, received):
        try:
            with one_line_errors(interrupted=lambda: bool(received)):
                pipeline, encode = build_configs(view, batch, propagate=PropagateConfig(keyframe_interval, motion))
                run_many(source, ModelConfig(model, backend, device, tta), output=output, overwrite=overwrite,
                         pipeline=pipeline, encode=encode, save_masks=save_masks, stats_json=stats_json, stop=stop,
                         progress=progress, log=echo,
                         view=lambda info: open_view(ctx, serve, info, pipeline.overlay, host, port))
        except KeyboardInterrupt:
            click.echo("Error: interrupted twice: stopped without finalising the output", err=True)
    ctx.exit(exit_code(received))


@click.command("webcam")
@click.option("--camera", default=0, type=click.IntRange(0), show_default=True, help="Camera index.")
@model_options
@click.option("--show/--no-show", default=None, help="Open a window (q or Esc quits); default: on unless --serve.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also record the segmented video here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing recording.")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after this many frames.")
@view_options
@serve_options
@click.pass_context
def webcam_command(ctx: click.Context, camera: int, model: str, backend: str, device: str, tta: bool,
                   show: bool | None,
                   output: Path | None, overwrite: bool, max_frames: int | None, serve: bool, host: str, port: int,
                   **view: object) -> None:
    """Live demo: camera in, segmented video out in a window, a browser (--serve) and/or a file."""
    setup_logging()
    show = not serve if show is None else show
    with one_line_errors():
        if not show and not serve and output is None:
            raise click.UsageError("nothing to do: pass --show, --serve and/or --output")
        model = check_model(model)  # a typo is the error, not a missing display or an existing recording
        pipeline, encode = build_configs(view)
        if show:
            check_display()
        if output is not None:
            check_codec(encode.codec)
            check_writable(output, overwrite)
        source = open_source(str(camera))
        try:
            chosen = open_backend(ModelConfig(model, backend, device, tta), 1, echo)
            browser = open_view(ctx, serve, chosen.info, pipeline.overlay, host, port)
            writer = VideoWriter(output, encode, rate=source.info.rate) if output is not None else None
            with stop_on_signals() as (stop, received):
                stats = run_webcam(source, chosen, pipeline, display=show, writer=writer, stop=stop,
                                   max_frames=max_frames, **view_hooks(browser))
        finally:
            source.close()
        report(stats, output or Path("(browser)" if serve else "(window)"), bool(received), echo)
    ctx.exit(exit_code(received))
