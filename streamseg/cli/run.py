"""`streamseg run` (video files, URLs, cameras → segmented video) and `streamseg webcam` (live demo).

Options map one-to-one onto the stages' frozen configs; everything else is
in the library (`streamseg.pipeline`, `streamseg.webcam`).
"""
from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import av
import click

from ..backends import BACKENDS, Backend, BackendError, load_backend
from ..checkpoint import CheckpointError
from ..classes import load_label_colors
from ..encode import EncodeConfig, EncodeError, VideoWriter, check_codec, check_writable
from ..overlay import VIEWS, OverlayConfig
from ..pipeline import PipelineConfig, run
from ..preprocess import ASPECTS, PreprocessConfig
from ..source import SourceError, VideoSource, expand_sources, open_source
from ..stats import RunStats, format_summary
from ..webcam import DisplayError, check_display, run_webcam
from .serving import open_view, serve_options, served_source, view_hooks

# x264's and x265's presets: a typo would otherwise surface as "Invalid argument" after the model loaded.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
EXPECTED = (SourceError, EncodeError, BackendError, CheckpointError, DisplayError, ValueError, OSError, av.FFmpegError)


@dataclass(frozen=True)
class ModelConfig:
    model: str = "deeplab"
    backend: str = "auto"
    device: str = "auto"


def model_options(command: Callable) -> Callable:
    options = [
        click.option("--model", "-m", default="deeplab", show_default=True,
                     help="Preset name (fcn, unet, deeplab) or a .safetensors/.onnx/.engine file."),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     help="Inference backend; auto picks the fastest one available for the model."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
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
        click.option("--aspect", type=click.Choice(ASPECTS), default="pad", show_default=True,
                     help="pad: keep the frame's aspect ratio (letterbox); stretch: fill the model input."),
        click.option("--codec", default="libx264", show_default=True, help="FFmpeg video encoder."),
        click.option("--crf", type=click.IntRange(0, 51), default=23, show_default=True),
        click.option("--preset", type=click.Choice(X264_PRESETS), default="veryfast", show_default=True,
                     help="x264/x265 speed preset."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_configs(options: dict, batch: int = 1, save_masks: Path | None = None) -> tuple[PipelineConfig, EncodeConfig]:
    classes = tuple(c.strip() for c in options["classes"].split(",") if c.strip()) if options["classes"] else None
    colors = tuple((c.name, c.rgb) for c in load_label_colors(options["palette"])) if options["palette"] else ()
    overlay = OverlayConfig(options["view"], options["alpha"], options["legend"], classes, options["info_line"], colors)
    pipeline = PipelineConfig(PreprocessConfig(options["aspect"]), overlay, batch, save_masks=save_masks)
    encode = EncodeConfig(options["codec"], options["crf"], options["preset"], audio=options.get("audio", True))
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


def default_output(spec: str, folder: Path | None) -> Path:
    """`clip.mp4` → `clip_seg.mp4` beside it (or in `folder`); cameras and URLs → the current folder."""
    if spec.isdigit():
        name, parent = f"camera{spec}", Path.cwd()
    elif "://" in spec:
        name, parent = Path(spec.split("://", 1)[1].split("?")[0]).stem or "stream", Path.cwd()
    else:
        name, parent = Path(spec).stem, Path(spec).parent
    return (folder or parent) / f"{name}_seg.mp4"


def plan_outputs(sources: list[str], output: Path | None) -> list[Path]:
    if output is not None and (len(sources) > 1 or output.is_dir()):
        if not output.is_dir():
            raise EncodeError(f"--output {output} must be an existing folder when SOURCE matches several files")
        outputs = [default_output(spec, output) for spec in sources]
    else:
        outputs = [output or default_output(sources[0], None)]
    refuse_inputs_as_outputs(sources, outputs)
    return outputs


def refuse_inputs_as_outputs(sources: list[str], outputs: list[Path]) -> None:
    """`--overwrite` replaces an old result, never the video being read."""
    inputs = {Path(spec).resolve() for spec in sources if "://" not in spec and not spec.isdigit()}
    for path in outputs:
        if path.resolve() in inputs:
            raise EncodeError(f"output {path} is also an input; choose another --output")


def open_backend(config: ModelConfig, batch: int) -> Backend:
    backend, reason = load_backend(config.model, config.backend, config.device, batch=batch)
    click.echo(f"backend: {backend.describe()} ({reason})", err=True)
    return backend


def report(stats: RunStats, output: Path, interrupted: bool) -> dict:
    summary = stats.summary()
    for line in format_summary(summary):
        click.echo(line, err=True)
    state = "interrupted; kept" if interrupted else "wrote"
    click.echo(f"{state} {summary['frames']} frames to {output}", err=True)
    return summary


def setup_logging() -> None:
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    logging.getLogger("libav").setLevel(logging.ERROR)


def run_one(source: VideoSource, spec: str, output: Path, backend: Backend, pipeline: PipelineConfig,
            encode: EncodeConfig, stop: threading.Event, progress: bool, view: object = None) -> dict:
    try:
        writer = VideoWriter(output, encode, rate=source.info.rate,
                             audio_from=spec if source.info.audio and not source.info.live else None)
        source = served_source(view, source)
        stats = run(source, backend, writer, pipeline, stop=stop, progress=progress, **view_hooks(view))
        return report(stats, output, stop.is_set())
    finally:
        source.close()


def mask_folder(root: Path | None, spec: str, several: bool) -> Path | None:
    """Masks of one source go into `root`; of several, into `root/NAME/`."""
    if root is None:
        return None
    folder = root / Path(spec).stem if several else root
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def exit_code(received: list[int]) -> int:
    """128 + signal number, the shell's convention: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + received[0] if received else 0


@click.command("run")
@click.argument("source")
@model_options
@click.option("--batch", "-b", type=click.IntRange(1), default=1, show_default=True,
              help="Frames per inference call (files only; live sources use 1).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Output video (default: NAME_seg.mp4 next to the input), or a folder for several inputs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@view_options
@click.option("--audio/--no-audio", default=True, show_default=True, help="Copy the input's audio unchanged.")
@click.option("--save-masks", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each frame's class ids as a uint8 PNG (000000.png, …) into this folder.")
@click.option("--stats-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the timing summary as JSON.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@serve_options
@click.pass_context
def run_command(ctx: click.Context, source: str, model: str, backend: str, device: str, batch: int,
                output: Path | None, overwrite: bool, save_masks: Path | None, stats_json: Path | None,
                progress: bool, serve: bool, host: str, port: int, **view: object) -> None:
    """Segment a video file, URL, glob ('clips/*.mp4') or camera index (0) into an annotated video."""
    setup_logging()
    # Signals are caught from the start: Ctrl-C while connecting or loading the model is an
    # interruption (128 + signal, nothing written), not an error or a traceback.
    with stop_on_signals() as (stop, received):
        try:
            sources = expand_sources(source)
            outputs = plan_outputs(sources, output)
            pipeline, encode = build_configs(view, batch)
            check_codec(encode.codec)
            for path in outputs:
                check_writable(path, overwrite)
            if stats_json is not None and not stats_json.parent.is_dir():  # found out now, not after the video
                raise EncodeError(f"--stats-json folder {stats_json.parent} does not exist")
            first = open_source(sources[0])  # a bad input fails before the model is loaded
            chosen = open_backend(ModelConfig(model, backend, device), batch)
            browser = open_view(ctx, serve, chosen.info, pipeline.overlay, host, port)
            summaries: dict[str, dict] = {}
            for spec, path in zip(sources, outputs, strict=True):
                opened, first = first or open_source(spec), None
                config = replace(pipeline, save_masks=mask_folder(save_masks, spec, len(sources) > 1))
                summaries[spec] = run_one(opened, spec, path, chosen, config, encode, stop, progress, browser)
                if stop.is_set():
                    break
            if stats_json is not None:
                data = summaries[sources[0]] if len(sources) == 1 else summaries
                stats_json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except EXPECTED as error:
            if not received:
                raise click.ClickException(one_line(error)) from None
            click.echo("interrupted before the first frame: nothing written", err=True)
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
def webcam_command(ctx: click.Context, camera: int, model: str, backend: str, device: str, show: bool | None,
                   output: Path | None, overwrite: bool, max_frames: int | None, serve: bool, host: str, port: int,
                   **view: object) -> None:
    """Live demo: camera in, segmented video out in a window, a browser (--serve) and/or a file."""
    setup_logging()
    show = not serve if show is None else show
    try:
        if not show and not serve and output is None:
            raise click.UsageError("nothing to do: pass --show, --serve and/or --output")
        pipeline, encode = build_configs(view)
        if show:
            check_display()
        if output is not None:
            check_codec(encode.codec)
            check_writable(output, overwrite)
        source = open_source(str(camera))
        try:
            chosen = open_backend(ModelConfig(model, backend, device), 1)
            browser = open_view(ctx, serve, chosen.info, pipeline.overlay, host, port)
            writer = VideoWriter(output, encode, rate=source.info.rate) if output is not None else None
            with stop_on_signals() as (stop, received):
                stats = run_webcam(source, chosen, pipeline, display=show, writer=writer, stop=stop,
                                   max_frames=max_frames, **view_hooks(browser))
        finally:
            source.close()
        report(stats, output or Path("(browser)" if serve else "(window)"), bool(received))
    except EXPECTED as error:
        raise click.ClickException(one_line(error)) from None
    ctx.exit(exit_code(received))


def one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
