"""The results report: reproducible command lines and the README splice."""
from __future__ import annotations

from pathlib import Path

import click
import pytest

from train.config import TrainConfig
from train.report import END, START, command_line, results_markdown, splice_readme


def test_command_line_round_trips_through_the_cli() -> None:
    from train.__main__ import cli

    config = TrainConfig(model="unet", epochs=3, lr=0.01, hflip=False, loss="ce+dice", resume="runs/x",
                         model_option=("encoder=classic", "depth=3"))
    line = command_line(config.to_dict())
    assert line.startswith("python -m train ") and "--resume" not in line
    assert "--class-weights" not in line  # unused by ce+dice: printing it reads as part of the recipe
    assert "--class-weights cgnet" in command_line({**config.to_dict(), "loss": "wce", "class_weights": "cgnet"})
    ctx = cli.make_context("train", line.split()[3:])
    assert TrainConfig(**ctx.params) == TrainConfig(**{**config.to_dict(), "resume": None})


def test_results_table_has_a_row_per_model_and_per_class_iou() -> None:
    metrics = {"pixel_accuracy": 0.9, "mIoU": 0.5, "precision_macro": 0.6, "recall_macro": 0.7, "f1_macro": 0.65,
               "iou": {"Sky": 0.9, "Pole": None}, "classes": ["Sky", "Pole"]}
    rows = [{"name": "fcn", "arch": "fcn8s", "input": "416x544", "metrics": metrics, "params_m": 5.25, "gflops": 2.33,
             "fps": 12.0,
             "epochs": "20/22", "train_minutes": 89.4}]
    table = results_markdown(rows, ["Sky", "Pole"])
    assert "| fcn | fcn8s | 416x544 | 0.9000 | 0.5000 |" in table and "| 0.9062 |" in table  # seed figure beside ours
    assert "| fcn | 0.900 | – |" in table


def test_splice_replaces_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    splice_readme(readme, "new table")
    assert readme.read_text() == f"intro\n{START}\nnew table\n{END}\noutro\n"
    readme.write_text("no markers")
    with pytest.raises(click.ClickException, match="markers"):
        splice_readme(readme, "x")


def test_config_fields_declare_help_choices_and_ranges_once() -> None:
    """`python -m train`'s options come from TrainConfig's fields: Literal → choices, metadata → range."""
    import dataclasses

    from click.testing import CliRunner

    from train.__main__ import cli

    assert all(field.metadata["help"] for field in dataclasses.fields(TrainConfig))
    params = {p.name: p for p in cli.params}
    assert list(params["optimizer"].type.choices) == ["adam", "adamw", "sgd", "rmsprop"]
    assert list(params["freeze"].type.choices) == ["backbone", "encoder"] and params["freeze"].default is None
    assert "-b" in params["batch_size"].opts and "--lr-warmup-epochs" in params["warmup_epochs"].opts
    for args in (["--momentum", "1.5"], ["--dropout", "1"], ["--scale-min", "0"], ["--epochs", "0"],
                 ["--optimizer", "lion"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "Invalid value" in result.output, args


def test_report_ships_only_the_runs_named() -> None:
    from pathlib import Path

    import click
    import pytest

    from train.report import parse_runs
    assert parse_runs("runs", ()) == {n: Path("runs") / n for n in ("fcn", "unet", "deeplab")}
    assert parse_runs("runs", ("fcn=runs/fcn-long",)) == {"fcn": Path("runs/fcn-long"), "unet": None,
                                                          "deeplab": None}
    with pytest.raises(click.BadParameter, match="NAME=DIR"):
        parse_runs("runs", ("segformer=runs/x",))


def tiny_run(folder: Path, train_split: str) -> Path:
    """A run directory holding best and last checkpoints of a tiny UNet trained on `train_split`."""
    import dataclasses

    from streamseg.checkpoint import ModelInfo, save_checkpoint

    info = ModelInfo.for_model("unet", options={"encoder": "classic", "base_channels": 4, "depth": 2})
    config = TrainConfig(model="unet", train_split=train_split, epochs=2).to_dict()
    info = dataclasses.replace(info, training={"config": config, "epoch": 2, "train_seconds": 60.0})
    folder.mkdir(parents=True)
    for name in ("best", "last"):
        save_checkpoint(folder / f"{name}.safetensors", info.build(), info)
    return folder


def test_a_train_val_final_ships_its_last_epoch_and_reports_its_twin(tmp_path: Path, monkeypatch) -> None:
    """A run that trained on val cannot report val numbers of its own: its train-only twin's are used."""
    import json

    import torch
    from safetensors.torch import load_file

    from streamseg.checkpoint import read_info
    from train import report

    final, twin = tiny_run(tmp_path / "tv", "train+val"), tiny_run(tmp_path / "tr", "train")
    assert report.saw_val({"train_split": "train+val"}) and report.saw_val({"train_split": "val:0016E5"})
    assert not report.saw_val({"train_split": "train:0001TP,0016E5"})
    with pytest.raises(click.ClickException, match="--twin unet=DIR"):
        report.shipped_run("unet", final, tmp_path / "docs", "data", do_ship=False)
    measured = []
    monkeypatch.setattr(report, "evaluate_checkpoint", lambda path, data: measured.append(path) or {"mIoU": 0.5})
    path, _metrics, _info, pictured = report.shipped_run("unet", final, tmp_path / "docs", "data", do_ship=False,
                                                       twin=twin)
    assert path == final / "last.safetensors" and measured == [twin / "last.safetensors"] == [pictured]
    assert json.loads((tmp_path / "docs/unet/metrics_shipped.json").read_text())["train_val_final"] is True
    command = (tmp_path / "docs/unet/command.txt").read_text().splitlines()
    assert "--train-split train+val" in command[0] and "--train-split train " in command[1]
    # Shipping keeps the twin (FP16) beside its artefacts, since run directories are not committed.
    monkeypatch.setattr(report, "WEIGHTS_DIR", tmp_path / "weights")
    path, _metrics, _info, pictured = report.shipped_run("unet", final, tmp_path / "docs", "data", do_ship=True,
                                                       twin=twin)
    kept = tmp_path / "docs/unet/twin.safetensors"
    assert path == tmp_path / "weights/unet.safetensors" and measured[-1] == pictured == kept
    assert read_info(kept).training["config"]["train_split"] == "train"
    assert {t.dtype for t in load_file(kept).values() if t.is_floating_point()} == {torch.float16}
    # A later report that leaves unet alone still pictures the kept twin, not the final that saw val.
    shipped = read_info(final / "last.safetensors")
    assert report.pictured_checkpoint("unet", path, shipped, tmp_path / "docs") == kept
    assert report.pictured_checkpoint("unet", path, shipped, tmp_path / "elsewhere") == path
    row = {"name": "unet", "arch": "unet", "input": "416x544", "final": True, "params_m": 1.0, "gflops": 1.0,
           "fps": 10.0,
           "epochs": "2/2", "train_minutes": 1.0, "metrics": {"pixel_accuracy": 0.9, "mIoU": 0.5,
                                                           "precision_macro": 0.6, "recall_macro": 0.7,
                                                           "f1_macro": 0.65, "iou": {"Sky": 0.9}}}
    table = report.results_markdown([row], ["Sky"])
    assert "| unet¹ | unet |" in table and "train-only twin" in table
