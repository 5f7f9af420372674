"""`streamseg run` end to end: outputs, refusals, bad inputs and Ctrl-C / SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from conftest import write_clip

from streamseg.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_default_output_next_to_input_and_no_surprise_overwrite(tiny_model, make_clip, tmp_path):
    clip = make_clip("drive.mp4", frames=6)
    stats = tmp_path / "stats.json"
    args = [str(clip), "--model", str(tiny_model), "--backend", "torch", "--no-progress"]
    result = invoke(*args, "--batch", "4", "--stats-json", str(stats), "--save-masks", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    output = tmp_path / "drive_seg.mp4"
    assert count_frames(output) == 6
    assert "backend: torch on cpu" in result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 6 and set(summary["stages"]) >= {"decode", "inference", "encode", "latency"}
    assert summary["fps_end_to_end"] > 0 and summary["fps_network"] > 0
    assert len(list((tmp_path / "m").glob("*.png"))) == 6

    before = output.stat().st_mtime_ns
    refused = invoke(*args)
    assert refused.exit_code == 1 and "--overwrite" in refused.output
    assert output.stat().st_mtime_ns == before
    assert invoke(*args, "--overwrite", "--view", "side-by-side").exit_code == 0


def test_glob_writes_one_output_per_file(tiny_model, tmp_path):
    for name in ("a.mp4", "b.mp4"):
        write_clip(tmp_path / name, frames=3)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = invoke(str(tmp_path / "*.mp4"), "-m", str(tiny_model), "--backend", "torch", "-o", str(out_dir),
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_seg.mp4", "b_seg.mp4"]


def bad_inputs(tmp: Path, model: Path) -> dict[str, tuple[list[str], str]]:
    clip = write_clip(tmp / "good.mp4", frames=3)
    (tmp / "notes.txt").write_text("not a video\n")
    (tmp / "truncated.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with av.open(str(tmp / "sound.m4a"), "w") as out:  # audio only: no video stream
        stream = out.add_stream("aac", rate=8000, layout="mono")
        out.mux(stream.encode(None))
        out.start_encoding()
    with av.open(str(tmp / "empty.avi"), "w") as out:  # a video stream with zero frames
        stream = out.add_stream("mpeg4", rate=15)
        stream.width, stream.height = 64, 48
        out.start_encoding()
    (tmp / "folder").mkdir()
    (tmp / "colors.txt").write_text("128 64 Road\n")
    m = ["-m", str(model), "--backend", "torch"]
    return {
        "missing": ([str(tmp / "nope.mp4"), *m], "no such file"),
        "directory": ([str(tmp / "folder"), *m], "not a file"),
        "not a video": ([str(tmp / "notes.txt"), *m], "not a video"),
        "corrupt": ([str(tmp / "truncated.mp4"), *m], "not a video"),
        "no video stream": ([str(tmp / "sound.m4a"), *m], "no video stream"),
        "zero frames": ([str(tmp / "empty.avi"), *m], "no frames"),
        "unknown model": ([str(clip), "-m", "no-such-model", "--backend", "torch"], "unknown model"),
        "unwritable output": ([str(clip), *m, "-o", str(tmp / "missing-dir" / "x.mp4")], "does not exist"),
        "bad class": ([str(clip), *m, "--classes", "unicorn"], "unknown class"),
        "bad palette": ([str(clip), *m, "--palette", str(tmp / "colors.txt")], "expected 'R G B Name'"),
        "camera": (["9", *m], "camera 9 could not be opened"),
    }


CASES = ["missing", "directory", "not a video", "corrupt", "no video stream", "zero frames", "unknown model",
         "unwritable output", "bad class", "bad palette", "camera"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_error_and_no_output(tiny_model, tmp_path, case):
    args, message = bad_inputs(tmp_path, tiny_model)[case]
    before = set(tmp_path.rglob("*"))
    result = invoke(*args, "--no-progress")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    assert {p for p in tmp_path.rglob("*") if p.suffix == ".mp4"} <= {p for p in before if p.suffix == ".mp4"}


def test_a_mistyped_model_is_named_before_the_existing_output(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    (tmp_path / "clip_seg.mp4").write_bytes(b"old result")
    result = invoke(str(clip), "-m", "deeplb", "--no-progress")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "unknown model 'deeplb'; did you mean 'deeplab'?" in errors[0] and "--overwrite" not in errors[0]
    assert (tmp_path / "clip_seg.mp4").read_bytes() == b"old result"


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", frames=3000, size=(48, 64), rate=25)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_leaves_a_playable_partial_output(tiny_model, long_clip, tmp_path, sig, code):
    output, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    command = [sys.executable, "-c", "from streamseg.cli import main; main()", "run", str(long_clip),
               "-m", str(tiny_model), "--backend", "torch", "-o", str(output), "--stats-json", str(stats),
               "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let some frames through
    process.send_signal(sig)
    log, _ = process.communicate(timeout=120)
    assert process.returncode == code, log
    assert "Traceback" not in log and "interrupted" in log
    frames = count_frames(output)  # decodes every packet: the file is complete and playable
    assert 0 < frames < 3000
    assert json.loads(stats.read_text())["frames"] == frames
    assert not list(tmp_path.glob(".out.partial-*"))
    with av.open(str(output)) as container:
        assert container.streams.video[0].average_rate == 25
    assert os.path.getsize(output) > 0


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_cpu_runtimes_keep_torch_out_of_the_process(tiny_model, make_clip, tmp_path, backend):
    """Issue 13: a cached ONNX export runs with ONNX Runtime or OpenVINO alone (a third of the memory)."""
    from streamseg.export.run import cache_onnx

    if backend == "openvino":
        pytest.importorskip("openvino")
    cache_onnx(tiny_model, tmp_path / "engines" / "tiny.onnx", log=lambda _: None)
    clip = make_clip("c.mp4", frames=3)
    code = ("import sys\nfrom streamseg.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as end:\n"
            "    assert end.code == 0, end.code\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code, "run", str(clip), "-m", str(tiny_model), "--backend", backend,
                           "-o", str(tmp_path / "out.mp4"), "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert count_frames(tmp_path / "out.mp4") == 3
