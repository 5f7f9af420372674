"""Paths, URLs and file systems for the bad-input corpus: where inputs are not and outputs cannot go.

Tests run as root in CI containers, where `chmod a-w` stops nobody; a
read-only or full file system is then a real tmpfs mount (root may mount),
and an ordinary user gets the chmod variant. When neither works, the test
is skipped with the reason, never silently passed.
"""
from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def missing_path(folder: Path) -> Path:
    return folder / "no_such_clip.mp4"


def a_directory(folder: Path) -> Path:
    """A folder named like a video file."""
    path = folder / "folder.mp4"
    path.mkdir()
    return path


def closed_port() -> int:
    """A loopback port with nothing listening: bound once to get a free number, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{closed_port()}/live/stream.mp4"


class SilentServer:
    """A loopback port that accepts connections and never sends a byte (a stalled camera or server)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)  # the kernel completes handshakes from the backlog; nobody ever answers
        self.port = self.socket.getsockname()[1]
        self.clients: list[socket.socket] = []

    def wait_for_client(self, timeout: float) -> None:
        """Block until someone connects (then hold the connection open, silently)."""
        self.socket.settimeout(timeout)
        self.clients.append(self.socket.accept()[0])

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.socket.close()


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def output_in_missing_folder(folder: Path) -> Path:
    return folder / "no_such_folder" / "out.mp4"


def output_under_a_file(folder: Path) -> Path:
    """`notes.txt/out.mp4`: the parent exists but is a file (ENOTDIR)."""
    (folder / "notes.txt").write_text("not a folder\n")
    return folder / "notes.txt" / "out.mp4"


def _mount_tmpfs(target: Path, options: str) -> str | None:
    """Mount a tmpfs; returns why not when this process may not mount."""
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


def _unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=20, check=False)


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """A folder nobody may write to: a read-only tmpfs as root, `chmod 555` otherwise."""
    target = folder / "read_only"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)
        return
    why_not = _mount_tmpfs(target, "ro,size=64k")
    if why_not:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs ({why_not}): root ignores chmod")
    try:
        yield target
    finally:
        _unmount(target)


@contextmanager
def tiny_disk(folder: Path, size: str = "16k") -> Iterator[Path]:
    """A tmpfs of `size` bytes that a video fills up (ENOSPC); needs permission to mount."""
    target = folder / "tiny_disk"
    target.mkdir()
    why_not = _mount_tmpfs(target, f"size={size}")
    if why_not:
        pytest.skip(f"cannot mount a tmpfs here ({why_not}); the file-size-limit variant still runs")
    try:
        yield target
    finally:
        _unmount(target)


def listing(folder: Path) -> set[str]:
    """Every name under `folder` (recursively, hidden files included), for 'nothing left behind' checks."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}
