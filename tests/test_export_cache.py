"""Issue 12 item 3: one per-user cache for automatic exports; `engines/` is the user's, never rewritten."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from streamseg.backends.onnx_backend import read_onnx_meta
from streamseg.cache import cache_root
from streamseg.checkpoint import ModelInfo, file_sha256, save_checkpoint
from streamseg.cli import main
from streamseg.runtime import load_backend


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def checkpoint_at(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=(48, 64))
    return save_checkpoint(path, info.build(), info)


def exports(cache: Path) -> list[Path]:
    return sorted((cache / "onnx").glob("*.onnx"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_folder_follows_streamseg_cache_then_xdg_then_home(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("STREAMSEG_CACHE")
    assert cache_root() == tmp_path / "xdg" / "streamseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "streamseg"


def test_two_working_directories_share_one_export(tiny_model: Path, make_clip, tmp_path: Path, cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clip, said = make_clip("c.mp4", frames=3), []
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        monkeypatch.chdir(folder)
        result = cli("run", clip, "-m", tiny_model, "-o", "out.mp4", "--no-progress")
        assert result.exit_code == 0, result.output
        said.append(result.stderr)
        assert not (folder / "engines").exists()  # run writes nothing into the working directory but its output
    assert [p.name for p in exports(cache)] == [f"tiny-{file_sha256(tiny_model)[:12]}.onnx"]
    assert "exporting ONNX" in said[0] and "exporting ONNX" not in said[1]
    assert exports(cache)[0].with_suffix(".auto.json").is_file()  # the measured choice lies beside the export


def test_export_then_run_never_rewrites_the_users_file(make_clip, tmp_path: Path, cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = checkpoint_at(tmp_path / "tiny.safetensors", seed=0)
    clip = make_clip("c.mp4", frames=3)
    monkeypatch.chdir(tmp_path)
    assert cli("export", "--model", model, "--calib", clip, "--calib-frames", "2").exit_code == 0
    mine = tmp_path / "engines" / "tiny.onnx"
    before = (mine.stat().st_mtime_ns, mine.read_bytes())
    result = cli("run", clip, "-m", model, "-o", "one.mp4", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "exporting" not in result.stderr and "out of date" not in result.stderr
    assert exports(cache) == [] and sorted(p.name for p in mine.parent.iterdir()) == ["tiny.onnx"]
    assert (mine.stat().st_mtime_ns, mine.read_bytes()) == before  # used as it is
    checkpoint_at(model, seed=1)  # new weights: the user's export is stale now
    result = cli("run", clip, "-m", model, "-o", "two.mp4", "--no-progress")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith(str(Path("engines") / "tiny.onnx"))]
    assert len(notes) == 1 and "was exported from other weights" in notes[0] and "using the automatic export" in notes[0]
    assert (mine.stat().st_mtime_ns, mine.read_bytes()) == before  # still the user's file, untouched
    (cached,) = exports(cache)
    assert read_onnx_meta(cached).source_sha256 == file_sha256(model)


def test_checkpoints_of_one_name_never_share_an_export(tmp_path: Path, cache: Path) -> None:
    first = checkpoint_at(tmp_path / "a" / "tiny.safetensors", seed=0)
    second = checkpoint_at(tmp_path / "b" / "tiny.safetensors", seed=1)
    paths = [load_backend(str(c), backend="onnx", device="cpu")[0].path for c in (first, second)]
    assert paths[0] != paths[1] and exports(cache) == sorted(paths)
    assert [read_onnx_meta(p).source_sha256 for p in paths] == [file_sha256(first), file_sha256(second)]


@pytest.mark.parametrize("blocked", ["not a folder", "read-only"])
def test_unwritable_cache_is_one_actionable_line(tiny_model: Path, make_clip, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, blocked: str) -> None:
    if blocked == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
        monkeypatch.setenv("STREAMSEG_CACHE", str(folder / "streamseg"))
    else:
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "file" / "streamseg"))
    monkeypatch.chdir(tmp_path)
    result = cli("run", make_clip("c.mp4", frames=2), "-m", tiny_model, "--backend", "onnx", "--no-progress")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot write the export cache") and "set STREAMSEG_CACHE" in line
    assert "streamseg export --model" in line and not (tmp_path / "c_seg.mp4").exists()
