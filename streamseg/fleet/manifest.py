"""What a fleet run has to do and what it has done: clips, their outputs, and the manifest.

The manifest (`OUTPUT_DIR/manifest.jsonl`) gets one JSON line per clip a run
finished, success or failure, appended and flushed as each result arrives, so
a run stopped at any point keeps every row it had. The last row for an input
wins. A clip counts as done only when its row says so *and* the output on disk
is the one that row describes (same settings, same input size, same output
size and frame count): a half-copied, replaced or deleted file is redone.
"""
from __future__ import annotations

import fcntl
import glob
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import av

from ..encode import EncodeError
from ..jobs import default_output
from ..source import SourceError, expand_sources

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Clip:
    """One unit of work: an input video and where its segmented video goes (absolute paths)."""
    input: str
    output: str


@dataclass(frozen=True)
class Row:
    """One manifest line. `fps` is segmentation speed on the worker; `rate` the video's own frame rate."""
    input: str
    output: str
    frames: int = 0
    fps: float = 0.0
    rate: float | None = None
    backend: str = ""
    class_shares: dict[str, float] | None = None
    error: str | None = None
    bytes: int = 0
    input_bytes: int = 0
    settings: str = ""
    worker: str = ""
    attempt: int = 1
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def glob_root(spec: str) -> Path:
    """The folder a pattern's matches are laid out under: its part before the first wildcard."""
    parts = Path(spec).parts
    fixed = parts[:next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))]
    root = Path(*fixed) if fixed else Path(".")
    return root if glob.has_magic(spec) else root.parent


def plan_clips(specs: str | list[str], output_dir: Path) -> list[Clip]:
    """Inputs → clips whose outputs mirror the inputs' folders under `output_dir` (NAME_seg.mp4).

    Mirroring, not flattening: `day1/cam.mp4` and `day2/cam.mp4` must not share
    an output, and the layout stays the same when later runs match more files.
    """
    pairs: list[tuple[Path, Path]] = []
    for spec in [specs] if isinstance(specs, str) else specs:
        root = glob_root(spec).resolve()
        pairs += [(Path(found).resolve(), root) for found in expand_sources(spec)]
    clips, seen = [], {}
    for path, root in pairs:
        if "://" in str(path) or not path.is_file():
            raise SourceError(f"fleet runs take video files; {path} is not one")
        output = default_output(str(path), output_dir.resolve() / path.parent.relative_to(root))
        if output in seen and seen[output] != path:
            raise EncodeError(f"{seen[output]} and {path} would both write {output}; run them separately")
        seen[output] = path
        clips.append(Clip(str(path), str(output)))
    return list(dict.fromkeys(clips))  # one clip matched by two patterns is still one clip


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """input → its last row. A torn last line (a crash mid-append) is skipped, not fatal."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            rows[row["input"]] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return rows


def output_frames(path: Path) -> int | None:
    """The frame count the MP4 header records (cheap: no decoding), or None if unreadable."""
    try:
        with av.open(str(path)) as container:
            return container.streams.video[0].frames
    except (av.FFmpegError, OSError, IndexError):
        return None


def is_complete(row: dict[str, Any] | None, clip: Clip, settings: str) -> bool:
    if not row or row.get("error") is not None or row.get("settings") != settings or row.get("output") != clip.output:
        return False
    output, source = Path(clip.output), Path(clip.input)
    if not output.is_file() or output.stat().st_size != row.get("bytes"):
        return False
    if source.stat().st_size != row.get("input_bytes"):  # the input was replaced since
        return False
    return output_frames(output) == row.get("frames")


def sweep_partials(output: str | Path) -> None:
    """Remove temporary files a killed writer of `output` left (VideoWriter's `.NAME.partial-PID.mp4`).

    Safe because one clip has one writer at a time: the manifest lock keeps
    other runs out, and Ray reruns a clip only once its worker is gone.
    """
    path = Path(output)
    for stale in path.parent.glob(f".{glob.escape(path.stem)}.partial-*{path.suffix}"):
        stale.unlink(missing_ok=True)


class Manifest:
    """The run's manifest, locked for the run (one run per output folder), appended row by row."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / MANIFEST
        self.file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 — held for the whole run
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise EncodeError(f"another run is writing {output_dir}; wait for it or choose another output folder") \
                from None
        self.rows = read_manifest(self.path)

    def append(self, row: Row) -> None:
        self.file.write(row.to_json() + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())  # a row on disk means the clip is done, even after a power cut
        self.rows[row.input] = asdict(row)

    def close(self) -> None:
        self.file.close()  # closing releases the lock
