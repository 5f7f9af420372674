"""PyTorch → ONNX, with the model's self-description in `metadata_props`, then checked.

Exporter choice: torch 2.14 defaults to the dynamo exporter. Both exporters
produce matching graphs for our models, but the TorchScript exporter
(`dynamo=False`) takes ~1 s instead of ~10-18 s per model on a 2-core CPU,
takes symbolic batch/height/width from `dynamic_axes` without torch.export
shape constraints, and emits the opset-17 graphs TensorRT's ONNX parser has
handled for years. It is deprecated, so when it fails (e.g. it has been
removed) we fall back to the dynamo exporter.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backends.base import labels_of
from ..backends.onnx_backend import INPUT_NAME, LABELS_NAME, META_KEY, OUTPUT_NAME, OnnxBackend, OnnxMeta
from ..checkpoint import atomic_write
from .errors import ExportError


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime vs PyTorch on the same frames."""
    max_abs_diff: float     # largest logit difference
    agreement: float        # share of pixels with the same argmax, 0..1
    frames: int
    batch_sizes: tuple[int, ...]

    def summary(self) -> str:
        return (f"ORT vs torch argmax agreement {self.agreement:.2%}, max |logit diff| {self.max_abs_diff:.2e} "
                f"on {self.frames} frames (batch {', '.join(map(str, self.batch_sizes))})")


def _torchscript_export(model: nn.Module, example: torch.Tensor, path: str, opset: int, dynamic: bool) -> None:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notice; see the module docstring
        torch.onnx.export(model, (example,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                          do_constant_folding=True, dynamo=False)


def _dynamo_export(model: nn.Module, example: torch.Tensor, path: str, opset: int, dynamic: bool) -> None:
    auto = torch.export.Dim.AUTO
    shapes = ({0: auto, 2: auto, 3: auto} if dynamic else {0: auto},)
    program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                opset_version=max(opset, 18), dynamic_shapes=shapes, dynamo=True, verbose=False)
    program.save(path)


def add_labels_output(proto) -> None:
    """Append `labels = Cast<uint8>(ArgMax(logits, axis=1))` as a second graph output.

    ONNX ArgMax yields int64 (8 bytes a pixel); class ids fit a byte, so the
    runtimes hand back a `(N, H, W) uint8` map. `logits` stays an output for
    evaluation, INT8 calibration and TTA; a runner asks for one or the other.
    """
    from onnx import TensorProto, helper

    graph = proto.graph
    if any(output.name == LABELS_NAME for output in graph.output):
        return
    logits = next(output for output in graph.output if output.name == OUTPUT_NAME)
    dims = logits.type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value or None for i, d in enumerate(dims) if i != 1]
    graph.node.extend([
        helper.make_node("ArgMax", [OUTPUT_NAME], [f"{LABELS_NAME}_int64"], name="streamseg_argmax", axis=1,
                         keepdims=0, select_last_index=0),
        helper.make_node("Cast", [f"{LABELS_NAME}_int64"], [LABELS_NAME], name="streamseg_labels",
                         to=TensorProto.UINT8),
    ])
    graph.output.append(helper.make_tensor_value_info(LABELS_NAME, TensorProto.UINT8, shape))


def _write(model: nn.Module, example: torch.Tensor, tmp: str, meta: OnnxMeta, opset: int, dynamic: bool) -> None:
    import onnx

    try:
        _torchscript_export(model, example, tmp, opset, dynamic)
    except Exception as legacy_error:  # noqa: BLE001 — any failure: try the other exporter
        try:
            _dynamo_export(model, example, tmp, opset, dynamic)
        except Exception as error:  # noqa: BLE001 — reported with both exporters' errors
            raise ExportError(f"ONNX export failed ({type(legacy_error).__name__}: {legacy_error}; "
                              f"dynamo: {type(error).__name__}: {error})") from None
    proto = onnx.load(tmp)
    add_labels_output(proto)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=META_KEY, value=meta.to_json())
    proto.producer_name = "streamseg"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported graph fails the ONNX checker: {str(error).splitlines()[0]}") from None
    onnx.save(proto, tmp)


def export_onnx(model: nn.Module, meta: OnnxMeta, path: str | Path, example: np.ndarray, *,
                opset: int = 17, dynamic: bool = False) -> Path:
    """Write `model` as ONNX (input `images` `(N, 3, H, W)` float32 → `logits` `(N, C, H, W)`
    and `labels` `(N, H, W)` uint8, their argmax over classes).

    The batch axis is always symbolic: TensorRT's optimisation profile (min 1)
    and the runner's last partial batch need it. `dynamic` also frees H and W.
    The file is checked by `onnx.checker` and renamed into place only then.
    """
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; use 17 or newer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").float().eval()
    example_tensor = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    return atomic_write(path, lambda tmp: _write(model, example_tensor, tmp, meta, opset, dynamic))


@torch.inference_mode()
def check_onnx(path: str | Path, model: nn.Module, images: np.ndarray) -> OnnxCheck:
    """Run the file in ONNX Runtime (CPU) and PyTorch on `images` `(N, 3, H, W)`:
    all frames as one batch, then the first frame alone (dynamic batch)."""
    backend = OnnxBackend(path, device="cpu")
    reference = model.to("cpu").float().eval()(torch.from_numpy(images)).numpy()
    ours = backend.logits(images)
    single = backend.logits(images[:1])
    if ours.shape != reference.shape or single.shape != reference[:1].shape:
        raise ExportError(f"ONNX output shape {ours.shape} differs from PyTorch's {reference.shape}")
    diff = max(float(np.abs(ours - reference).max()), float(np.abs(single - reference[:1]).max()))
    if not np.array_equal(backend.predict(images), labels_of(ours)):
        raise ExportError("the in-graph labels output differs from the argmax of the logits")
    agreement = float((labels_of(ours) == labels_of(reference)).mean())
    return OnnxCheck(diff, agreement, len(images), tuple(sorted({len(images), 1})))
