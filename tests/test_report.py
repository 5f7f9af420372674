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
    ctx = cli.make_context("train", line.split()[3:])
    assert TrainConfig(**ctx.params) == TrainConfig(**{**config.to_dict(), "resume": None})


def test_results_table_has_a_row_per_model_and_per_class_iou() -> None:
    metrics = {"pixel_accuracy": 0.9, "mIoU": 0.5, "precision_macro": 0.6, "recall_macro": 0.7, "f1_macro": 0.65,
               "iou": {"Sky": 0.9, "Pole": None}, "classes": ["Sky", "Pole"]}
    rows = [{"name": "fcn", "arch": "fcn8s", "metrics": metrics, "params_m": 5.25, "gflops": 2.33, "fps": 12.0,
             "epochs": "20/22", "train_minutes": 89.4}]
    table = results_markdown(rows, ["Sky", "Pole"])
    assert "| fcn | fcn8s | 0.9000 | 0.5000 |" in table and "| 0.9062 |" in table  # seed figure beside ours
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
