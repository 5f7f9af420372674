"""`--serve` for `run` and `webcam`: the browser view's options and its wiring into a command.

The server lives in `streamseg.serve`; it is imported only when asked for, so
starlette and uvicorn stay an optional extra (`pip install 'streamseg[serve]'`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ..modelinfo import ModelInfo
from ..overlay import OverlayConfig

if TYPE_CHECKING:
    from ..serve import ViewServer

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def serve_options(command: Callable) -> Callable:
    options = [
        click.option("--serve", is_flag=True,
                     help="Watch in a browser: serve the live overlay, legend, class toggles and alpha over HTTP."),
        click.option("--host", default=DEFAULT_HOST, show_default=True,
                     help="Address to serve on. Anything but 127.0.0.1/localhost (e.g. 0.0.0.0) "
                          "requires the access token printed at start."),
        click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
                     help="Port to serve on (0: any free port)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_view(ctx: click.Context, serve: bool, info: ModelInfo, overlay: OverlayConfig,
              host: str, port: int) -> ViewServer | None:
    """Start the browser view (closed with the command's context), or None without --serve."""
    if not serve:
        if (host, port) != (DEFAULT_HOST, DEFAULT_PORT):
            raise click.UsageError("--host and --port only apply with --serve")
        return None
    try:
        from ..serve import ServeConfig, ViewServer
    except ImportError as error:
        raise click.ClickException(f"--serve needs starlette and uvicorn ({error.name} is missing): "
                                   "pip install 'streamseg[serve]'") from None
    view = ViewServer(info, overlay, ServeConfig(host, port)).start()
    ctx.call_on_close(view.close)  # after the run has finalised its output, on success, error or Ctrl-C
    click.echo(f"serving the live view at {view.url}  (Ctrl-C stops)", err=True)
    if view.token:
        click.echo("every request must carry that token: share the URL only with people who may see this stream",
                   err=True)
    return view
