"""Ship the trained presets and write the README's Results section.

    python -m train.report --runs runs --data ../shared/data/camvid

For each preset (fcn, unet, deeplab): re-evaluates `runs/<name>/best` on val
at full resolution from the FP16 copy we ship, copies the run's artefacts to
`docs/results/<name>/`, measures ONNX Runtime CPU fps (batch 1, CamVid's 360x480
frames at the model's input size, as `streamseg run` feeds them), and regenerates
the table between the README's `results` markers. Nothing in the table is typed
by hand. A final trained on train+val (`--run deeplab=runs/deeplab-tv
--twin deeplab=runs/deeplab-tr`) ships its last epoch and reports its train-only
twin's val numbers, as the CamVid papers do, and keeps the twin (FP16) in
`docs/results/<name>/twin.safetensors` for the next measured restart.
"""
from __future__ import annotations

import json
import shutil
import timeit
from pathlib import Path

import click
import numpy as np
import torch

from streamseg.checkpoint import WEIGHTS_DIR, load_checkpoint, read_info, save_checkpoint
from streamseg.classes import colorize
from streamseg.data import CamVid, EvalTransform, read_rgb
from streamseg.evaluate import AtInputSize, EvalConfig
from streamseg.evaluate import evaluate_checkpoint as evaluate_split
from streamseg.preprocess import keep_size
from streamseg.zoo import describe

from .config import weighted

PRESET_NAMES = ("fcn", "unet", "deeplab")
ARTEFACTS = ("history.csv", "curves.png", "confusion.png", "per_class_iou.png", "predictions.png", "metrics.json")
# The seed study's reported val pixel accuracies (its own protocol; see README).
SEED_PIXEL_ACCURACY = {"deeplab": 0.9587, "fcn": 0.9062, "unet": 0.5892}
START, END = "<!-- results:start -->", "<!-- results:end -->"


def command_line(config: dict) -> str:
    """The exact `python -m train` call that reproduces a run's config."""
    parts = ["python -m train"]
    for key, value in config.items():
        if key in ("resume",) or value is None or (key == "class_weights" and not weighted(config["loss"])):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, (list, tuple)):  # a repeatable flag (JSON makes tuples lists)
            parts.extend(f"{flag} {item}" for item in value)
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def ship(checkpoint: Path, target: Path) -> Path:
    """FP16 copy of a run's checkpoint: into the package, or a twin beside its artefacts."""
    model, info = load_checkpoint(checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(target, model, info, half=True)


def evaluate_checkpoint(path: Path, data: str) -> dict:
    """The same numbers `streamseg eval --model PATH --split val --device cpu` prints."""
    return evaluate_split(EvalConfig(str(path), data, "val", device="cpu", workers=1))


def onnx_fps(path: Path, size: tuple[int, int], frames: int = 10, repeats: int = 5) -> float:
    """ONNX Runtime CPU frames/s at batch 1 and input `size` (H, W), warm-up excluded.

    The fastest of `repeats` runs of `frames` frames, as `timeit` advises: a shared
    host only ever adds time, and a single 30-frame mean of the same deeplab file
    read 16-24 fps in runs minutes apart.
    """
    from streamseg.runtime import load_backend
    backend, _ = load_backend(str(path), backend="onnx", device="cpu", batch=1)
    batch = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    for _ in range(3):
        backend.predict(batch)
    return frames / min(timeit.repeat(lambda: backend.predict(batch), number=frames, repeat=repeats))


def copy_artefacts(name: str, run: Path, out: Path, config: dict, twin_config: dict | None = None) -> None:
    """`run`'s curves, plots and command; a train+val final's come from its twin, whose val is held out."""
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    for artefact in ARTEFACTS:
        if (run / artefact).exists():
            shutil.copy2(run / artefact, target / artefact)
    lines = [command_line(config)]
    if twin_config is not None:
        lines = [f"# shipped (train+val): {lines[0]}",
                 f"# val numbers, curves, plots (train only): {command_line(twin_config)}"]
    (target / "command.txt").write_text("\n".join(lines) + "\n")


def saw_val(config: dict) -> bool:
    """Whether a run trained on val (a train+val final): its val numbers would measure training data."""
    return any(part.split(":")[0] == "val" for part in config["train_split"].split("+"))


def comparison_picture(checkpoints: dict[str, Path], data: str, out: Path, index: int = 50) -> Path:
    """One val frame: image | ground truth | each model's prediction."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for name, path in checkpoints.items():
        model, info = load_checkpoint(path)
        val = CamVid(data, "val", EvalTransform(info.mean, info.std))
        image, target = val[index]
        with torch.inference_mode():
            prediction = AtInputSize(model, info.input_size)(image[None]).argmax(1)[0].numpy().astype(np.uint8)
        if not panels:
            panels += [("image", read_rgb(val.pairs[index][0])),
                       ("ground truth", colorize(target.numpy().astype(np.uint8), info.palette))]
        title = f"{name} (train+val)" if info.training and saw_val(info.training["config"]) else name
        panels.append((title, colorize(prediction, info.palette)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6))
    for ax, (title, picture) in zip(axes, panels):
        ax.imshow(picture), ax.set_title(title, fontsize=9), ax.axis("off")
    path = out / "comparison.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def results_markdown(rows: list[dict], classes: list[str]) -> str:
    lines = [
        "| model | arch | input | pixel acc. | mIoU | precision | recall | F1 | params | GFLOPs | CPU fps (ORT, b=1) "
        "| best epoch | train time to best | seed study pixel acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        name = r["name"] + ("¹" if r.get("final") else "")
        lines.append(
            f"| {name} | {r['arch']} | {r['input']} | {m['pixel_accuracy']:.4f} | {m['mIoU']:.4f} | {m['precision_macro']:.4f} "
            f"| {m['recall_macro']:.4f} | {m['f1_macro']:.4f} | {r['params_m']:.2f}M | {r['gflops']:.2f} "
            f"| {r['fps']:.1f} | {r['epochs']} | {r['train_minutes']:.0f} min | {SEED_PIXEL_ACCURACY[r['name']]:.4f} |")
    if any(r.get("final") for r in rows):
        lines += ["", ("¹ Shipped weights trained on train + val with a fixed schedule (its last epoch); every val "
                       "number in the row is its train-only twin's (the same schedule without val), since the "
                       "shipped file has seen val.")]
    lines += ["", "Per-class IoU (val):", "",
              "| model | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for r in rows:
        iou = r["metrics"]["iou"]
        lines.append(f"| {r['name']} | " + " | ".join("–" if iou[c] is None else f"{iou[c]:.3f}" for c in classes)
                     + " |")
    return "\n".join(lines)


def splice_readme(readme: Path, body: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise click.ClickException(f"{readme} has no {START} … {END} markers")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{body}\n{END}{tail}")


def shipped_row(name: str, out_dir: Path, data: str) -> tuple[Path, dict, object]:
    """A preset that is not re-shipped: its packaged weights and the metrics measured when it shipped."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    saved = out_dir / name / "metrics_shipped.json"
    metrics = json.loads(saved.read_text()) if saved.exists() else evaluate_checkpoint(path, data)
    return path, metrics, read_info(path)


def kept_twin(name: str, out_dir: Path) -> Path:
    """Where shipping a train+val final keeps its twin, and where later reports look for it."""
    return out_dir / name / "twin.safetensors"


def pictured_checkpoint(name: str, path: Path, info, out_dir: Path) -> Path:
    """What the comparison picture shows for a preset not re-shipped: a final's kept twin, which has
    not seen the val frame, where the repository holds one; else the shipped file."""
    twin = kept_twin(name, out_dir)
    return twin if saw_val(info.training["config"]) and twin.exists() else path


def shipped_run(name: str, run: Path, out_dir: Path, data: str, do_ship: bool,
                twin: Path | None = None) -> tuple[Path, dict, object, Path]:
    """Ship `run`'s best checkpoint, copy its artefacts and measure the shipped file. Returns the
    shipped file, its metrics, its info and the checkpoint that was measured.

    A train+val final ships its last epoch (a fixed schedule: picking an epoch by val would be
    picking by training data) and is measured through its `twin`, the same schedule on train
    alone, at the twin's last epoch. Shipping keeps the twin's FP16 copy in `out_dir/NAME/twin.safetensors`:
    run directories are not committed, and the next measured restart of this model starts from it."""
    if not (run / "last.safetensors").exists():
        raise click.ClickException(f"no trained run for {name} in {run}")
    final = saw_val(read_info(run / "last.safetensors").training["config"])
    if final and twin is None:
        raise click.ClickException(f"{run} trained on val: its val numbers would measure training data; name its "
                                   f"train-only twin (the same schedule without val) with --twin {name}=DIR")
    checkpoint = run / ("last.safetensors" if final else "best.safetensors")
    info = read_info(checkpoint)
    path = ship(checkpoint, WEIGHTS_DIR / f"{name}.safetensors") if do_ship else checkpoint
    measured = twin / "last.safetensors" if final else path
    if final and do_ship:
        measured = ship(measured, kept_twin(name, out_dir))
    metrics = evaluate_checkpoint(measured, data)
    twin_config = read_info(measured).training["config"] if final else None
    copy_artefacts(name, twin if final else run, out_dir, info.training["config"], twin_config)
    (out_dir / name / "metrics_shipped.json").write_text(json.dumps({**metrics, "train_val_final": final}, indent=1))
    return path, metrics, info, measured


def parse_runs(runs: str, given: tuple[str, ...]) -> dict[str, Path | None]:
    """NAME=DIR pairs; without any, every preset from RUNS/NAME."""
    if not given:
        return {name: Path(runs) / name for name in PRESET_NAMES}
    chosen: dict[str, Path | None] = dict.fromkeys(PRESET_NAMES)
    for item in given:
        name, _, folder = item.partition("=")
        if name not in PRESET_NAMES or not folder:
            raise click.BadParameter(f"{item!r}: expected NAME=DIR with NAME one of {', '.join(PRESET_NAMES)}")
        chosen[name] = Path(folder)
    return chosen


@click.command()
@click.option("--runs", default="runs", type=click.Path(file_okay=False), show_default=True)
@click.option("--run", "given", multiple=True, metavar="NAME=DIR",
              help="Ship only these runs (e.g. fcn=runs/fcn-long); the other presets keep their shipped weights "
                   "and the metrics measured when they shipped.")
@click.option("--twin", "twins", multiple=True, metavar="NAME=DIR",
              help="For a --run trained on train+val: its train-only twin (same schedule), whose last epoch gives "
                   "the val numbers, curves and picture.")
@click.option("--data", default="../shared/data/camvid", type=click.Path(file_okay=False), show_default=True)
@click.option("--out", default="docs/results", type=click.Path(file_okay=False), show_default=True)
@click.option("--readme", default="README.md", type=click.Path(dir_okay=False), show_default=True)
@click.option("--ship/--no-ship", "do_ship", default=True, help="Copy best checkpoints (FP16) into the package.")
def main(runs: str, given: tuple[str, ...], twins: tuple[str, ...], data: str, out: str, readme: str,
         do_ship: bool) -> None:
    """Ship the presets and regenerate the README Results section."""
    out_dir = Path(out)
    rows, pictured = [], {}
    twin_of = {name: run for name, run in parse_runs(runs, twins).items() if run is not None} if twins else {}
    for name, run in parse_runs(runs, given).items():
        if run is None:
            path, metrics, info = shipped_row(name, out_dir, data)
            measured = pictured_checkpoint(name, path, info, out_dir)
        else:
            path, metrics, info, measured = shipped_run(name, run, out_dir, data, do_ship, twin_of.get(name))
        pictured[name] = measured
        config = info.training["config"]
        epochs = f"{info.training['epoch']}/{config['epochs']}" + (" (warm start)" if config.get("init") else "")
        size = keep_size((360, 480), tuple(info.input_size))  # what a CamVid frame runs at
        rows.append({"name": name, "arch": info.arch, "metrics": metrics, **describe(name, *size),
                     "input": f"{size[0]}x{size[1]}",
                     "final": saw_val(config),
                     "fps": onnx_fps(path, size), "epochs": epochs,
                     "train_minutes": info.training["train_seconds"] / 60})
        click.echo(f"{name}: pixel acc {metrics['pixel_accuracy']:.4f} mIoU {metrics['mIoU']:.4f} "
                   f"fps {rows[-1]['fps']:.1f}")
    comparison_picture(pictured, data, out_dir)
    splice_readme(Path(readme), results_markdown(rows, list(rows[0]["metrics"]["classes"])))

if __name__ == "__main__":
    main()
