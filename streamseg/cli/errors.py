"""One error handler for every command: an expected failure is one `Error:` line and exit 1."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import av
import click

from ..backends import BackendError
from ..encode import EncodeError
from ..export.errors import ExportError
from ..webcam import DisplayError

# ValueError covers SourceError, CheckpointError, DataError, LabelColorsError and FrameSourceError.
EXPECTED = (ValueError, OSError, av.FFmpegError, BackendError, EncodeError, DisplayError, ExportError)


def one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


@contextmanager
def one_line_errors(interrupted: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """`Error: <first line of the message>` and exit 1, never a traceback. A failure while
    `interrupted()` (Ctrl-C while connecting or loading the model) is reported as the
    interruption instead; the caller exits with the signal's code."""
    try:
        yield
    except EXPECTED as error:
        if not interrupted():
            raise click.ClickException(one_line(error)) from None
        click.echo("interrupted before the first frame: nothing written", err=True)
