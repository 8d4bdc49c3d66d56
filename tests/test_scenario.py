"""Scenario schema, presets and the `scenario` commands."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from edgepilot.cloud_trainer.scenario import Scenario, ScenarioError, list_presets, load_scenario, scenario_from_dict
from edgepilot.cli import app

runner = CliRunner()


def test_default_is_table_one():
    s = load_scenario(None)
    assert s.tasks.num_task_types == 200 and s.tasks.num_ue_types == 6
    assert s.radio.total_bandwidth_hz == 80e6
    assert (s.radio.cloud_power_dbm, s.radio.edge_power_dbm, s.radio.ue_power_dbm) == (40, 30, 23.9)
    assert (s.tasks.input_bits.low, s.tasks.input_bits.high) == (5e6, 20e6)
    assert (s.tasks.output_bits.low, s.tasks.output_bits.high) == (2e6, 40e6)
    assert (s.tasks.cycles_per_bit.low, s.tasks.cycles_per_bit.high) == (600, 1200)
    assert s.episode.rounds == 600
    p = s.network_params
    assert p.ue_max_power_w == pytest.approx(0.2455, rel=1e-3)  # 23.9 dBm
    assert p.channel_bandwidth_hz * s.radio.num_channels == pytest.approx(80e6)
    assert p.edge_cpu_hz * s.topology.num_edge_servers + p.cloud_cpu_hz == pytest.approx(s.compute.total_hz)


@pytest.mark.parametrize(
    "name,edges,edge_r,cloud_r",
    [("fig5", 5, 200, 300), ("fig6", 7, 300, 400), ("fig7", 7, 600, 800)],
)
def test_presets_match_the_paper_figures(name, edges, edge_r, cloud_r):
    s = load_scenario(name)
    assert (s.topology.num_edge_servers, s.topology.edge_radius_m, s.topology.cloud_radius_m) == (edges, edge_r, cloud_r)
    assert (s.topology.ues_per_edge_min, s.topology.ues_per_edge_max) == (4, 6)
    assert name in list_presets()


def test_hash_changes_with_any_field_and_is_stable():
    a, b = load_scenario("fig6"), load_scenario("fig6")
    assert a.scenario_hash() == b.scenario_hash()
    c = scenario_from_dict({**a.model_dump(), "cache": {"capacity_bits": 1e6}})
    assert c.scenario_hash() != a.scenario_hash()


@pytest.mark.parametrize(
    "data,field",
    [
        ({"radio": {"num_channels": 0}}, "radio.num_channels"),
        ({"topology": {"ues_per_edge_min": 5, "ues_per_edge_max": 2}}, "ues_per_edge_max"),
        ({"tasks": {"input_bits": {"low": 10, "high": 1}}}, "tasks.input_bits"),
        ({"cache": {"policy": "fifo"}}, "cache.policy"),
        ({"compute": {"cloud_share": 1.5}}, "compute.cloud_share"),
        ({"radio": {"bandwidth": 1}}, "radio.bandwidth"),  # unknown field
        ({"topology": {"num_edge_servers": "many"}}, "topology.num_edge_servers"),
    ],
)
def test_invalid_scenarios_name_the_field(data, field):
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
        scenario_from_dict(data)


def test_invalid_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("fig99")


def test_scenario_show_prints_resolved_fields(tmp_path):
    result = runner.invoke(app, ["scenario", "show", "fig7", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["topology"]["edge_radius_m"] == 600
    assert shown["derived"]["scenario_hash"] == load_scenario("fig7").scenario_hash()
    assert shown["derived"]["max_ues"] == 42

    custom = tmp_path / "mine.yaml"
    custom.write_text("name: mine\nradio:\n  num_channels: 8\n")
    result = runner.invoke(app, ["scenario", "show", str(custom)])
    assert result.exit_code == 0
    assert "num_channels: 8" in result.stdout and "channel_bandwidth_hz: 10000000.0" in result.stdout

    custom.write_text("radio:\n  num_channels: -1\n")
    result = runner.invoke(app, ["scenario", "show", str(custom)])
    assert result.exit_code != 0 and result.stdout == ""
    assert "radio.num_channels" in result.stderr


def test_scenario_is_immutable():
    s = Scenario()
    with pytest.raises(ValidationError, match="frozen"):
        s.seed = 3
