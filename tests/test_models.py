"""One base set of checks that every model in the zoo goes through.

Every architecture in MODELS, the three shipped presets and the backbone /
width / output-stride variants share the same fixture, so adding a model or
an option means adding one line to CASES. Heavy networks (ResNet-50/101,
VGG16) run on one small input to keep the file fast on 2 busy CPU cores.
"""
from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import torch
import torch.hub

from streamseg.checkpoint import ModelInfo
from streamseg.models import MODELS, PRESETS, PretrainedWeightsError, build_model, default_options, list_models, resolve

NUM_CLASSES = 5          # not the default 11, so every check also proves num_classes is respected
ODD = ((97, 131), (64, 80))
TINY = ((65, 71),)       # VGG max-pools floor: 64+ keeps >= 2x2 at stride 32 for batch-norm training


def case(name: str, sizes: tuple[tuple[int, int], ...] = ODD, **options) -> pytest.param:
    label = name + "".join(f"-{k}={v}" for k, v in options.items())
    return pytest.param((name, options, sizes), id=label)


HEAVY = {"deeplabv2", "deeplabv3"}  # ResNet-50 at output stride 8/16 by default
CASES = [
    # Every preset and every architecture with its defaults (FCNs: ResNet-18).
    *(case(name, TINY if name in HEAVY else ODD) for name in list_models()),
    # FCN on the other backbones (the three variants share one builder).
    case("fcn8s", ODD, backbone="resnet34"),
    case("fcn8s", TINY, backbone="resnet50"),
    case("fcn16s", TINY, backbone="vgg16"),
    # DeepLab at the output strides and on the backbones the defaults leave out.
    case("deeplabv2", ODD, backbone="resnet18", output_stride=16),
    case("deeplabv3", ODD, backbone="resnet18", output_stride=8),
    case("deeplabv3", TINY, backbone="resnet101", output_stride=16),
    case("deeplabv3plus", ODD, output_stride=8),
    case("deeplabv3plus", TINY, backbone="resnet50", output_stride=16),
    # UNet width / depth extremes, the classic encoder the preset leaves out, and a ResNet encoder.
    case("unet", ODD, encoder="classic", base_channels=8, depth=4),
    case("unet", ODD, encoder="classic", base_channels=4, depth=1),
    case("unet", ODD, encoder="classic", base_channels=4, depth=5),
    case("unet", ODD, encoder="classic", base_channels=16, depth=2),
    case("unet", ODD, encoder="resnet18"),
    case("unet", ODD, encoder="resnet18", base_channels=2),
]


@pytest.fixture(scope="module", params=CASES)
def zoo(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, tuple[tuple[int, int], ...]]:
    """A model per case, built once; pytest groups the tests by case, so one lives at a time."""
    name, options, sizes = request.param
    torch.manual_seed(0)
    return build_model(name, NUM_CLASSES, **options), sizes


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_logits_at_input_size(zoo, training: bool) -> None:
    """Batch 1 at every size and batch 3 at the last: `(N, C, H, W)` finite logits at the input size.

    In eval mode a frame's logits must also not depend on the rest of its batch.
    """
    model, sizes = zoo
    model.train(training)
    torch.manual_seed(3)
    batch3 = torch.randn(3, 3, *sizes[-1])
    inputs = [torch.randn(1, 3, *size) for size in sizes[:-1]] + [batch3[:1], batch3]
    with torch.no_grad():
        outputs = [model(x) for x in inputs]
    for x, y in zip(inputs, outputs, strict=True):
        assert y.shape == (x.shape[0], NUM_CLASSES, *x.shape[2:])
        assert y.dtype == torch.float32
        assert torch.isfinite(y).all()
    if not training:
        torch.testing.assert_close(outputs[-1][:1], outputs[-2], rtol=1e-4, atol=1e-4)


def test_backward_reaches_every_parameter(zoo) -> None:
    model, sizes = zoo
    model.train()
    model.zero_grad(set_to_none=True)
    model(torch.randn(2, 3, *sizes[-1])).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad[:5]}"
    model.zero_grad(set_to_none=True)


# The presets are exported and checked end to end in test_export.py; this covers
# the architectures they leave out (ASPP-L sums, OS8 atrous rates, ResNet-encoder
# UNet), on light backbones, through the same exporter users run.
@pytest.mark.parametrize(("name", "options"), [
    ("fcn32s", {}),
    ("fcn16s", {}),
    ("deeplabv2", {"backbone": "resnet18", "output_stride": 16}),
    ("deeplabv3", {"backbone": "resnet18", "output_stride": 8}),
    ("unet", {"encoder": "resnet18"}),
], ids=lambda value: value if isinstance(value, str) else "-".join(map(str, value.values())) or "defaults")
def test_architecture_exports_to_onnx(tmp_path, name: str, options: dict) -> None:
    # Imported here so a broken exporter fails these five tests, not the whole zoo file.
    from streamseg.backends.onnx_backend import OnnxMeta
    from streamseg.export.onnx_export import check_onnx, export_onnx

    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, **options).eval()
    images = np.random.default_rng(0).standard_normal((2, 3, *TINY[0])).astype(np.float32)
    info = ModelInfo.for_model(name, options=options, classes=tuple("abcde"), palette=((0, 0, 0),) * 5)
    path = export_onnx(model, OnnxMeta(info=info, batch_range=(1, 2), input_size=TINY[0]),
                       tmp_path / f"{name}.onnx", images)
    check = check_onnx(path, model, images)
    assert check.max_abs_diff < 1e-4 and check.agreement >= 0.999


# --- names, presets and options ------------------------------------------------------------------

def test_presets_are_the_trained_configurations() -> None:
    # Training jobs and shipped checkpoints depend on these exact settings.
    assert PRESETS == {
        "fcn": ("fcn8s", {"backbone": "mobilenet_v3_large"}),
        "unet": ("unet", {"encoder": "mobilenet_v3_large", "base_channels": 8}),
        "deeplab": ("deeplabv3plus", {"backbone": "mobilenet_v3_large", "output_stride": 16}),
    }
    assert list_models()[:3] == ["fcn", "unet", "deeplab"]
    assert set(list_models()) == set(PRESETS) | set(MODELS)


# (number of tensors, md5 of the (key, shape) list): a renamed module or a changed
# layer would make every checkpoint trained so far unloadable.
STATE_FINGERPRINTS = {
    "fcn": (326, "a59419cf35e7083c422e816ba71aa783"),
    "unet": (358, "24074d77e9277b8d9b3433c75731ebf3"),
    "deeplab": (390, "13c632a0b03a5e3449948c4373118e9c"),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_state_dict_keys_are_stable(name: str) -> None:
    state = build_model(name).state_dict()
    digest = hashlib.md5(repr([(k, tuple(v.shape)) for k, v in state.items()]).encode()).hexdigest()
    assert (len(state), digest) == STATE_FINGERPRINTS[name]


def test_default_is_eleven_camvid_classes() -> None:
    model = build_model("unet", encoder="classic", base_channels=4, depth=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 56)).shape == (1, 11, 40, 56)


def test_resolve_merges_preset_and_user_options() -> None:
    assert resolve("deeplab", dropout=0.3) == (
        "deeplabv3plus", {"backbone": "mobilenet_v3_large", "output_stride": 16, "dropout": 0.3})
    assert resolve("fcn32s") == ("fcn32s", {})
    assert default_options("fcn8s")["backbone"] == "resnet18"
    assert "num_classes" not in default_options("unet")


def test_resolve_takes_any_case_and_suggests_the_closest_name() -> None:
    assert resolve("DeepLab") == resolve("deeplab") and resolve("FCN8s") == ("fcn8s", {})
    with pytest.raises(ValueError, match="unknown model 'deeplabv3plu'; did you mean 'deeplabv3plus'\\? choose from"):
        resolve("deeplabv3plu")


@pytest.mark.parametrize(("name", "options", "named"), [
    ("segformer", {}, ["fcn", "unet", "deeplab", "deeplabv3plus"]),
    ("fcn8s", {"colour": 1}, ["backbone", "head_width", "dropout"]),
    ("unet", {"backbone": "resnet18"}, ["encoder", "base_channels", "depth"]),
    ("fcn8s", {"backbone": "vit"}, ["resnet18", "vgg16", "mobilenet_v3_large"]),
    ("deeplabv3", {"output_stride": 32}, ["8", "16"]),
    ("deeplabv3", {"backbone": "vgg16"}, ["32"]),
    ("unet", {"encoder": "vgg"}, ["classic", "resnet18"]),
    ("unet", {"encoder": "classic", "depth": 0}, ["1..6"]),
])
def test_bad_name_or_option_names_the_choices(name: str, options: dict, named: list[str]) -> None:
    with pytest.raises(ValueError) as error:
        build_model(name, **options)
    message = str(error.value)
    assert "\n" not in message
    for word in named:
        assert word in message


def test_classic_unet_has_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="encoder='resnet18'"):
        build_model("unet", encoder="classic", pretrained_backbone=True)


# --- ImageNet weights offline ---------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> list[str]:
    """No network and an empty hub cache: torchvision's download raises URLError."""
    attempts: list[str] = []

    def no_network(url: str, *args, **kwargs) -> None:
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


@pytest.mark.parametrize(("name", "options", "backbone"), [
    ("fcn", {}, "mobilenet_v3_large"),
    ("deeplabv3", {"backbone": "resnet18"}, "resnet18"),
    ("unet", {"encoder": "resnet34"}, "resnet34"),
])
def test_pretrained_backbone_offline_is_one_line(offline, name: str, options: dict, backbone: str) -> None:
    with pytest.raises(PretrainedWeightsError) as error:
        build_model(name, pretrained_backbone=True, **options)
    message = str(error.value)
    assert "\n" not in message
    assert backbone in message and "URLError" in message and "--pretrained-backbone" in message
    assert len(offline) == 1 and offline[0].startswith("https://download.pytorch.org/")
