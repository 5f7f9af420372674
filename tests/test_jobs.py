"""`streamseg.jobs.run_many`: what `streamseg run` does, from Python, with the same safety."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_clip

from streamseg.checkpoint import CheckpointError
from streamseg.encode import EncodeError
from streamseg.jobs import ModelConfig, plan_outputs, run_many
from streamseg.pipeline import PipelineConfig
from streamseg.source import SourceError


def test_run_many_writes_one_output_per_file_masks_and_stats(tiny_model, tmp_path: Path) -> None:
    for name in ("a.mp4", "b.mp4"):
        write_clip(tmp_path / name, frames=3)
    out, masks, stats = tmp_path / "out", tmp_path / "masks", tmp_path / "stats.json"
    out.mkdir()
    lines: list[str] = []
    summaries = run_many(str(tmp_path / "*.mp4"), ModelConfig(str(tiny_model), "torch", "cpu"), output=out,
                         pipeline=PipelineConfig(batch=2), save_masks=masks, stats_json=stats, progress=False,
                         log=lines.append)
    assert sorted(p.name for p in out.iterdir()) == ["a_seg.mp4", "b_seg.mp4"]
    assert [summaries[str(tmp_path / n)]["frames"] for n in ("a.mp4", "b.mp4")] == [3, 3]
    assert sorted(len(list((masks / n).glob("*.png"))) for n in ("a", "b")) == [3, 3]  # one folder per source
    assert json.loads(stats.read_text()).keys() == summaries.keys()
    assert lines[0].startswith("backend: torch on cpu") and any(line.startswith("wrote 3 frames") for line in lines)


def test_run_many_refuses_inputs_and_existing_outputs_before_loading_the_model(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "drive.mp4", frames=2)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    never = ModelConfig(str(junk))  # loading it would fail: it is never reached
    with pytest.raises(EncodeError, match="also an input"):
        run_many(str(clip), never, output=clip, overwrite=True)
    (tmp_path / "drive_seg.mp4").write_bytes(b"old result")
    with pytest.raises(EncodeError, match="--overwrite"):
        run_many(str(clip), never)
    assert (tmp_path / "drive_seg.mp4").read_bytes() == b"old result"
    with pytest.raises(SourceError):
        run_many(str(tmp_path / "nothing*.mp4"), never)


def test_plan_outputs_beside_inputs_or_in_one_folder(tmp_path: Path) -> None:
    assert plan_outputs([str(tmp_path / "x.mp4")], None) == [tmp_path / "x_seg.mp4"]
    assert plan_outputs(["0", "rtsp://cam/live?x=1"], tmp_path) == [tmp_path / "camera0_seg.mp4",
                                                                    tmp_path / "live_seg.mp4"]
    with pytest.raises(EncodeError, match="existing folder"):
        plan_outputs(["a.mp4", "b.mp4"], tmp_path / "no-such-folder")


def test_a_mistyped_model_is_the_error_even_when_the_output_exists(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "drive.mp4", frames=2)
    (tmp_path / "drive_seg.mp4").write_bytes(b"old result")
    with pytest.raises(CheckpointError, match="unknown model 'deeplb'; did you mean 'deeplab'"):
        run_many(str(clip), ModelConfig("deeplb"))
    assert (tmp_path / "drive_seg.mp4").read_bytes() == b"old result"


def test_preset_names_run_in_any_case(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "drive.mp4", frames=2)
    lines: list[str] = []
    summary = run_many(str(clip), ModelConfig("UNet", "torch", "cpu"), progress=False, log=lines.append)
    assert summary[str(clip)]["frames"] == 2 and (tmp_path / "drive_seg.mp4").is_file()
    assert lines[0].startswith("backend: torch on cpu")


def test_tta_runs_the_torch_backend_around_the_flip_scale_average(tiny_model, tmp_path: Path) -> None:
    from PIL import Image

    from streamseg.backends import BackendError
    from streamseg.jobs import open_backend
    from streamseg.tta import FlipScaleTTA

    write_clip(tmp_path / "a.mp4", frames=2)
    lines: list[str] = []
    backend = open_backend(ModelConfig(str(tiny_model), "auto", "cpu", tta=True), 1, lines.append)
    assert isinstance(backend.model, FlipScaleTTA) and "test-time augmentation" in lines[0]
    with pytest.raises(BackendError, match="--tta runs on the torch backend"):
        open_backend(ModelConfig(str(tiny_model), "onnx", "cpu", tta=True), 1, lines.append)
    masks = tmp_path / "masks"
    summary = run_many(str(tmp_path / "a.mp4"), ModelConfig(str(tiny_model), "torch", "cpu", tta=True),
                       output=tmp_path / "a_tta.mp4", save_masks=masks, progress=False, log=lines.append)
    assert summary[str(tmp_path / "a.mp4")]["frames"] == 2
    assert sorted(p.name for p in masks.iterdir()) == ["000000.png", "000001.png"]
    assert Image.open(masks / "000000.png").size == (64, 48)  # masks at the frame's size
