"""Segment videos into files from Python with the CLI's safety: what `streamseg run` does.

    from streamseg.jobs import ModelConfig, run_many
    run_many("clips/*.mp4", ModelConfig("deeplab"), output=Path("segmented/"))

Everything that can fail is checked before the model is loaded: the model
name or file first (so a typo is the error, not an existing output), the
sources open, the outputs are planned (`NAME_seg.mp4` beside each input, or
in one folder) and never one of the inputs, an existing output is only replaced with
`overwrite`, and the codec exists. Each output is written to a temporary file
and renamed when complete (`encode.VideoWriter`).
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .backends import Backend, BackendError
from .checkpoint import atomic_write, check_model
from .encode import EncodeConfig, EncodeError, VideoWriter, check_codec, check_writable
from .pipeline import PipelineConfig, run
from .runtime import load_backend
from .source import VideoSource, expand_sources, open_source
from .stats import RunStats, format_summary

if TYPE_CHECKING:
    from .modelinfo import ModelInfo
    from .serve import ViewServer

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class ModelConfig:
    model: str = "deeplab"
    backend: str = "auto"
    device: str = "auto"
    tta: bool = False  # test-time augmentation (streamseg.tta): torch backend, ~6x the network cost


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


def mask_folder(root: Path | None, spec: str, several: bool) -> Path | None:
    """Masks of one source go into `root`; of several, into `root/NAME/`."""
    if root is None:
        return None
    folder = root / Path(spec).stem if several else root
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_backend(config: ModelConfig, batch: int, log: Log = stderr_log) -> Backend:
    if config.tta:
        return open_tta_backend(config, batch, log)
    backend, reason = load_backend(config.model, config.backend, config.device, batch=batch)
    log(f"backend: {backend.describe()} ({reason})")
    return backend


def open_tta_backend(config: ModelConfig, batch: int, log: Log) -> Backend:
    """The torch backend around `FlipScaleTTA`: the flipped and rescaled views are built in
    PyTorch, at whatever frame size the stream has (exported graphs have one view only)."""
    if config.backend not in ("auto", "torch"):
        raise BackendError(f"--tta runs on the torch backend (it builds flipped and rescaled views in PyTorch); "
                           f"drop --backend {config.backend}")
    from .tta import FlipScaleTTA

    backend, _ = load_backend(config.model, "torch", config.device, batch=batch)
    backend.model = FlipScaleTTA(backend.model).eval()
    log(f"backend: {backend.describe()} with test-time augmentation (flips, scales 0.75/1/1.25: 6 passes a frame)")
    return backend


def report(stats: RunStats, output: Path, interrupted: bool, log: Log = stderr_log) -> dict:
    summary = stats.summary()
    for line in format_summary(summary):
        log(line)
    state = "interrupted; kept" if interrupted else "wrote"
    log(f"{state} {summary['frames']} frames to {output}")
    return summary


def run_one(source: VideoSource, spec: str, output: Path, backend: Backend, pipeline: PipelineConfig,
            encode: EncodeConfig, stop: threading.Event, progress: bool, log: Log = stderr_log,
            view: ViewServer | None = None) -> dict:
    try:
        writer = VideoWriter(output, encode, rate=source.info.rate,
                             audio_from=spec if source.info.audio and not source.info.live else None)
        source = served_source(view, source)
        stats = run(source, backend, writer, pipeline, stop=stop, progress=progress, **view_hooks(view))
        # The backend and precision that ran belong in the stats: an fps means nothing without them.
        return {**report(stats, output, stop.is_set(), log), "backend": backend.describe()}
    finally:
        source.close()


def view_hooks(view: ViewServer | None) -> dict:
    """What `pipeline.run` / `run_webcam` take to draw with the page's controls and feed its stream."""
    return {} if view is None else {"renderer": view.renderer, "on_frame": view.publish}


def served_source(view: ViewServer | None, source: VideoSource) -> VideoSource:
    """With a viewer, a file plays at its own frame rate (live sources already do)."""
    if view is None or source.info.live:
        return source
    from .serve import RealTime
    return RealTime(source)


def check_outputs(outputs: list[Path], overwrite: bool, encode: EncodeConfig, stats_json: Path | None) -> None:
    """Every output problem found now, not after the first video."""
    check_codec(encode.codec)
    for path in outputs:
        check_writable(path, overwrite)
    if stats_json is None:
        return
    if not stats_json.parent.is_dir():
        raise EncodeError(f"--stats-json folder {stats_json.parent} does not exist")
    if stats_json.exists() and not overwrite:
        raise EncodeError(f"--stats-json {stats_json} already exists; pass --overwrite to replace it")


def run_many(source: str, model: ModelConfig = ModelConfig(), *, output: Path | None = None,
             overwrite: bool = False, pipeline: PipelineConfig = PipelineConfig(),
             encode: EncodeConfig = EncodeConfig(), save_masks: Path | None = None, stats_json: Path | None = None,
             stop: threading.Event | None = None, progress: bool = True, log: Log = stderr_log,
             view: Callable[[ModelInfo], ViewServer | None] | None = None) -> dict[str, dict]:
    """Segment every video `source` names (file, URL, glob or camera index) into its output file.

    Returns each source's timing summary. `stop` ends the current video gracefully
    (its output is finalised) and skips the rest. `view`, given the model's info, may
    start a browser view (`streamseg.serve.ViewServer`) that every video feeds. Raises `SourceError`, `EncodeError`,
    `BackendError`, `CheckpointError`, `OSError` or `av.FFmpegError` with a one-line message.
    """
    stop = stop if stop is not None else threading.Event()
    model = replace(model, model=check_model(model.model))
    sources = expand_sources(source)
    outputs = plan_outputs(sources, output)
    check_outputs(outputs, overwrite, encode, stats_json)
    first: VideoSource | None = open_source(sources[0])  # a bad input fails before the model is loaded
    try:
        chosen = open_backend(model, pipeline.batch, log)
        browser = view(chosen.info) if view is not None else None
    except BaseException:
        first.close()
        raise
    summaries: dict[str, dict] = {}
    for spec, path in zip(sources, outputs, strict=True):
        opened, first = first or open_source(spec), None
        config = replace(pipeline, save_masks=mask_folder(save_masks, spec, len(sources) > 1))
        summaries[spec] = run_one(opened, spec, path, chosen, config, encode, stop, progress, log, browser)
        if stop.is_set():
            break
    if stats_json is not None:
        data = summaries[sources[0]] if len(sources) == 1 else summaries
        text = json.dumps(data, indent=2) + "\n"
        atomic_write(stats_json, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return summaries
