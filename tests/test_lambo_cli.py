"""``edgepilot train aed``: the paper's sizes without allocating, and CPU training of the
small default with its checkpoint, curve and summary."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgepilot.cli import app
from edgepilot.cli.errors import EXIT_USAGE

runner = CliRunner()


def test_preset_reports_the_paper_size_from_the_meta_device_and_trains_nothing(tmp_path):
    res = runner.invoke(app, ["train", "aed", "--preset", "l", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.splitlines()[0])
    assert (info["encoder_layers"], info["decoder_layers"], info["d_model"]) == (120, 12, 1024)
    assert info["parameters"]["encoder"] + info["parameters"]["decoder"] == 1_159_515_142 - 326_662
    assert info["paper_parameters"] == 1_159_515_142
    assert "needs a GPU" in res.output
    assert not any(tmp_path.iterdir())


def test_bad_preset_and_preset_with_settings_are_usage_errors():
    res = runner.invoke(app, ["train", "aed", "--preset", "xl"])
    assert res.exit_code == EXIT_USAGE and "choose one of m, l" in res.output
    res = runner.invoke(app, ["train", "aed", "--preset", "m", "--set", "steps=3"])
    assert res.exit_code == EXIT_USAGE and "do not apply" in res.output
    res = runner.invoke(app, ["train", "tac", "--preset", "m"])
    assert res.exit_code == EXIT_USAGE and "aed only" in res.output


def test_bad_settings_and_scenarios_name_the_key(tmp_path):
    res = runner.invoke(app, ["train", "aed", "--set", "model.depth=3"])
    assert res.exit_code == EXIT_USAGE and "model.depth" in res.output
    bad = tmp_path / "s.yaml"
    bad.write_text("tasks: {num_ues: 0}\n")
    res = runner.invoke(app, ["train", "aed", "--scenario", str(bad)])
    assert res.exit_code == EXIT_USAGE and "tasks.num_ues" in res.output


def test_quick_training_writes_checkpoint_curve_and_summary(tmp_path):
    res = runner.invoke(app, ["train", "aed", "--quick", "--set", "steps=4", "--set", "eval_every=2", "--seed", "3",
                              "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "lambo"
    summary = json.loads((out / "train_aed.json").read_text())
    assert summary["steps"] == 4 and summary["checkpoint"] == str(out / "aed.pt")
    assert summary["held_out"]["latency"]["feasible"] == 1.0 and summary["held_out"]["energy"]["feasible"] == 1.0
    assert (out / "aed.pt").stat().st_size > 0
    rows = (out / "curve_aed.csv").read_text().splitlines()
    assert rows[0].startswith("step,total") and len(rows) == 1 + 3  # steps 0, 2, 4
