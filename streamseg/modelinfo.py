"""What a model file says about its model: `ModelInfo`, shared by checkpoints, ONNX files and engines.

Plain data (JSON in every file's header), importable without torch, so the
stages that only read it (preprocess, overlay) stay light.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .classes import CAMVID_CLASSES, CAMVID_PALETTE

if TYPE_CHECKING:
    from torch import nn

FORMAT = "streamseg-checkpoint/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not match its architecture."""


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its model: enough to rebuild and run it."""
    name: str                                   # what the user asked for, e.g. "deeplab"
    arch: str                                   # key in MODELS, e.g. "deeplabv3plus"
    options: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = CAMVID_CLASSES
    palette: tuple[tuple[int, int, int], ...] = CAMVID_PALETTE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # (H, W) the model runs at on frames of its training data's shape (360x480 for CamVid;
    # 416x544 when trained with --input-scale 1.125); other frames get this short side
    # (preprocess.keep_size). `streamseg eval`, training's val pass and `run` all use it.
    input_size: tuple[int, int] = (360, 480)
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def for_model(cls, name: str, **kw: Any) -> ModelInfo:
        from .models import resolve  # the zoo imports torch; code that only reads metadata must not

        arch, options = resolve(name, **kw.pop("options", {}))
        return cls(name=name, arch=arch, options=options, **kw)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise CheckpointError("not a streamseg checkpoint (format tag missing)")
        data["classes"] = tuple(data["classes"])
        data["palette"] = tuple(tuple(c) for c in data["palette"])
        for key in ("mean", "std", "input_size"):
            data[key] = tuple(data[key])
        return cls(**data)

    def build(self) -> nn.Module:
        """The architecture, randomly initialised, ready to take the file's weights."""
        from .models import build_model  # torch, only when a network is built

        # Never fetch ImageNet weights here: the checkpoint's own weights replace them.
        options = {k: v for k, v in self.options.items() if k != "pretrained_backbone"}
        return build_model(self.arch, self.num_classes, **options)
