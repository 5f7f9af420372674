"""Resumable training state, written atomically and read without executing code.

`last.safetensors`/`best.safetensors` are ordinary model checkpoints (what
`streamseg` loads). `last.resume.pt` holds everything needed to continue
exactly: weights, optimizer, scheduler step, epoch, RNG states, early-stopping
state and history. It contains only tensors and plain Python values, so it
loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamseg.checkpoint import atomic_write

from .config import TrainConfig

RESUME_NAME = "last.resume.pt"


@dataclass
class RunState:
    """Where a run stands after its last finished epoch. Stored in the resume file as a
    plain dict (`asdict`), so `torch.load(weights_only=True)` can read it back."""
    epoch: int = 0                  # last finished epoch (0: none yet)
    best_miou: float = -1.0         # any real mIoU beats it
    best_epoch: int = 0
    stale: int = 0                  # epochs since the last val mIoU gain, for --patience
    seconds: float = 0.0            # train + val time so far, resumed runs included
    history: list[dict] = field(default_factory=list)  # one history.csv row per epoch


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "cached": cached},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(out: Path, payload: dict[str, Any]) -> Path:
    return atomic_write(out / RESUME_NAME, lambda tmp: torch.save(payload, tmp))


def resume_path(spec: str) -> Path:
    """`runs/x`, `runs/x/last`, or the file itself → the resume file."""
    path = Path(spec)
    for candidate in (path, path / RESUME_NAME, path.parent / RESUME_NAME):
        if candidate.is_file() and candidate.name == RESUME_NAME:
            return candidate
    raise FileNotFoundError(f"no {RESUME_NAME} found for --resume {spec}")


def load_resume(spec: str) -> dict[str, Any]:
    return torch.load(resume_path(spec), map_location="cpu", weights_only=True)


def resumed_config(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """The saved run's config, overridden only by the flags given on this command line
    (e.g. a larger --epochs); `--out` defaults to the folder the resume file is in."""
    path = resume_path(cfg.resume)
    saved = load_resume(str(path)).get("config", {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    merged = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in fields}  # JSON lists
    merged.update({k: getattr(cfg, k) for k in given})
    if "out" not in given:
        merged["out"] = str(path.parent)
    return TrainConfig(**{**merged, "resume": cfg.resume})
