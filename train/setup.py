"""Building a run's parts from its config: data, model, optimiser, schedule."""
from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, get_worker_info

from streamseg import cpu
from streamseg.checkpoint import ModelInfo, load_state
from streamseg.data import CamVid, DataError, EvalTransform
from streamseg.evaluate import autocast
from streamseg.models import resolve
from streamseg.preprocess import scaled_size

from .config import TrainConfig, weighted
from .losses import CLASS_WEIGHTS, build_loss
from .transforms import ThinPaste, thin_cutouts, train_transform


def setup_distributed() -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE; NCCL on CUDA, gloo on CPU."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # set per worker by the DataLoader's generator
    np.random.seed(seed)
    random.seed(seed)
    seed_transform(get_worker_info().dataset, seed)


def seed_transform(dataset: CamVid, seed: int) -> None:
    """Albumentations 2 keeps its own RNG, deaf to np.random/random seeds: seed it explicitly."""
    if hasattr(dataset.transform, "set_random_seed"):
        dataset.transform.set_random_seed(seed)


def seed_epoch(loader: DataLoader, dataset: CamVid, seed: int, epoch: int, rank: int) -> None:
    """Shuffle order, worker seeds, augmentations and dropout depend on (seed, epoch, rank)
    only, so a resumed run (every rank of it) sees exactly what the uninterrupted run saw."""
    epoch_seed = seed * 100_003 + epoch + rank * 1_000_003
    seed_everything(epoch_seed % 2**32)  # dropout & co.; the resume file's RNG state is saved for rank 0 only
    loader.generator.manual_seed(epoch_seed)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    seed_transform(dataset, epoch_seed % 2**32)  # used when workers == 0 (workers reseed their copy)


class ShardSampler(Sampler[int]):
    """Every `world`-th index from `rank`: each val image is evaluated exactly once across
    ranks (DistributedSampler pads with repeats, which would bias the summed confusion matrix)."""

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, length, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_data(cfg: TrainConfig, info: ModelInfo, rank: int = 0,
               world: int = 1) -> tuple[CamVid, CamVid, DataLoader, DataLoader]:
    probe = CamVid(cfg.data, cfg.train_split, lambda **kw: kw, label_format=cfg.label_format, classes=cfg.classes)
    void = probe.ignore_index
    transform = train_transform(cfg, info.mean, info.std, void, probe.classes)
    if cfg.paste > 0:
        transform = ThinPaste(transform, thin_cutouts(probe, cfg.paste_class), cfg.paste)
    train_set = CamVid(cfg.data, cfg.train_split, transform, label_format=cfg.label_format, classes=cfg.classes)
    val_set = CamVid(cfg.data, cfg.val_split, EvalTransform(info.mean, info.std),
                     label_format=cfg.label_format, classes=cfg.classes)
    if math.ceil(len(train_set) / world) < cfg.batch_size:  # drop_last would leave no step at all
        raise DataError(f"{len(train_set)} training images are fewer than one batch of {cfg.batch_size} "
                        f"per process; lower --batch-size")
    pin = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(cfg.seed)
    train_sampler = DistributedSampler(train_set, seed=cfg.seed) if world > 1 else None
    val_sampler = ShardSampler(len(val_set), rank, world) if world > 1 else None
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=train_sampler is None,
                              sampler=train_sampler, num_workers=cfg.workers, pin_memory=pin, drop_last=True,
                              worker_init_fn=_seed_worker, generator=generator)
    val_loader = DataLoader(val_set, batch_size=1, sampler=val_sampler, num_workers=cfg.workers, pin_memory=pin)
    return train_set, val_set, train_loader, val_loader


def build_criterion(cfg: TrainConfig, train_set: CamVid):
    weights = None
    if weighted(cfg.loss):
        masks = (train_set.read_mask(label) for _, label in train_set.pairs)
        weights = CLASS_WEIGHTS[cfg.class_weights](masks, len(train_set.classes), train_set.ignore_index)
    return build_loss(cfg.loss, train_set.ignore_index, weights), weights


def parse_option(text: str) -> tuple[str, Any]:
    """`base_channels=12` → ("base_channels", 12): numbers and true/false typed, anything else a string."""
    key, found, value = (part.strip() for part in text.partition("="))
    if not found or not key:
        raise ValueError(f"--model-option {text!r}: expected KEY=VALUE, e.g. encoder=classic")
    if key in ("pretrained_backbone", "dropout"):  # flags of their own, recorded in the config
        raise ValueError(f"--model-option {text!r}: use --{key.replace('_', '-')}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def model_info(cfg: TrainConfig, classes: tuple[str, ...], palette: tuple, frame_size: tuple[int, int]
               ) -> ModelInfo:
    """What the checkpoints will say; `frame_size` is the val frames' (H, W)."""
    options = dict(map(parse_option, cfg.model_option))
    if cfg.pretrained_backbone:
        options["pretrained_backbone"] = True
    if cfg.dropout is not None:
        options["dropout"] = cfg.dropout
    arch, options = resolve(cfg.model, **options)
    options.pop("pretrained_backbone", None)  # the file holds the weights; never re-download on load
    return ModelInfo(name=cfg.model, arch=arch, options=options, classes=classes, palette=palette,
                     input_size=scaled_size(frame_size, cfg.input_scale))


def build_network(cfg: TrainConfig, info: ModelInfo) -> nn.Module:
    from streamseg.models import build_model
    extra = {"pretrained_backbone": True} if cfg.pretrained_backbone else {}
    model = build_model(info.arch, info.num_classes, **info.options, **extra)
    if cfg.init:
        init_from(model, cfg.init)
    return model


def _backbone_part(key: str) -> str | None:
    """`encoder.backbone.body.3.0.weight` and `backbone.body.3.0.weight` → `body.3.0.weight`."""
    _, found, rest = key.partition("backbone.")
    return rest if found else None


def init_from(model: nn.Module, path: str) -> list[str]:
    """Load our own checkpoint's weights where shapes match (a new head stays random).

    Backbone tensors also carry across architectures that share a backbone (an
    fcn's MobileNetV3 into a MobileNetV3 UNet), matched by their name inside it.
    """
    own = model.state_dict()
    state = load_state(path)
    by_backbone = {part: v for k, v in state.items() if (part := _backbone_part(k))}
    for key in own.keys() - state.keys():
        part = _backbone_part(key)
        if part in by_backbone:
            state[key] = by_backbone[part]
    usable = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    skipped = sorted(set(own) - set(usable))
    if skipped:
        print(f"init: {len(usable)} tensors from {path}; re-initialised {len(skipped)} (e.g. {skipped[0]})")
    return skipped


def frozen_part(model: nn.Module, part: str | None) -> nn.Module | None:
    """The submodule `--freeze` names (None without one); a model without it is an error."""
    if part is None:
        return None
    module = getattr(model, part, None)
    if module is None:
        raise ValueError(f"--freeze {part}: this model has no {part}")
    return module


def set_frozen(model: nn.Module, part: str | None, frozen: bool) -> None:
    module = frozen_part(model, part)
    if module is None:
        return
    for p in module.parameters():
        p.requires_grad_(not frozen)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()  # frozen ones get no grad, so optimisers skip them
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """Per-iteration multiplier: linear warm-up, then constant / poly(0.9) / cosine."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.epochs * steps_per_epoch - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / total, 1.0)
        if cfg.schedule == "poly":
            return (1 - progress) ** 0.9
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0
    return factor



def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """float16 on CUDA; bfloat16 on a CPU that computes it natively (AMX / AVX512_BF16); None
    (float32) on other CPUs, where bf16 is emulated and slower. On a native-bf16 CPU bf16 is
    only a candidate: `faster_cpu_precision` decides."""
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu.native_bf16() else None


def ramped_ema(decay: float):
    """`AveragedModel`'s update for an EMA whose decay ramps up from 0 (as Ultralytics' ModelEMA):
    decay · (1 − exp(−n / τ)) at update n, τ a fifth of the average's horizon 1 / (1 − decay).

    A fixed decay keeps decay^n of the starting weights in the average: from scratch, 16% of the
    random initialisation after 180 steps at 0.99, which measured val mIoU 0.027 against the raw
    model's 0.313 (docs/results/README.md). With the ramp the average follows the model early on
    and averages over its full horizon once the weights have settled."""
    tau = 0.2 / (1 - decay)

    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        get_ema_multi_avg_fn(decay * (1 - math.exp(-float(num_averaged) / tau)))(ema_params, params, num_averaged)
    return update


BF16_MARGIN = 0.9  # bf16 autocast is kept only if its step takes under 90% of float32's


def step_seconds(net: nn.Module, criterion, shape: tuple[int, int, int, int], num_classes: int,
                 amp_dtype: torch.dtype | None, channels_last: bool, steps: int = 2) -> float:
    """Seconds per training step of a copy of `net` on a random batch (after one warm-up step,
    which pays oneDNN's kernel creation); `net` itself is not touched."""
    model = copy.deepcopy(net).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with torch.random.fork_rng(devices=[]):  # random inputs and dropout draw from a copy of the RNG
        image = torch.randn(shape)
        image = image.contiguous(memory_format=torch.channels_last) if channels_last else image
        target = torch.randint(0, num_classes, (shape[0], *shape[2:]))
        for i in range(steps + 1):
            if i == 1:
                start = time.perf_counter()
            with autocast("cpu", amp_dtype):
                loss = criterion(model(image), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / steps


def faster_cpu_precision(cfg: TrainConfig, net: nn.Module, criterion, num_classes: int) -> tuple[torch.dtype | None,
                                                                                                  str]:
    """bfloat16 autocast or float32, whichever trains this model faster on this CPU, measured.

    Native bf16 is not faster for every layer mix: on one AMX core (Xeon, 2026-11) unet trains
    1.5x faster in bf16, but the MobileNetV3 fcn and deeplab presets (depthwise convolutions)
    1.2-1.4x slower. Costs a few training steps at start-up."""
    shape = (cfg.batch_size, 3, cfg.crop_height, cfg.crop_width)
    seconds = {dtype: step_seconds(net, criterion, shape, num_classes, dtype, cfg.channels_last)
               for dtype in (None, torch.bfloat16)}
    # bf16 must win clearly: it costs precision, and a near tie is timing noise (tiny models) that would
    # make two runs of one config train differently.
    chosen = torch.bfloat16 if seconds[torch.bfloat16] < BF16_MARGIN * seconds[None] else None
    note = (f"precision check on cpu: float32 {seconds[None]:.2f} s/step, bfloat16 {seconds[torch.bfloat16]:.2f} "
            f"s/step → {'bfloat16' if chosen else 'float32'}")
    return chosen, note
