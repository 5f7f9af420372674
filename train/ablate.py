"""The seed study's question, measured: each knob varied alone around our recipe.

    python -m train.ablate run --data ../shared/data/camvid --out runs/ablate
    python -m train.ablate report --runs runs/ablate --out docs/results/ablations.md

`run` trains one short run per row of `ROWS` (the base recipe `BASE` with that
row's overrides) into `OUT/<row>/`, one after another in this process. A row
whose run finished is skipped and a row cut off mid-run is resumed, so the
command can be repeated after an interruption. `report` reads the run
directories only: what each row changed is the difference between its saved
config and the baseline's, not a label typed here.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import click

from .config import THIN_CLASSES, TrainConfig

# The base recipe at the short schedule every row shares: fcn (cheapest per epoch in float32), 4 epochs,
# 192x192 crops. Our long runs use the same recipe with 256x256 crops, EMA and a longer cosine schedule.
BASE = {"model": "fcn", "epochs": 4, "lr": 2e-3, "batch_size": 8, "workers": 1, "optimizer": "adamw",
        "weight_decay": 1e-4, "schedule": "cosine", "warmup_epochs": 0, "loss": "ce+dice", "crop_height": 192,
        "crop_width": 192, "scale_min": 0.5, "scale_max": 1.75, "hflip": True, "rotate": 10.0, "color_jitter": 0.2,
        "ema": 0.0, "seed": 1, "amp": False, "channels_last": True, "threads": 1}

CLASSIC_UNET = ("encoder=classic", "base_channels=8", "depth=4")

# Most telling first, so a cut-short campaign still answers the main questions.
ROWS: tuple[tuple[str, dict], ...] = (
    ("baseline", {}),
    ("seed-2", {"seed": 2}),  # the same recipe again: the noise floor every other row is read against
    ("seed-3", {"seed": 3}),
    ("seed-4", {"seed": 4}),
    ("loss-ce", {"loss": "ce"}),
    ("loss-wce", {"loss": "wce"}),
    ("loss-ohem", {"loss": "ohem"}),
    ("loss-ce+lovasz", {"loss": "ce+lovasz"}),  # the fcn chain's last restart's loss
    ("optimizer-sgd", {"optimizer": "sgd", "lr": 2e-2}),  # SGD needs its own (10x) learning rate
    ("optimizer-rmsprop", {"optimizer": "rmsprop", "lr": 1e-3}),  # FC-DenseNet's 1e-3
    ("no-augmentation", {"scale_min": 1.0, "scale_max": 1.0, "hflip": False, "rotate": 0.0, "color_jitter": 0.0}),
    ("rare-crop-0.5", {"rare_crop": 0.5}),  # half the crops centred on a thin-class pixel
    ("batch-4", {"batch_size": 4}),
    ("batch-16", {"batch_size": 16}),
    ("dropout-0", {"dropout": 0.0}),
    ("weight-decay-1e-3", {"weight_decay": 1e-3}),
    ("schedule-poly", {"schedule": "poly"}),
    ("ema-0.99", {"ema": 0.99}),  # a horizon of ~100 steps: about 2 of the 4 short epochs
    # Depth and width, within the FCN family on the same encoder: how many skips the decoder fuses
    # (FCN-32s/16s vs the preset's 8s), and the fc6/fc7 head's width (the preset's 256 halved, doubled).
    ("skips-fcn32s", {"model": "fcn32s", "model_option": ("backbone=mobilenet_v3_large",)}),
    ("skips-fcn16s", {"model": "fcn16s", "model_option": ("backbone=mobilenet_v3_large",)}),
    ("head-width-128", {"model_option": ("head_width=128",)}),
    ("head-width-512", {"model_option": ("head_width=512",)}),
    # float32 vs bfloat16 autocast, on unet: the preset that trains faster in bf16 on an AMX core, so
    # `--amp` picks it there (the table's precision column says what each run used).
    # The rows ran on the classic UNet (8 base channels, depth 4), the unet preset of the time.
    ("unet-float32", {"model": "unet", "model_option": CLASSIC_UNET}),
    ("unet-amp", {"model": "unet", "model_option": CLASSIC_UNET, "amp": True}),
    # Not a knob: the baseline trained without 0006R0 and validated on it, a sequence it has never seen.
    ("sequence-disjoint", {"train_split": "train:0001TP,0016E5", "val_split": "train:0006R0"}),
)


def row_config(name: str, overrides: dict, data: str, out: Path) -> TrainConfig:
    return TrainConfig(**{**BASE, **overrides, "data": data, "out": str(out / name)})


def history(run: Path) -> list[dict]:
    path = run / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_rows(data: str, out: Path, only: tuple[str, ...]) -> list[str]:
    """Train every row (or the named ones); returns the names of rows that failed."""
    from .run import train
    from .state import RESUME_NAME

    failed = []
    for name, overrides in ROWS:
        if only and name not in only:
            continue
        cfg = row_config(name, overrides, data, out)
        done = len(history(Path(cfg.out)))
        if done >= cfg.epochs:
            click.echo(f"{name}: done ({done} epochs)")
            continue
        if (Path(cfg.out) / RESUME_NAME).exists():
            cfg = dataclasses.replace(cfg, resume=cfg.out)
        click.echo(f"{name}: training ({'resumed' if cfg.resume else 'new'})", err=True)
        try:
            train(cfg)
        except (ValueError, OSError, RuntimeError) as error:  # one bad row must not end the campaign
            click.echo(f"{name}: failed: {error}", err=True)
            failed.append(name)
    return failed


def changed(config: dict, base: dict) -> str:
    """What a row's saved config changed from the baseline's (the bookkeeping fields aside)."""
    skip = {"out", "data", "resume"}
    diffs = [f"{key}={config.get(key)}" for key in config if key not in skip and config.get(key) != base.get(key)]
    return ", ".join(diffs) or "—"


def thin_iou(iou: dict) -> float | None:
    """Mean IoU of the thin classes present in the split (absent ones are null in metrics.json)."""
    present = [iou[c] for c in THIN_CLASSES if iou.get(c) is not None]
    return sum(present) / len(present) if present else None


def summarise(run: Path) -> dict | None:
    """Final epoch's losses and val metrics, the best epoch's mIoU and thin-class IoU, the saved config."""
    rows = history(run)
    if not rows or not (run / "metrics.json").exists():
        return None
    from streamseg.checkpoint import read_info

    best = json.loads((run / "metrics.json").read_text())
    last = rows[-1]
    training = read_info(run / "last.safetensors").training
    return {"config": training["config"], "precision": training.get("precision", "?"), "epochs": len(rows),
            "final_miou": float(last["mIoU"]), "best_miou": float(best["mIoU"]),
            "pixel_accuracy": float(last["pixel_accuracy"]), "train_loss": float(last["train_loss"]),
            "val_loss": float(last["val_loss"]), "thin_iou": thin_iou(best["iou"]),
            "seconds": sum(float(r["seconds"]) for r in rows)}


COLUMNS = ("row", "changed from the baseline", "precision", "val mIoU (final)", "Δ vs baseline", "best", "pixel acc.",
           "thin-class IoU", "train loss", "val loss", "gap (val − train)", "minutes")
NOTES = """
- *thin-class IoU*: mean IoU of Pole, SignSymbol, Fence, Pedestrian and Bicyclist at the best epoch.
- *gap*: final val loss minus final train loss, each in the row's own loss (compare gaps within a loss, not
  across the loss rows); train loss is measured on augmented crops, val loss on full frames.
- *precision*: what the training steps ran in. `--amp` on a CPU with native bf16 picks bfloat16 only where
  a few timed steps show it faster than float32 for that model.
- *seed-2* to *seed-4* repeat the baseline with other seeds: a Δ within their spread is noise.
- *rare-crop-0.5* centres half the training crops on a pixel of a thin class (`--rare-crop 0.5`); the
  other rows crop at random.
- *unet-float32*, *unet-amp* ran on the classic UNet (8 base channels, depth 4: the `unet` preset until
  2026-11-29; since then `--model-option encoder=classic --model-option base_channels=8 --model-option depth=4`).
- *sequence-disjoint* is validated on 0006R0, not on val: its Δ is how much val (a sequence that 204 of the
  367 train frames share) flatters the recipe, not the effect of a knob.
"""


def header(base: dict) -> str:
    from streamseg.cpu import cpu_model, native_bf16

    from .report import command_line

    recipe = command_line({k: v for k, v in base["config"].items() if k not in ("data", "out")})
    return (f"# Ablations: each knob varied alone around the recipe\n\n"
            f"Generated by `python -m train.ablate report` from the run directories of `python -m train.ablate "
            f"run`; nothing here is typed by hand.\n\n"
            f"Base recipe, every row ({base['epochs']} epochs from scratch, train → val, scored on val's full 360x480 "
            f"labels):\n\n"
            f"    {recipe}\n\n"
            f"CPU: {cpu_model()} ({os.cpu_count()} cores; native bf16: {'yes' if native_bf16() else 'no'}), "
            f"one training per core.\n\n")


def table_row(name: str, s: dict | None, base: dict) -> str:
    if s is None:
        return f"| {name} | (not run) |" + " |" * (len(COLUMNS) - 2)
    cells = [name, changed(s["config"], base["config"]), s["precision"], f"{s['final_miou']:.4f}",
             f"{s['final_miou'] - base['final_miou']:+.4f}", f"{s['best_miou']:.4f}", f"{s['pixel_accuracy']:.4f}",
             "—" if s["thin_iou"] is None else f"{s['thin_iou']:.4f}", f"{s['train_loss']:.4f}", f"{s['val_loss']:.4f}",
             f"{s['val_loss'] - s['train_loss']:+.4f}", f"{s['seconds'] / 60:.1f}"]
    return "| " + " | ".join(cells) + " |"


def table(runs: Path) -> str:
    found = {name: summarise(runs / name) for name, _ in ROWS}
    base = found.get("baseline")
    if base is None:
        raise click.ClickException(f"no finished baseline run in {runs / 'baseline'}; "
                                   f"run `python -m train.ablate run` first")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [table_row(name, summary, base) for name, summary in found.items()]
    return header(base) + "\n".join(lines) + "\n" + NOTES


@click.group()
def cli() -> None:
    """Ablations of the training recipe: run them, then tabulate them."""


@cli.command("run")
@click.option("--data", required=True, help="CamVid root.")
@click.option("--out", default="runs/ablate", show_default=True, help="One run directory per row goes here.")
@click.option("--only", multiple=True, type=click.Choice([name for name, _ in ROWS]), help="Just these rows.")
def run_command(data: str, out: str, only: tuple[str, ...]) -> None:
    """Train the rows one after another (finished rows are skipped, cut-off rows resumed)."""
    failed = run_rows(data, Path(out), only)
    if failed:
        raise click.ClickException(f"rows failed: {', '.join(failed)}")


@cli.command("report")
@click.option("--runs", default="runs/ablate", show_default=True, help="Where `run` wrote the rows.")
@click.option("--out", default="docs/results/ablations.md", show_default=True, help="Markdown table to write.")
def report_command(runs: str, out: str) -> None:
    """Write the ablation table from the run directories."""
    from .artefacts import write_text
    write_text(Path(out), table(Path(runs)))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    cli(prog_name="python -m train.ablate")
