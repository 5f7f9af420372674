"""Model files for the bad-input corpus: a tiny good checkpoint and broken or hostile ones.

All are built with `streamseg.checkpoint.save_checkpoint` from a random-init
UNet with 4 base channels and depth 2 at a 48x64 input, so they cost
milliseconds to load and run.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from streamseg.checkpoint import ModelInfo, save_checkpoint

TINY = {"encoder": "classic", "base_channels": 4, "depth": 2}


def tiny_info(classes: tuple[str, ...] | None = None) -> ModelInfo:
    extra = {}
    if classes is not None:
        extra = {"classes": classes, "palette": tuple((37 * i % 256, 91 * i % 256, 53 * i % 256)
                                                      for i in range(len(classes)))}
    return ModelInfo.for_model("unet", options=dict(TINY), input_size=(48, 64), **extra)


def tiny_checkpoint(folder: Path, name: str = "tiny.safetensors") -> Path:
    torch.manual_seed(0)
    info = tiny_info()
    return save_checkpoint(folder / name, info.build(), info)


def five_class_checkpoint(folder: Path) -> Path:
    """A consistent checkpoint for another class count (5): valid, it describes itself."""
    torch.manual_seed(0)
    info = tiny_info(("road", "car", "person", "sky", "other"))
    return save_checkpoint(folder / "five_classes.safetensors", info.build(), info)


def mismatched_classes(folder: Path) -> Path:
    """Weights for a 5-class head under metadata that says 11 CamVid classes."""
    torch.manual_seed(0)
    five = tiny_info(("road", "car", "person", "sky", "other"))
    return save_checkpoint(folder / "mismatched.safetensors", five.build(), tiny_info())


def corrupt_safetensors(folder: Path) -> Path:
    """A valid file with its header length and JSON scrambled."""
    good = tiny_checkpoint(folder, "good_for_corrupt.safetensors").read_bytes()
    path = folder / "corrupt.safetensors"
    path.write_bytes(b"\xff" * 8 + good[8:64].replace(b'"', b"#") + good[64:])
    (folder / "good_for_corrupt.safetensors").unlink()
    return path


def truncated_safetensors(folder: Path) -> Path:
    """The header is intact but the tensor data stops halfway (an interrupted download)."""
    good = tiny_checkpoint(folder, "good_for_cut.safetensors").read_bytes()
    path = folder / "truncated.safetensors"
    path.write_bytes(good[: len(good) // 2])
    (folder / "good_for_cut.safetensors").unlink()
    return path


class _RunsCode:
    """Unpickling this calls `open(marker, 'w')`: proof that the file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickle_bomb(folder: Path, marker: Path, name: str = "evil.pt") -> Path:
    """A `.pt` file whose unpickling creates `marker`; loading it must never get that far."""
    path = folder / name
    with open(path, "wb") as out:
        pickle.dump({"state_dict": _RunsCode(marker)}, out)
    return path


def torch_pickle_bomb(folder: Path, marker: Path) -> Path:
    """The same payload in `torch.save`'s zip format, as a `.pth` file from a model hub would be."""
    path = folder / "evil.pth"
    torch.save({"state_dict": _RunsCode(marker)}, path)
    return path


def unknown_model_name() -> str:
    return "segformer-b9000"
