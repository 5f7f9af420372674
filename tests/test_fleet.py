"""Fleet processing on a local Ray cluster (issue 15).

The cluster is started here, once per module, on this machine only
(127.0.0.1, no dashboard, no usage reporting) with 2 CPUs: two workers.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from conftest import write_clip

ray = pytest.importorskip("ray")

from streamseg.cli import main
from streamseg.encode import EncodeError
from streamseg.fleet import FleetConfig, WorkerConfig, run_fleet
from streamseg.fleet.manifest import Clip, Manifest, Row, is_complete, plan_clips, read_manifest
from streamseg.jobs import ModelConfig


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # never report to anyone
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def partials(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*partial*"))


def fleet(tmp_path: Path, model: Path, *extra: str):
    args = ["run", str(tmp_path / "clips" / "**" / "*.mp4"), "--output-dir", str(tmp_path / "out"), "--ray",
            "--workers", "2", "--model", str(model), "--backend", "torch", "--device", "cpu", "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def test_cluster_run_records_every_clip_and_a_rerun_redoes_only_failures(cluster, tiny_model, tmp_path):
    lengths = {"day1/a.mp4": 9, "day1/b.mp4": 14, "day2/a.mp4": 11}  # day1/a and day2/a: same name, two outputs
    for name, frames in lengths.items():
        (tmp_path / "clips" / name).parent.mkdir(parents=True, exist_ok=True)
        write_clip(tmp_path / "clips" / name, frames=frames)
    corrupt = tmp_path / "clips" / "day2" / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)

    result = fleet(tmp_path, tiny_model)
    assert result.exit_code == 1, result.output
    assert "1 clip(s) failed" in result.output
    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert len(rows) == 4
    for name, frames in lengths.items():
        row = rows[str(tmp_path / "clips" / name)]
        output = tmp_path / "out" / name.replace(".mp4", "_seg.mp4")
        assert row["error"] is None and row["output"] == str(output)
        assert row["frames"] == frames == frames_in(output)
        assert abs(sum(row["class_shares"].values()) - 1) < 1e-3 and row["backend"].startswith("torch")
    bad = rows[str(corrupt)]
    assert bad["error"].startswith(f"cannot open {corrupt}") and "\n" not in bad["error"]
    assert not (tmp_path / "out" / "day2" / "broken_seg.mp4").exists()
    assert partials(tmp_path / "out") == []

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*_seg.mp4")}
    again = fleet(tmp_path, tiny_model)
    assert again.exit_code == 1, again.output
    assert "4 clips: 3 already done, 1 to do" in again.output  # only the failed clip is tried again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 5

    corrupt.unlink()
    manifest = (tmp_path / "out" / "manifest.jsonl").read_text()
    idle = fleet(tmp_path, tiny_model)
    assert idle.exit_code == 0, idle.output
    assert "3 clips: 3 already done, 0 to do" in idle.output and "worker" not in idle.output
    assert (tmp_path / "out" / "manifest.jsonl").read_text() == manifest


def run_in_thread(target) -> tuple[threading.Thread, dict]:
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(report=target()), daemon=True)
    thread.start()
    return thread, box


def wait_for_frames(at_least: int, timeout: float = 300) -> None:
    """Until the run's progress actor has seen `at_least` frames (the run names it streamseg-progress-…)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [n for n in ray.util.list_named_actors() if n.startswith("streamseg-progress-")]
        if names and ray.get(ray.get_actor(names[0]).totals.remote())[0] >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} frames processed in {timeout} s")


def tiny_fleet(model: Path, workers: int = 1) -> FleetConfig:
    return FleetConfig(WorkerConfig(ModelConfig(str(model), "torch", "cpu")), workers=workers)


def test_worker_killed_mid_clip_is_restarted_and_its_clip_redone(cluster, tiny_model, tmp_path):
    write_clip(tmp_path / "long.mp4", frames=300)
    thread, box = run_in_thread(lambda: run_fleet(str(tmp_path / "long.mp4"), tmp_path / "out", tiny_fleet(tiny_model),
                                                  progress=False))
    wait_for_frames(10)
    [worker] = [n for n in ray.util.list_named_actors() if n.startswith("streamseg-worker-")]
    ray.kill(ray.get_actor(worker), no_restart=False)  # the process dies at once, mid-clip
    thread.join(timeout=600)
    report = box["report"]
    assert report.ok and not report.failed, report
    [row] = report.done
    assert row.attempt == 2 and row.frames == 300
    assert frames_in(tmp_path / "out" / "long_seg.mp4") == 300
    assert partials(tmp_path / "out") == []  # the dead worker's temporary file was swept before the retry


def test_stop_keeps_finished_clips_and_drops_the_one_in_flight(cluster, tiny_model, tmp_path):
    (tmp_path / "clips").mkdir()
    write_clip(tmp_path / "clips" / "a_short.mp4", frames=8)
    write_clip(tmp_path / "clips" / "b_long.mp4", frames=600)
    stop = threading.Event()
    thread, box = run_in_thread(lambda: run_fleet(str(tmp_path / "clips" / "*.mp4"), tmp_path / "out",
                                                  tiny_fleet(tiny_model), stop=stop, progress=False))
    wait_for_frames(8 + 10)  # the short clip is done, the long one under way
    stop.set()  # what Ctrl-C does
    thread.join(timeout=120)
    report = box["report"]
    assert report.interrupted and [r.input for r in report.done] == [str(tmp_path / "clips" / "a_short.mp4")]
    assert [c.input for c in report.left] == [str(tmp_path / "clips" / "b_long.mp4")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_short_seg.mp4", "manifest.jsonl"]
    assert len(read_manifest(tmp_path / "out" / "manifest.jsonl")) == 1


# --- the manifest and output planning, without Ray ---

def test_outputs_mirror_the_input_folders(tmp_path):
    for name in ("x/a.mp4", "y/a.mp4", "b.mp4"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        write_clip(tmp_path / "in" / name, frames=2)
    clips = plan_clips(str(tmp_path / "in" / "**" / "*.mp4"), tmp_path / "out")
    assert [Path(c.output).relative_to(tmp_path / "out").as_posix() for c in clips] == \
        ["b_seg.mp4", "x/a_seg.mp4", "y/a_seg.mp4"]
    single = plan_clips(str(tmp_path / "in" / "x" / "a.mp4"), tmp_path / "out")
    assert single == [Clip(str(tmp_path / "in" / "x" / "a.mp4"), str(tmp_path / "out" / "a_seg.mp4"))]


def test_complete_means_row_and_file_agree(tmp_path):
    source, output = write_clip(tmp_path / "a.mp4", frames=5), write_clip(tmp_path / "a_seg.mp4", frames=5)
    clip = Clip(str(source), str(output))
    row = json.loads(Row(clip.input, clip.output, frames=5, bytes=output.stat().st_size,
                         input_bytes=source.stat().st_size, settings="s").to_json())
    assert is_complete(row, clip, "s")
    assert not is_complete(row, clip, "other settings")
    assert not is_complete({**row, "error": "boom"}, clip, "s")
    assert not is_complete({**row, "frames": 6}, clip, "s")
    output.write_bytes(output.read_bytes()[:-10])  # truncated behind our back
    assert not is_complete(row, clip, "s")


def test_manifest_is_one_writer_and_survives_a_torn_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(Row("/a.mp4", "/a_seg.mp4", frames=3).to_json() + "\n{\"input\": \"/b")
    manifest = Manifest(tmp_path)
    try:
        assert list(manifest.rows) == ["/a.mp4"]
        with pytest.raises(EncodeError, match="another run is writing"):
            Manifest(tmp_path)
    finally:
        manifest.close()
    Manifest(tmp_path).close()  # the lock went with the first run


def test_ray_options_are_checked_before_any_work(tmp_path):
    clip = write_clip(tmp_path / "a.mp4", frames=2)
    cases = [(["--ray"], "--ray needs --output-dir"),
             (["--output-dir", "o"], "--output-dir and --workers are for --ray runs"),
             (["--ray", "nowhere", "--output-dir", "o"], "--ray takes auto, HOST:PORT"),
             (["--output-dir", "o", "--ray", "--stats-json", "s.json"], "--stats-json is not used with --ray")]
    for extra, message in cases:
        result = CliRunner().invoke(main, ["run", str(clip), *extra])
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_mistyped_model_is_the_error_before_ray_starts(tmp_path):
    clip = write_clip(tmp_path / "a.mp4", frames=2)
    result = CliRunner().invoke(main, ["run", str(clip), "--ray", "--output-dir", str(tmp_path / "out"), "-m", "deeplb"])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith(
        "Error: unknown model 'deeplb'; did you mean 'deeplab'?"), result.output
    assert not (tmp_path / "out").exists()  # nothing planned or written, no cluster started
