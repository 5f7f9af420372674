"""The training run's configuration: one frozen dataclass, saved with every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    model: str = "deeplab"
    data: str = "../shared/data/camvid"
    out: str = "runs/deeplab"
    train_split: str = "train"
    val_split: str = "val"
    label_format: str = "auto"          # index | color | auto (detects *_L.png colour labels)
    classes: str = "camvid11"           # camvid11 | camvid32 (colour layout only)
    epochs: int = 20                    # the seed study's default
    lr: float = 1e-3                    # the seed study's default
    batch_size: int = 8
    workers: int = 2
    optimizer: str = "adamw"            # adam | adamw | sgd | rmsprop
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "poly"              # constant | poly | cosine (poly power 0.9, as DeepLab)
    warmup_epochs: int = 0
    loss: str = "ce"                    # ce | wce (median-frequency weights) | dice | ce+dice
    crop_height: int = 256
    crop_width: int = 256
    scale_min: float = 0.5              # random scale range: the usual CamVid augmentation
    scale_max: float = 2.0
    hflip: bool = True
    vflip: bool = False                 # off by default: road scenes have a fixed "up"
    rotate: float = 10.0                # degrees
    color_jitter: float = 0.2
    dropout: float | None = None        # None keeps the architecture's paper default
    ema: float = 0.0                    # EMA decay of the weights (e.g. 0.999); 0 = off
    patience: int = 0                   # early stopping on val mIoU; 0 disables it
    seed: int = 0
    amp: bool = True                    # CUDA only; CPU trains in float32
    channels_last: bool = False
    init: str | None = None             # our own checkpoint to start from
    pretrained_backbone: bool = False   # torchvision ImageNet weights (needs internet or a cache)
    freeze: str | None = None           # backbone | encoder
    unfreeze_after: int = 0             # epochs; 0 keeps the freeze for the whole run
    resume: str | None = None
    threads: int = 0                    # torch CPU threads; 0 = torch's default

    def to_dict(self) -> dict:
        return asdict(self)
