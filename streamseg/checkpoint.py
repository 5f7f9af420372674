"""Checkpoints: safetensors weights + JSON metadata in the same file's header.

The header's `streamseg` entry says everything needed to rebuild the model
(architecture, options, classes, palette, normalisation, training summary).
Loading parses JSON and raw tensors only — no pickle, no code execution.
torch (and the model zoo) is imported only by the functions that build or
load a network: the CPU runtimes run an exported file with no torch in the
process (issue 13: a third of the memory).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from .modelinfo import CheckpointError, ModelInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
PRESETS = ("fcn", "unet", "deeplab")  # streamseg.models.PRESETS' keys, without importing the zoo (and torch)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call `write(tmp_path)`, then rename into place, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file owner-only; give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | Path, model: nn.Module, info: ModelInfo, *, half: bool = False) -> Path:
    """Write weights (FP16 storage with `half`) and metadata atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"streamseg": info.to_json()}))


def read_info(path: str | Path) -> ModelInfo:
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only: no torch needed
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None
    if "streamseg" not in meta:
        raise CheckpointError(f"{path} has no streamseg metadata; was it written by `streamseg`/`python -m train`?")
    try:
        return ModelInfo.from_json(meta["streamseg"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: bad metadata ({error})") from None


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 — safe_open is not iterable
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a message that names the first mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''}"
                 for label, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected))
                 if items]
        raise CheckpointError(f"{source} does not match the architecture ({'; '.join(parts)})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Rebuild the model the file describes and load its weights (eval mode)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    info = read_info(path)
    try:
        model = info.build()
    except (ValueError, TypeError) as error:  # an unknown architecture or option in the metadata
        raise CheckpointError(f"{path}: {error}") from None
    load_weights(model, load_state(path), f"{path} (metadata: {info.arch}, {info.num_classes} classes)")
    return model.to(device).eval(), info


def shipped_weights(name: str) -> Path | None:
    """The packaged checkpoint for a preset name, if it was shipped."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path if path.is_file() else None


# Pickled weights (torch.save, Lightning, joblib) can run code when loaded, so they are never opened.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


# Files `--model` takes besides checkpoints; the backend that runs them opens them.
EXPORTED_SUFFIXES = (".onnx", ".engine")
MODEL_SUFFIXES = (".safetensors", *EXPORTED_SUFFIXES)


def preset_name(model: str) -> str | None:
    """The preset `model` names, in any case (`DeepLab` → `deeplab`), else None."""
    return model.lower() if model.lower() in PRESETS else None


def _missing_file(model: str) -> CheckpointError:
    """A model path that is not there; names the closest model file beside it."""
    path = Path(model)
    siblings = [p.name for p in path.parent.glob("*") if p.suffix.lower() in MODEL_SUFFIXES] \
        if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
    hint = f"; did you mean {path.parent / close[0]}?" if close else ""
    return CheckpointError(f"model file not found: {model}{hint}")


def _unknown_name(model: str) -> CheckpointError:
    from .models import MODELS, did_you_mean  # the zoo imports torch: only on this error path

    if model.lower() in MODELS:  # an architecture: it has no weights until trained
        return CheckpointError(f"{model!r} is an architecture without shipped weights; train it with `python -m train "
                               f"--model {model.lower()}` and pass --model runs/.../best.safetensors, or use a "
                               f"preset: {', '.join(PRESETS)}")
    return CheckpointError(f"unknown model {model!r}; {did_you_mean(model, list(PRESETS))}use one of "
                           f"{', '.join(PRESETS)}, a .safetensors checkpoint, an exported .onnx file or a "
                           "TensorRT .engine")


def resolve_checkpoint(model: str) -> Path:
    """`deeplab` (any case) → the shipped weights; a path → itself. Errors say what to do."""
    preset = preset_name(model)
    if preset is not None:
        path = shipped_weights(preset)
        if path is None:
            raise CheckpointError(f"no shipped weights for {preset!r}; train one with `python -m train --model "
                                  f"{preset}` and pass --model runs/.../best.safetensors")
        return path
    path = Path(model)
    if path.suffix.lower() in PICKLE_SUFFIXES:  # refused by name, before a byte is read
        raise CheckpointError(f"{model} is a pickle file, and loading one can run code, so streamseg never opens "
                              "them; convert it to .safetensors where you trust it (safetensors.torch.save_file)")
    if path.exists():
        if not path.is_file():
            raise CheckpointError(f"model file not found: {model} (it is a folder)")
        return path
    if path.suffix or len(path.parts) > 1:  # looks like a file, not a name
        raise _missing_file(model)
    raise _unknown_name(model)


def check_model(model: str) -> str:
    """What `--model` names, checked before any output is planned or anything is loaded
    (so a typo is the error, not an existing output). Returns its canonical spelling:
    the preset in lower case, or the path as given."""
    if Path(model).suffix.lower() in EXPORTED_SUFFIXES:
        if not Path(model).is_file():
            raise _missing_file(model)
        return model
    resolve_checkpoint(model)
    return preset_name(model) or model


def model_name(model: str) -> str:
    """The stem exported files of `model` carry: the preset name or the checkpoint's stem."""
    return preset_name(model) or Path(model).stem


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
