"""``edgepilot emulate`` end to end at a small size (real broker, gRPC, agents)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepilot.emulation.coordinator import EmulateConfig, central_decide, run_emulation
from edgepilot.edge_agent.system_model import EDGE, LOCAL


def _cfg(tmp_path, **kw) -> EmulateConfig:
    base = dict(ues=6, edges=3, rounds=3, policy="threshold", broker_kind="mosquitto", agent_procs=1,
                time_scale=0.02, wire_scale=0.1, out=str(tmp_path / "run"))
    base.update(kw)
    return EmulateConfig(**base)


def test_emulate_dtac_style_fleet_loses_nothing_and_writes_json_png(tmp_path) -> None:
    s = run_emulation(_cfg(tmp_path), progress=lambda m: None)
    n, r = 6, 3
    assert s["lost_decisions"] == 0 and s["decisions_received"] == n * r
    assert sum(s["offload_mix"].values()) == n * r
    # decentralized: per round one task in, one decision and one telemetry out per UE, nothing else
    assert s["messages_by_topic_per_round"] == {"decision": n, "task": n, "telemetry": n}
    assert s["messages_per_round"] == 3 * n
    assert all(len(rd["per_ue_measured_s"]) == n for rd in s["per_round"])
    assert all(rd["predicted_round_time_s"] > 0 and rd["measured_round_time_s"] > 0 for rd in s["per_round"])
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["rounds"] == r and saved["config"]["policy"] == "threshold"
    png = tmp_path / "run" / "summary.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(s["agents"]) == n and all(a["rounds"] == r for a in s["agents"])


def test_centralized_baseline_needs_every_state_and_a_command_per_ue(tmp_path) -> None:
    s = run_emulation(_cfg(tmp_path, policy="centralized", rounds=2, agent_procs=0), progress=lambda m: None)
    n = 6
    assert s["lost_decisions"] == 0
    per = s["messages_by_topic_per_round"]
    assert per["state"] == n and per["command"] == n  # the signalling DTAC does without
    assert s["messages_per_round"] == 5 * n
    assert s["bytes_by_topic_per_round"]["state"] > 0


def test_central_controller_fills_queues_only_while_faster_than_local() -> None:
    states = np.array([[1e-10, 10.0, 1.0, 1.0, 0.2, 50.0]] * 6)
    d = central_decide(states, np.zeros(6, dtype=np.int64), num_edges=1, num_channels=4)
    # each edge slot costs 2 s: offloading stops once the queue would pass the 10 s local time
    assert int((d.offload[0] == EDGE).sum()) == 4 and int((d.offload[0] == LOCAL).sum()) == 2


def test_broker_restart_during_the_run_loses_no_decision(tmp_path) -> None:
    s = run_emulation(_cfg(tmp_path, rounds=3, restart_broker_at=1), progress=lambda m: None)
    assert s["lost_decisions"] == 0
    assert s["decisions_received"] == 6 * 3
    assert s["telemetry_out_of_order"] == 0


def test_emulate_cli_on_the_embedded_broker(tmp_path) -> None:
    from edgepilot.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["emulate", "--policy", "threshold", "--ues", "3", "--edges", "3", "--rounds", "2",
                                   "--agent-procs", "0", "--time-scale", "0.02", "--wire-scale", "0.1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "round time (s)" in res.output and "lost decisions" in res.output
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("args,fragment", [(["--ues", "5", "--edges", "3"], "multiple"),
                                           (["--bundle", "x.bundle"], "--trusted-key"),
                                           (["--policy", "threshold", "--trusted-key", "k.pub"], "needs bundle"),
                                           (["--restart-broker-at", "1"], "--broker-kind mosquitto"),
                                           (["--broker-kind", "external"], "--broker"),
                                           (["--broker", "localhost"], "HOST:PORT")])
def test_emulate_cli_rejects_bad_options(tmp_path, args, fragment) -> None:
    from edgepilot.cli import app

    res = CliRunner().invoke(app, ["emulate", *args, "--out", str(tmp_path)])
    assert res.exit_code == 2 and fragment in res.output
    assert not (tmp_path / "summary.json").exists()


def test_emulate_config_file_set_and_options_in_that_order(tmp_path) -> None:
    """--config, then --set, then the options given: the run's summary records the result."""
    from edgepilot.cli import app

    cfg = tmp_path / "emulate.yaml"
    cfg.write_text("policy: threshold\nues: 4\nedges: 2\nrounds: 3\nagent_procs: 0\ntime_scale: 0.02\n"
                   "wire_scale: 0.1\nplot: false\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["emulate", "--config", str(cfg), "--set", "rounds=2", "--set", "ues=6",
                                   "--edges", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "summary.json").read_text())
    assert saved["config"]["ues"] == 6 and saved["config"]["edges"] == 3 and saved["rounds"] == 2
    assert saved["config"]["policy"] == "threshold" and not (out / "summary.png").exists()
    bad = CliRunner().invoke(app, ["emulate", "--config", str(cfg), "--set", "edges=99", "--out", str(out)])
    assert bad.exit_code == 2 and "--set edges: Input should be less than or equal to 64" in bad.output
    cfg.write_text("num_ues: 4\n")  # the old field name: refused, named
    bad = CliRunner().invoke(app, ["emulate", "--config", str(cfg)])
    assert bad.exit_code == 2 and f"{cfg}: num_ues: Extra inputs are not permitted" in bad.output


def test_emulate_config_loads_with_load_config(tmp_path) -> None:
    from edgepilot.config import ConfigError, load_config

    path = tmp_path / "e.yaml"
    path.write_text("ues: 8\nedges: 4\nbroker_kind: external\nbroker: broker.lan:1883\n")
    cfg = load_config(EmulateConfig, path, ["rounds=5"])
    assert (cfg.ues, cfg.edges, cfg.rounds, cfg.broker_host, cfg.broker_port) == (8, 4, 5, "broker.lan", 1883)
    assert EmulateConfig().broker_host == "127.0.0.1" and EmulateConfig().broker_port == 0
    with pytest.raises(ConfigError, match="edges"):
        load_config(EmulateConfig, path, ["edges=3"])  # 8 UEs on 3 edge servers


def test_a_task_deadline_sends_late_offloads_local_and_none_is_the_default(tmp_path) -> None:
    assert EmulateConfig().deadline_factor == 0.0  # like the system model: no deadline
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="deadline_factor"):
            EmulateConfig(deadline_factor=bad)
    # a deadline far below any offload's time: every offload gives up and runs locally
    s = run_emulation(_cfg(tmp_path, policy="centralized", rounds=2, agent_procs=0, deadline_factor=1e-3),
                      progress=lambda m: None)
    offloaded = s["offload_mix"]["edge"] + s["offload_mix"]["cloud"]
    assert offloaded > 0, s["offload_mix"]
    assert s["fallbacks"] == offloaded and s["lost_decisions"] == 0


def test_demo_command_runs_the_shipped_dtac_fleet(tmp_path) -> None:
    """`make demo` at a tiny size: exports and signs the shipped DTAC, runs its agents."""
    from edgepilot.cli import app

    res = CliRunner().invoke(app, ["demo", "--ues", "3", "--edges", "3", "--rounds", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "emulate" / "summary.json").read_text())
    assert summary["config"]["policy"] == "dtac" and summary["lost_decisions"] == 0
    assert summary["rounds"] == 1 and "round time (s)" in res.output
