"""`streamseg run` against the bad-input corpus (issue 7), through the real CLI in its own process.

A bad input gets one `Error:` line naming the problem, exit code 1 (see
docs/exit-codes.md), no traceback, nothing new in the folder (no output
under the final name, no stray temporary file) and an untouched input.
Valid-but-odd inputs are processed: one output frame per decodable input
frame, at the input's size (odd sizes padded by one pixel for yuv420p).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from corpus import media, models, places
from corpus.cli import Result, sha256, streamseg

ERROR = 1  # docs/exit-codes.md: the input, model or output cannot be used
USAGE = 2


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.tiny_checkpoint(tmp_path_factory.mktemp("model"))


def segment(folder: Path, source: object, model: object, *extra: object, **options) -> Result:
    return streamseg("run", source, "--model", model, "--backend", "torch", "--device", "cpu", "--no-progress",
                     *extra, cwd=folder, **options)


def assert_refused(result: Result, *words: str, code: int = ERROR) -> str:
    """Exactly one `Error:` line, containing every word (case-insensitive); no traceback."""
    assert result.code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    # Besides the error only our own notes: no FFmpeg/x264 log noise, no partial summaries.
    noise = [line for line in result.stderr.splitlines() if line and not line.startswith(("Error:", "backend:"))]
    assert not noise, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    return errors[0]


def refused_cleanly(folder: Path, source: Path | str, model: Path | str, *extra: object,
                    words: tuple[str, ...], **options) -> str:
    """Run, expect a refusal, and check that the folder and the input file are as they were."""
    before = places.listing(folder)
    digest = sha256(source) if isinstance(source, Path) and source.is_file() else None
    line = assert_refused(segment(folder, source, model, *extra, **options), *words)
    assert places.listing(folder) == before
    if digest is not None:
        assert sha256(source) == digest
    return line


# --- inputs that are not (usable) video ------------------------------------------------------

BROKEN_MEDIA: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "empty file": (media.empty_file, ("empty.mp4", "empty")),
    "random bytes": (media.random_bytes, ("noise.mp4", "not a video")),
    "truncated, index at the end": (media.truncated_tail, ("truncated.mp4",)),
    "audio only": (media.audio_only, ("audio_only.mp4", "no video stream")),
    "unknown codec": (media.unknown_codec, ("unknown_codec.mp4", "no decoder")),
}


@pytest.mark.parametrize("case", BROKEN_MEDIA)
def test_broken_media_is_refused(case, model, tmp_path):
    make, words = BROKEN_MEDIA[case]
    refused_cleanly(tmp_path, make(tmp_path), model, words=words)


def test_missing_path(model, tmp_path):
    refused_cleanly(tmp_path, places.missing_path(tmp_path), model, words=("no such file", "no_such_clip.mp4"))


def test_directory_as_input(model, tmp_path):
    refused_cleanly(tmp_path, places.a_directory(tmp_path), model, words=("not a file", "folder.mp4"))


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_refused_connection_fails_fast(scheme, model, tmp_path):
    url = places.refused_url(scheme)
    # A hang would be killed by the timeout and fail the test; refusing takes well under a second.
    line = refused_cleanly(tmp_path, url, model, "-o", tmp_path / "out.mp4", words=("127.0.0.1",), timeout=90)
    assert "cannot connect" in line.lower() and "refused" in line.lower()


def test_camera_that_does_not_open(model, tmp_path):
    refused_cleanly(tmp_path, "97", model, "-o", tmp_path / "out.mp4", words=("camera 97", "could not be opened"),
                    timeout=90)


def test_silent_server_times_out(model, tmp_path):
    """A server that accepts and never answers (a stalled camera): a bounded wait, then a clean error."""
    with places.silent_server() as server:
        url = f"http://127.0.0.1:{server.port}/live/stream.mp4"
        refused_cleanly(tmp_path, url, model, "-o", tmp_path / "out.mp4", words=(url, "no answer"), timeout=90)


# --- model files --------------------------------------------------------------------------

def test_unknown_model_name(tmp_path):
    clip = media.clip(tmp_path)
    refused_cleanly(tmp_path, clip, models.unknown_model_name(), words=("unknown model", "segformer-b9000"))


def test_checkpoint_whose_weights_do_not_match_its_classes(tmp_path):
    clip, folder = media.clip(tmp_path), tmp_path / "m"
    folder.mkdir()
    refused_cleanly(tmp_path, clip, models.mismatched_classes(folder), words=("mismatched.safetensors", "match"))


@pytest.mark.parametrize("make", [models.corrupt_safetensors, models.truncated_safetensors],
                         ids=["corrupt", "truncated"])
def test_broken_safetensors(make, tmp_path):
    clip, folder = media.clip(tmp_path), tmp_path / "m"
    folder.mkdir()
    path = make(folder)
    refused_cleanly(tmp_path, clip, path, words=(path.name,))


@pytest.mark.parametrize("make", [models.pickle_bomb, models.torch_pickle_bomb], ids=["pickle", "torch.save"])
def test_pickled_model_is_never_unpickled(make, tmp_path):
    clip, folder, marker = media.clip(tmp_path), tmp_path / "m", tmp_path.parent / f"{tmp_path.name}-PWNED"
    folder.mkdir()
    path = make(folder, marker)
    refused_cleanly(tmp_path, clip, path, words=(path.name, "pickle", ".safetensors"))
    assert not marker.exists(), "the pickle ran code"


def test_pickle_disguised_as_safetensors_is_never_unpickled(tmp_path):
    clip, folder, marker = media.clip(tmp_path), tmp_path / "m", tmp_path.parent / f"{tmp_path.name}-PWNED"
    folder.mkdir()
    path = models.pickle_bomb(folder, marker, name="weights.safetensors")
    refused_cleanly(tmp_path, clip, path, words=(path.name, "cannot read checkpoint"))
    assert not marker.exists(), "the pickle ran code"


def test_checkpoint_for_another_class_count_runs(tmp_path):
    """A self-consistent 5-class checkpoint describes itself: it runs and draws its own classes."""
    clip, folder = media.clip(tmp_path, frames=4), tmp_path / "m"
    folder.mkdir()
    stats = tmp_path / "stats.json"
    result = segment(tmp_path, clip, models.five_class_checkpoint(folder), "--stats-json", stats)
    assert result.code == 0, result.output
    assert media.frames_in(tmp_path / "clip_seg.mp4") == 4
    summary = json.loads(stats.read_text())
    assert set(summary["class_shares"]) <= {"road", "car", "person", "sky", "other"}
    assert summary["backend"].split()[0] in ("torch", "onnx", "openvino"), summary["backend"]  # what ran, self-described


# --- outputs that cannot be written -----------------------------------------------------------

def test_output_in_missing_folder(model, tmp_path):
    clip = media.clip(tmp_path)
    out = places.output_in_missing_folder(tmp_path)
    refused_cleanly(tmp_path, clip, model, "-o", out, words=("no_such_folder", "does not exist"))


def test_output_under_a_file(model, tmp_path):
    clip = media.clip(tmp_path)
    out = places.output_under_a_file(tmp_path)
    refused_cleanly(tmp_path, clip, model, "-o", out, words=("notes.txt", "not a folder"))


@pytest.mark.parametrize("name", ["out.xyz", "out"], ids=["unknown suffix", "no suffix"])
def test_output_without_a_container_format(name, model, tmp_path):
    clip = media.clip(tmp_path)
    refused_cleanly(tmp_path, clip, model, "-o", tmp_path / name, words=(name, "no container"))


def test_stats_json_in_missing_folder_fails_before_any_work(model, tmp_path):
    clip = media.clip(tmp_path)
    refused_cleanly(tmp_path, clip, model, "-o", tmp_path / "out.mp4", "--stats-json", tmp_path / "nodir" / "s.json",
                    words=("--stats-json", "nodir", "does not exist"))


def test_existing_stats_json_is_kept_without_overwrite(model, tmp_path):
    clip = media.clip(tmp_path)
    stats = tmp_path / "stats.json"
    stats.write_text('{"mine": 1}')
    refused_cleanly(tmp_path, clip, model, "-o", tmp_path / "out.mp4", "--stats-json", stats,
                    words=("stats.json", "already exists", "--overwrite"))
    assert stats.read_text() == '{"mine": 1}'


def test_output_in_read_only_folder(model, tmp_path):
    clip = media.clip(tmp_path)
    with places.read_only_folder(tmp_path) as folder:
        refused_cleanly(tmp_path, clip, model, "-o", folder / "out.mp4", words=("read_only", "not writable"))


def test_existing_output_is_not_overwritten(model, tmp_path):
    clip = media.clip(tmp_path)
    mine = tmp_path / "clip_seg.mp4"
    mine.write_bytes(b"the user's own file")
    refused_cleanly(tmp_path, clip, model, words=("clip_seg.mp4", "--overwrite"))
    assert mine.read_bytes() == b"the user's own file"


def test_output_onto_the_input_is_refused_even_with_overwrite(model, tmp_path):
    clip = media.clip(tmp_path)
    refused_cleanly(tmp_path, clip, model, "-o", clip, "--overwrite", words=("clip.mp4", "input"))


def test_full_disk_by_file_size_limit(model, tmp_path):
    """RLIMIT_FSIZE makes writes past 8 KiB fail with EFBIG, as a full disk fails them with ENOSPC."""
    clip = media.clip(tmp_path, frames=60, size=(96, 128))
    refused_cleanly(tmp_path, clip, model, "-o", tmp_path / "out.mp4", words=("out.mp4", "cannot write"),
                    file_size_limit=8 * 1024)


def test_failed_overwrite_keeps_the_old_output(model, tmp_path):
    """--overwrite replaces the old file only once the new one is complete: a write failure keeps it."""
    clip, old = media.clip(tmp_path, frames=60, size=(96, 128)), tmp_path / "out.mp4"
    old.write_bytes(b"last week's result")
    refused_cleanly(tmp_path, clip, model, "-o", old, "--overwrite", words=("out.mp4", "cannot write"),
                    file_size_limit=8 * 1024)
    assert old.read_bytes() == b"last week's result"


def test_full_disk_tmpfs(model, tmp_path):
    clip = media.clip(tmp_path, frames=60, size=(96, 128))
    with places.tiny_disk(tmp_path, "16k") as disk:
        refused_cleanly(tmp_path, clip, model, "-o", disk / "out.mp4", words=("out.mp4", "no space left"))
        assert places.listing(disk) == set()


# --- valid but odd inputs: processed, not rejected -----------------------------------------

def probe(path: Path) -> dict:
    with av.open(str(path), metadata_errors="replace") as container:
        frames = list(container.decode(video=0))
    return {"frames": len(frames), "size": (frames[0].width, frames[0].height),
            "rotation": frames[0].rotation, "pts_s": [float(f.pts * f.time_base) for f in frames]}


def even(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] + size[0] % 2, size[1] + size[1] % 2


ODD_MEDIA: dict[str, Callable[[Path], Path]] = {
    "1x1": media.one_by_one, "479x359": media.odd_size, "portrait 2160x3840": media.tall_portrait,
    "10-bit": media.ten_bit, "yuv444p": media.yuv444, "gray": media.gray, "variable frame rate": media.variable_rate,
    "rotated 90": media.rotated, "non-UTF-8 title": media.bad_metadata, "still png": media.still_png, "still jpeg": media.still_jpeg,
}


@pytest.mark.parametrize("case", ODD_MEDIA)
def test_odd_but_valid_media_is_processed(case, model, tmp_path):
    source = ODD_MEDIA[case](tmp_path)
    digest, out = sha256(source), tmp_path / "out.mp4"
    result = segment(tmp_path, source, model, "-o", out)
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    assert not [line for line in result.stderr.splitlines() if line.startswith("[")], result.stderr  # library logs
    before, after = probe(source), probe(out)
    assert after["frames"] == before["frames"]
    assert after["size"] == even(before["size"])
    assert after["rotation"] == before["rotation"]
    if len(before["pts_s"]) > 1:
        assert after["pts_s"] == pytest.approx(before["pts_s"], abs=1e-3)  # VFR timing kept
    assert sha256(source) == digest
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_frame_size_change_midway_is_processed(model, tmp_path):
    """4 frames at 64x48 then 4 at 96x80: all 8 come out, at the first size (the MP4 track has one size)."""
    source = media.size_change(tmp_path)
    result = segment(tmp_path, source, model, "-o", tmp_path / "out.mp4")
    assert result.code == 0, result.output
    after = probe(tmp_path / "out.mp4")
    assert after["frames"] == media.frames_in(source) == 8
    assert after["size"] == (64, 48)
    assert "warning: frame 4 is 96x80, the video 64x48" in result.stderr


def test_truncated_file_with_index_first_keeps_the_readable_frames(model, tmp_path):
    source = media.truncated_indexed(tmp_path)
    result = segment(tmp_path, source, model, "-o", tmp_path / "out.mp4")
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    readable = media.frames_in(source)
    assert 0 < readable < 30
    assert probe(tmp_path / "out.mp4")["frames"] == readable
    assert f"decoded {readable} of the 30 frames" in result.stderr and "truncated" in result.stderr


@pytest.mark.parametrize("option", [("--alpha", "3"), ("--batch", "0"), ("--view", "hologram"), ("--preset", "warp9")],
                         ids=["alpha", "batch", "view", "preset"])
def test_bad_option_is_a_usage_error(option, model, tmp_path):
    clip = media.clip(tmp_path)
    before = places.listing(tmp_path)
    result = segment(tmp_path, clip, model, *option)
    assert result.code == USAGE, result.output
    assert "Traceback" not in result.output and option[0] in result.stderr
    assert places.listing(tmp_path) == before
