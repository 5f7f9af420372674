"""`--backend auto` on CPU: candidates timed once, the choice cached under model hash, CPU and versions."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from streamseg.backends import BackendError, autochoice
from streamseg.backends.autochoice import Candidate, cache_key, choose_cpu_backend, measure_all, read_choice
from streamseg.checkpoint import ModelInfo, file_sha256, save_checkpoint
from streamseg.export.run import cache_onnx
from streamseg.runtime import load_backend


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2}, input_size=(48, 64))
    folder = tmp_path_factory.mktemp("auto")
    checkpoint = save_checkpoint(folder / "tiny.safetensors", info.build(), info)
    return cache_onnx(checkpoint, folder / "engines" / "tiny.onnx", log=lambda _: None)


class Fake:
    def __init__(self, name: str) -> None:
        self.name = name


def test_fastest_candidate_wins_and_broken_ones_are_skipped() -> None:
    timings = {"onnx fp32": 40.8, "openvino fp32": 45.5, "openvino bf16": 93.6}

    def broken() -> Fake:
        raise BackendError("no such runtime")

    found = [Candidate(name, lambda n=name: Fake(n)) for name in timings] + [Candidate("onnx int8", broken)]
    lines: list[str] = []
    chosen, fps, backend = measure_all(found, lambda b: timings[b.name], lines.append)
    assert chosen == "openvino bf16" and backend.name == "openvino bf16" and fps == timings
    assert lines == ["auto: onnx int8 not usable here (no such runtime)"]
    with pytest.raises(BackendError, match="no CPU runtime"):
        measure_all([Candidate("onnx int8", broken)], lambda b: 1.0, lines.append)


def test_cache_key_covers_model_cpu_and_versions(onnx_file: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    key = cache_key(onnx_file, threads=2, batch=1)
    assert key == cache_key(onnx_file, threads=2, batch=1)
    assert key["model_sha256"] and "onnxruntime" in key["versions"]
    assert cache_key(onnx_file, threads=1, batch=1) != key and cache_key(onnx_file, threads=2, batch=4) != key
    copy = tmp_path / "tiny.onnx"
    copy.write_bytes(onnx_file.read_bytes() + b"\0")  # other bytes → other model hash
    assert cache_key(copy, threads=2, batch=1)["model_sha256"] != key["model_sha256"]
    monkeypatch.setattr(autochoice, "cpu_model", lambda: "Intel(R) Xeon(R) Platinum 8480+")
    assert cache_key(onnx_file, threads=2, batch=1) != key
    monkeypatch.undo()
    monkeypatch.setattr(autochoice, "library_versions", lambda: {"onnxruntime": "0.0"})
    assert cache_key(onnx_file, threads=2, batch=1) != key
    stored = tmp_path / "x.auto.json"
    autochoice.write_choice(stored, key, "onnx fp32", {"onnx fp32": 1.0})
    assert read_choice(stored, key)["chosen"] == "onnx fp32"
    assert read_choice(stored, {**key, "cpu": "other"}) is None
    stored.write_text("{not json")
    assert read_choice(stored, key) is None


def test_measured_once_then_cached(onnx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a file outside the cache (the user's engines/): the choice goes to the cache, keyed by the file's hash
    cache = Path(os.environ["STREAMSEG_CACHE"]) / "onnx" / f"tiny-{file_sha256(onnx_file)[:12]}.auto.json"
    cache.unlink(missing_ok=True)
    backend, reason = choose_cpu_backend(onnx_file, threads=1, batch=2, seconds=0.05)
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == ["tiny.onnx"]  # nothing beside the user's file
    data = json.loads(cache.read_text())
    assert data["chosen"] in data["fps"] and "onnx fp32" in data["fps"] and data["key"]["batch"] == 2
    assert reason.startswith(f"auto: {data['chosen']}, fastest measured") and "onnx fp32" in reason
    assert max(data["fps"], key=data["fps"].get) == data["chosen"]
    assert backend.predict(torch.zeros(2, 3, 48, 64).numpy()).shape == (2, 48, 64)

    def no_timing(*_):
        raise AssertionError("measured again")

    monkeypatch.setattr(autochoice, "frames_per_second", no_timing)
    again, reason = choose_cpu_backend(onnx_file, threads=1, batch=2)
    assert type(again) is type(backend) and "when measured" in reason and str(cache) in reason
    monkeypatch.setattr(autochoice, "cpu_model", lambda: "another CPU")
    with pytest.raises(AssertionError, match="measured again"):  # another CPU: the cache does not apply
        choose_cpu_backend(onnx_file, threads=1, batch=2)


def test_backend_flag_still_forces_one(onnx_file: Path) -> None:
    forced, reason = load_backend(str(onnx_file), "onnx", "cpu")
    assert forced.name == "onnx" and "auto" not in reason
