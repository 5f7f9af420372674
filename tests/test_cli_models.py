"""`streamseg --help` and `streamseg models [--all]` through click's CliRunner."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

import streamseg.checkpoint
from streamseg.cli import main
from streamseg.models import MODELS, PRESETS, build_model, list_models
from streamseg.zoo import PRESET_COUNT, TABLE, describe


def _table(args: list[str]) -> dict[str, list[str]]:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["name", "arch", "family", "backbone", "params", "GFLOPs", "weights"]
    return {row.split()[0]: row.split() for row in rows}


def test_help_lists_the_models_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and "models" in result.output
    assert CliRunner().invoke(main, ["models", "--help"]).exit_code == 0


def test_models_lists_the_presets() -> None:
    table = _table(["models"])
    assert list(table) == list(PRESETS)
    assert table["fcn"][:4] == ["fcn", "fcn8s", "FCN", "mobilenet_v3_large"]
    assert table["unet"][:4] == ["unet", "unet", "UNet", "mobilenet_v3_large"]
    assert table["deeplab"][:4] == ["deeplab", "deeplabv3plus", "DeepLab", "mobilenet_v3_large"]
    for row in table.values():
        params, gflops, weights = row[4:]
        assert params.endswith("M") and float(params[:-1]) > 0
        assert float(gflops) > 0
        assert weights in ("yes", "no")


def test_models_all_fills_every_column() -> None:
    table = _table(["models", "--all"])
    assert list(table) == list_models()
    assert set(MODELS) <= set(table)
    for row in table.values():
        assert len(row) == 7, row  # no empty backbone cell shifting the columns
    # Architectures without a preset show their builder's default backbone.
    assert table["fcn32s"][3] == "resnet18"
    assert table["deeplabv2"][3] == "resnet50"
    assert table["deeplabv3"][3] == "resnet50"
    # Heavier defaults cost more than the shipped presets.
    assert float(table["deeplabv3"][5]) > 10 * float(table["deeplab"][5])


def test_params_and_flops_match_a_real_model() -> None:
    """The table counts on the meta device; a real model must give the same numbers."""
    row = describe("unet", 64, 80)
    model = build_model("unet").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 64, 80))
    assert row["params_m"] == sum(p.numel() for p in model.parameters()) / 1e6
    assert row["gflops"] == counter.get_total_flops() / 1e9
    assert describe("unet")["gflops"] == pytest.approx(row["gflops"] * (360 * 480) / (64 * 80), rel=0.05)


def test_shipped_weights_column(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "unet.safetensors").write_bytes(b"")
    monkeypatch.setattr(streamseg.checkpoint, "WEIGHTS_DIR", tmp_path)
    table = _table(["models"])
    assert table["unet"][-1] == "yes"
    assert table["fcn"][-1] == table["deeplab"][-1] == "no"


def test_precomputed_table_matches_the_built_models() -> None:
    """`streamseg models` prints `TABLE` without torch; it must be what `describe` counts."""
    assert [row[0] for row in TABLE] == list_models() and [row[0] for row in TABLE[:PRESET_COUNT]] == list(PRESETS)
    for row in TABLE:
        counted = describe(row[0])
        fresh = (row[0], counted["arch"], counted["family"], counted["backbone"],
                 round(counted["params_m"] * 1e6), round(counted["gflops"] * 1e9))
        assert row == fresh, f"streamseg/zoo.py TABLE is out of date; the row is now {fresh!r}"


# Runs each command in a fresh interpreter, then lists the heavy libraries it imported.
HEAVY = ("torch", "onnxruntime", "onnx", "openvino", "tensorrt", "ray")
NO_HEAVY_IMPORTS = f"""
import sys
from streamseg.cli import main
commands = [["--help"], ["models"], ["models", "--all"]] + [[name, "--help"] for name in main.commands]
for args in commands:
    try:
        main(args)
    except SystemExit as end:
        assert end.code == 0, (args, end.code)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_help_and_models_import_no_torch() -> None:
    """Issue 12 item 6: `--help` (of every command) and `models` answer without importing torch or a runtime."""
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage:" in done.stdout and "deeplabv3plus" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"
