"""The per-user cache of automatic exports (the ONNX files `run` makes on first use).

One folder for the user, like torch's hub cache, so the working directory does
not matter: `$STREAMSEG_CACHE`, else `$XDG_CACHE_HOME/streamseg`, else
`~/.cache/streamseg`. Files are keyed by model name and checkpoint hash, so
two checkpoints never share one. `engines/` stays the user's: only an explicit
`streamseg export` writes there, and `run` never rewrites what it finds there.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .backends.base import BackendError

ENV = "STREAMSEG_CACHE"
SHA_CHARS = 12  # 48 bits of the checkpoint's sha256: collisions need ~16 million checkpoints of one name


def cache_root() -> Path:
    """`$STREAMSEG_CACHE`, else the XDG cache folder's `streamseg/` (the rule torch.hub follows)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "streamseg"


def exports_dir() -> Path:
    return cache_root() / "onnx"


def export_path(name: str, checkpoint_sha256: str) -> Path:
    """Where the automatic ONNX export of a checkpoint lives: `onnx/NAME-SHA12.onnx`."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)  # no dots: `NAME.int8.onnx` / `NAME.auto.json` split on them
    return exports_dir() / f"{safe}-{checkpoint_sha256[:SHA_CHARS]}.onnx"


def in_cache(path: Path) -> bool:
    return path.resolve().parent == exports_dir().resolve()


def writable_exports_dir(model: str, name: str) -> Path:
    """The exports folder, made if missing; a one-line error saying what to do when it cannot be written
    (a read-only home, as in some Jetson containers)."""
    folder = exports_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise BackendError(f"cannot write the export cache {folder} ({error.strerror or error}); set {ENV} to a "
                           f"writable folder, or export once with `streamseg export --model {model}` and pass "
                           f"--model engines/{name}.onnx") from None
    return folder
