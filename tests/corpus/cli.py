"""Run the real `streamseg` CLI in a separate process and collect what a user would see.

A fresh interpreter spends seconds importing torch before it reads its first
argument, so by default each run is forked from a `multiprocessing`
forkserver that imported `streamseg.cli` once: a new process with its own
pid, signals, file descriptors, exit status and stderr, running the same
click entry point. `STREAMSEG_TEST_CLI=subprocess` (and platforms without
`fork`) use a fresh `python -c` interpreter for every run instead.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENTRY = "from streamseg.cli import main; main(prog_name='streamseg')"
USE_FORKSERVER = os.environ.get("STREAMSEG_TEST_CLI", "forkserver") == "forkserver" \
    and "forkserver" in multiprocessing.get_all_start_methods()
_context = None
# One intra-op thread: on a shared CI CPU, OpenMP workers spin-waiting for a busy core turn a 3 ms
# tiny-model inference into a second. The pipeline's own stage threads still run concurrently.
SINGLE_THREAD = 1


@dataclass(frozen=True)
class Result:
    code: int          # exit status; -N when killed by signal N
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["streamseg.cli"])
    return _context


def _child(args: list[str], cwd: str, out: str, err: str, file_size_limit: int | None) -> None:
    """Runs in the forked process: the same streams and limits a shell would give `streamseg`."""
    import resource

    os.chdir(cwd)
    for fd, name in ((1, out), (2, err)):
        target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    if file_size_limit is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    import torch

    from streamseg.cli import main

    torch.set_num_threads(SINGLE_THREAD)
    try:
        main(args, prog_name="streamseg")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


class Running:
    """A started `streamseg` process: `pid`, `wait()`, and its output so far."""

    def __init__(self, args: list[str], cwd: Path, file_size_limit: int | None = None) -> None:
        # Logs live outside `cwd`, so tests can check that the run left nothing there.
        logs = Path(tempfile.mkdtemp(prefix="streamseg-cli-"))
        self.out, self.err = logs / "stdout", logs / "stderr"
        if USE_FORKSERVER:
            self.process = _forkserver().Process(
                target=_child, args=(args, str(cwd), str(self.out), str(self.err), file_size_limit))
            self.process.start()
            self.pid = self.process.pid
        else:
            with open(self.out, "wb") as out, open(self.err, "wb") as err:
                env = {**os.environ, "OMP_NUM_THREADS": str(SINGLE_THREAD)}
                self.process = subprocess.Popen([sys.executable, "-c", _limit(file_size_limit) + ENTRY, *args],
                                                cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
            self.pid = self.process.pid

    def stderr_so_far(self) -> str:
        return _read(self.err)

    def alive(self) -> bool:
        if USE_FORKSERVER:
            return self.process.is_alive()
        return self.process.poll() is None

    def wait(self, timeout: float) -> Result:
        """The finished run; a run still going after `timeout` seconds is killed and reported as a hang."""
        if USE_FORKSERVER:
            self.process.join(timeout)
            hung = self.process.is_alive()
            if hung:
                self.process.kill()
                self.process.join()
            code = self.process.exitcode
        else:
            try:
                code, hung = self.process.wait(timeout), False
            except subprocess.TimeoutExpired:
                self.process.kill()
                code, hung = self.process.wait(), True
        result = Result(code, _read(self.out), _read(self.err))
        self.out.unlink(missing_ok=True)
        self.err.unlink(missing_ok=True)
        self.out.parent.rmdir()
        if hung:
            raise TimeoutError(f"streamseg still running after {timeout} s; output so far:\n{result.output}")
        return result


def _read(path: Path) -> str:
    """A log's text; empty when the process died before opening it."""
    return path.read_text(errors="replace") if path.exists() else ""


def _limit(file_size_limit: int | None) -> str:
    """Python that sets the file-size limit first thing (a `preexec_fn` is unsafe in a threaded pytest)."""
    if file_size_limit is None:
        return ""
    return f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "


def streamseg(*args: str, cwd: Path, timeout: float = 180, file_size_limit: int | None = None) -> Result:
    """Run `streamseg ARGS...` in `cwd` to completion (at most `timeout` seconds)."""
    return Running([str(a) for a in args], cwd, file_size_limit).wait(timeout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
