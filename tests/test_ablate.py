"""`python -m train.ablate`: rows trained on tiny synthetic CamVid, skipped once done, tabulated from the runs."""
from __future__ import annotations

from pathlib import Path

import click
import pytest
from camvid_data import make_camvid

from train import ablate

TINY = {**ablate.BASE, "model": "unet", "epochs": 1, "batch_size": 2, "workers": 0, "crop_height": 32,
        "crop_width": 32}


@pytest.fixture()
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ablate, "BASE", TINY)
    monkeypatch.setattr(ablate, "ROWS", (("baseline", {}), ("loss-ce", {"loss": "ce"}), ("batch-4", {"batch_size": 4})))


def test_rows_train_once_and_tabulate_what_changed(tiny: None, tmp_path: Path) -> None:
    data, runs = make_camvid(tmp_path / "camvid"), tmp_path / "runs"
    assert ablate.run_rows(str(data), runs, only=("baseline", "loss-ce")) == []
    finished = (runs / "loss-ce" / "history.csv").stat().st_mtime_ns
    assert ablate.run_rows(str(data), runs, only=("loss-ce",)) == []  # done: not trained again
    assert (runs / "loss-ce" / "history.csv").stat().st_mtime_ns == finished

    text = ablate.table(runs)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["baseline"][1] == "—" and rows["baseline"][2] == "float32" and rows["baseline"][4] == "+0.0000"
    assert rows["loss-ce"][1] == "loss=ce"  # read from the run's saved config, not from ROWS
    assert "(not run)" in rows["batch-4"][1]
    assert "--model unet" in text and "--loss ce+dice" in text and "--out" not in text


def test_report_needs_a_baseline(tiny: None, tmp_path: Path) -> None:
    with pytest.raises(click.ClickException, match="no finished baseline"):
        ablate.table(tmp_path)


def test_changed_lists_only_the_differences() -> None:
    base = {"loss": "ce+dice", "lr": 0.002, "out": "runs/a", "seed": 1}
    assert ablate.changed({**base, "out": "runs/b"}, base) == "—"
    assert ablate.changed({**base, "optimizer": "sgd", "lr": 0.02}, {**base, "optimizer": "adamw"}) == \
        "lr=0.02, optimizer=sgd"
