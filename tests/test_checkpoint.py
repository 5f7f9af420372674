"""Checkpoints: safetensors round trips, metadata, mismatches, corrupt files, no unpickling."""
from __future__ import annotations

import json
import os
import pickle
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.hub
from safetensors import safe_open
from safetensors.torch import save_file

from streamseg.checkpoint import (
    CheckpointError,
    ModelInfo,
    atomic_write,
    check_model,
    load_checkpoint,
    model_name,
    read_info,
    resolve_checkpoint,
    save_checkpoint,
    shipped_weights,
)
from streamseg.models import build_model

TINY = {"encoder": "classic", "base_channels": 4, "depth": 2}


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights and non-trivial batch-norm statistics, so buffers are checked too."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
        model.train()
        for _ in range(2):
            model(torch.randn(2, 3, 32, 48))
    return model.eval()


@pytest.fixture
def tiny() -> tuple[torch.nn.Module, ModelInfo]:
    info = ModelInfo.for_model("unet", options=TINY, input_size=(48, 64),
                               training={"epochs": 3, "val": {"miou": 0.51, "per_class": [0.1, 0.9]}})
    return _trained_looking(build_model("unet", **TINY)), info


def _logits(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(2)
    with torch.no_grad():
        return model(torch.randn(2, 3, 45, 61))


def test_fp32_round_trip_is_exact(tmp_path: Path, tiny) -> None:
    model, info = tiny
    path = save_checkpoint(tmp_path / "m.safetensors", model, info)
    loaded, loaded_info = load_checkpoint(path)
    assert not loaded.training
    assert loaded_info == info
    assert torch.equal(_logits(loaded), _logits(model))


def test_half_storage_round_trip(tmp_path: Path, tiny) -> None:
    model, info = tiny
    with torch.no_grad():  # weights that FP16 holds exactly, so outputs must match to the bit
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    full = save_checkpoint(tmp_path / "full.safetensors", model, info)
    half = save_checkpoint(tmp_path / "half.safetensors", model, info, half=True)
    with safe_open(str(half), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 — not a dict
    assert dtypes == {torch.float16, torch.int64}  # num_batches_tracked stays an integer
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert torch.equal(_logits(loaded), _logits(model))


def test_metadata_survives(tmp_path: Path) -> None:
    model = build_model("unet", num_classes=3, **TINY)
    info = ModelInfo.for_model("unet", options=TINY, classes=("road", "car", "other"),
                               palette=((1, 2, 3), (4, 5, 6), (7, 8, 9)), mean=(0.5, 0.5, 0.5),
                               std=(0.25, 0.25, 0.25), input_size=(360, 480),
                               training={"epochs": 80, "best": {"epoch": 71, "miou": 0.62}, "lr": 0.01})
    path = save_checkpoint(tmp_path / "m.safetensors", model, info)
    assert read_info(path) == info
    _, loaded_info = load_checkpoint(path)
    assert loaded_info.num_classes == 3
    assert loaded_info.arch == "unet" and loaded_info.options == {"encoder": "classic", "base_channels": 4, "depth": 2}
    assert loaded_info.training["best"] == {"epoch": 71, "miou": 0.62}


def test_for_model_resolves_presets() -> None:
    info = ModelInfo.for_model("deeplab")
    assert (info.name, info.arch) == ("deeplab", "deeplabv3plus")
    assert info.options == {"backbone": "mobilenet_v3_large", "output_stride": 16}
    assert info.num_classes == 11 and info.input_size == (360, 480)


def test_saving_replaces_atomically_with_normal_permissions(tmp_path: Path, tiny) -> None:
    model, info = tiny
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")
    old_mask = os.umask(0o022)
    try:
        save_checkpoint(path, model, info)
    finally:
        os.umask(old_mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
    assert read_info(path) == info


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.bin"
    path.write_bytes(b"precious")

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


# --- files that do not match ----------------------------------------------------------------------

def test_other_class_count_names_the_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("unet", num_classes=5, **TINY),
                           ModelInfo.for_model("unet", options=TINY))  # metadata says 11 classes
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "11 classes" in message and "\n" not in message
    assert "shape mismatch: classifier.weight (5, 4, 1, 1) vs (11, 4, 1, 1)" in message


def test_other_architecture_names_the_mismatch(tmp_path: Path) -> None:
    unet = build_model("unet", **TINY)
    deeper = save_checkpoint(tmp_path / "deeper.safetensors", unet,
                             ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 3}))
    with pytest.raises(CheckpointError, match=r"does not match the architecture .*missing: encoder\.levels\.3"):
        load_checkpoint(deeper)
    other = save_checkpoint(tmp_path / "other.safetensors", unet, ModelInfo.for_model("deeplab"))
    with pytest.raises(CheckpointError, match=r"\(metadata: deeplabv3plus, 11 classes\) does not match the "
                                              r"architecture \(.*missing: backbone\..*; unexpected: "):
        load_checkpoint(other)


def test_unknown_architecture_in_metadata(tmp_path: Path, tiny) -> None:
    model, _ = tiny
    path = save_checkpoint(tmp_path / "m.safetensors", model, ModelInfo(name="segformer", arch="segformer"))
    with pytest.raises(CheckpointError, match="unknown model 'segformer'"):
        load_checkpoint(path)


def test_stored_pretrained_flag_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    info = ModelInfo.for_model("deeplab", options={"pretrained_backbone": True})
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("deeplab"), info)
    _, loaded_info = load_checkpoint(path)
    assert loaded_info.options["pretrained_backbone"] is True


def _valid_bytes(tmp_path: Path) -> bytes:
    model = build_model("unet", **TINY)
    return save_checkpoint(tmp_path / "valid.safetensors", model, ModelInfo.for_model("unet", options=TINY)).read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "header-only", "empty", "garbage"])
def test_corrupt_files_raise_checkpoint_error(tmp_path: Path, damage: str) -> None:
    data = _valid_bytes(tmp_path)
    header = 8 + int.from_bytes(data[:8], "little")
    broken = {"truncated": data[: len(data) // 2], "header-only": data[:header], "empty": b"",
              "garbage": os.urandom(4096)}[damage]
    path = tmp_path / "broken.safetensors"
    path.write_bytes(broken)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    assert shipped_weights("no-such-model") is None


@pytest.mark.parametrize(("metadata", "says"), [
    (None, "no streamseg metadata"),
    ({"format": "pt"}, "no streamseg metadata"),
    ({"streamseg": json.dumps({"format": "someone-else/1"})}, "not a streamseg checkpoint"),
    ({"streamseg": "[1, 2]"}, "not a streamseg checkpoint"),
    ({"streamseg": "{not json"}, "bad metadata"),
    ({"streamseg": json.dumps({"format": "streamseg-checkpoint/1", "name": "unet"})}, "bad metadata"),
])
def test_foreign_safetensors_files(tmp_path: Path, metadata: dict | None, says: str) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=says):
        load_checkpoint(path)


# --- pickles are never unpickled ------------------------------------------------------------------

class Payload:
    """Unpickling this creates `marker`: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_payload_is_live(tmp_path: Path) -> None:
    """The control: plain unpickling does run the payload, so the test below means something."""
    marker = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_pickle_files_are_rejected_without_running_code(tmp_path: Path, writer: str, name: str) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / name
    state = {"state_dict": {"w": torch.zeros(2)}, "hook": Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        read_info(path)
    assert not marker.exists()


@pytest.mark.parametrize("spelling", ["deeplab", "DeepLab", "DEEPLAB"])
def test_preset_names_are_case_insensitive(spelling: str) -> None:
    assert resolve_checkpoint(spelling) == shipped_weights("deeplab")
    assert check_model(spelling) == "deeplab" and model_name(spelling) == "deeplab"  # exports keep one file name


@pytest.mark.parametrize("typo, meant", [("deeplb", "deeplab"), ("Unte", "unet"), ("fnc", "fcn")])
def test_a_mistyped_preset_suggests_the_closest_name(typo: str, meant: str) -> None:
    with pytest.raises(CheckpointError, match=f"unknown model '{typo}'; did you mean '{meant}'\\?"):
        check_model(typo)


def test_an_unrelated_name_gets_the_list_and_no_guess() -> None:
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("segformer-b9000")
    assert "did you mean" not in str(caught.value) and "use one of fcn, unet, deeplab" in str(caught.value)


def test_an_architecture_name_says_it_has_no_weights_yet() -> None:
    with pytest.raises(CheckpointError, match="'DeepLabV3Plus' is an architecture without shipped weights; train it "
                                              "with `python -m train --model deeplabv3plus`"):
        check_model("DeepLabV3Plus")


def test_a_missing_model_file_suggests_the_file_beside_it(tmp_path: Path) -> None:
    (tmp_path / "best.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=f"model file not found: .*best.safetensor; did you mean "
                                              f"{tmp_path / 'best.safetensors'}\\?"):
        check_model(str(tmp_path / "best.safetensor"))
    with pytest.raises(CheckpointError, match="model file not found"):
        check_model(str(tmp_path / "model.onnx"))  # exported files are checked as files too
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert check_model(str(tmp_path / "model.onnx")) == str(tmp_path / "model.onnx")
