"""Run a function in a separate process with a time limit: hangs and crashes become test failures.

The decoder front end runs FFmpeg's C code on untrusted bytes; in-process a
segfault would take pytest down and a hang would never end. Here a hang is
killed after `timeout` seconds and reported, and a crash shows as -signal.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cli import _forkserver

CLEAN_ERROR = 3  # exit status `decode_all` uses for an error the runner documents (SourceError)


@dataclass(frozen=True)
class Outcome:
    code: int | None   # exit status, -N for signal N, None when it hung and was killed
    stderr: str


def _redirected(target: Callable[..., None], args: tuple, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_TRUNC)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        target(*args)
    finally:
        sys.stderr.flush()


def run_isolated(target: Callable[..., None], *args: object, timeout: float = 30) -> Outcome:
    handle, log = tempfile.mkstemp(prefix="streamseg-isolated-")
    os.close(handle)
    process = _forkserver().Process(target=_redirected, args=(target, args, log))
    process.start()
    process.join(timeout)
    hung = process.is_alive()
    if hung:
        process.kill()
        process.join()
    text = Path(log).read_text(errors="replace")
    os.unlink(log)
    return Outcome(None if hung else process.exitcode, text)


def decode_all(path: str) -> None:
    """Open `path` with the runner's source and decode every frame; exit 0, or CLEAN_ERROR on SourceError.

    Any other exception escapes (traceback, exit 1): only documented errors count as clean.
    """
    from streamseg.source import SourceError, open_source

    try:
        source = open_source(path)
    except SourceError as error:
        print(f"SourceError: {error}", file=sys.stderr)
        sys.exit(CLEAN_ERROR)
    try:
        for frame in source.frames():
            image = frame.image
            assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3, image.shape
            assert image.shape[0] > 0 and image.shape[1] > 0
    finally:
        source.close()
    sys.exit(0)
