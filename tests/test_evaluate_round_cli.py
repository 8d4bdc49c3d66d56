"""`edgepilot evaluate-round`: output matches the rules on random instances, bad input is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepilot.edge_agent.system_model import NetworkParams
from edgepilot.edge_agent.system_model_reference import evaluate_round_loop
from edgepilot.cli import app

runner = CliRunner()

SCALARS = dict(
    channel_bandwidth_hz=20e6,
    noise_power_w=6.3e-13,
    ue_max_power_w=0.245,
    edge_power_w=1.0,
    cloud_power_w=10.0,
    ue_max_cpu_hz=1.43e9,
    edge_cpu_hz=8.64e9,
    cloud_cpu_hz=43.2e9,
    kappa=1e-27,
)


def random_instance(rng: np.random.Generator) -> dict:
    k, n = int(rng.integers(1, 4)), int(rng.integers(1, 9))
    return {
        **SCALARS,
        "weights": [float(rng.uniform(0, 2)), float(rng.uniform(0, 2))],
        "edges": [{"gain_to_cloud": float(10 ** rng.uniform(-12, -9))} for _ in range(k)],
        "ues": [
            {
                "edge": int(rng.integers(k)),
                "gain": float(10 ** rng.uniform(-13, -7)),
                "input_bits": float(rng.uniform(5e6, 2e7)),
                "output_bits": float(rng.uniform(2e6, 4e7)),
                "cycles_per_bit": float(rng.uniform(600, 1200)),
                "cached": int(rng.integers(2)),
                "offload": int(rng.integers(3)),
                "channel": int(rng.integers(3)),
                "power_ratio": float(rng.uniform(0.01, 1)),
                "cpu_ratio": float(rng.uniform(0.01, 1)),
            }
            for _ in range(n)
        ],
    }


def _params(inst: dict) -> NetworkParams:
    return NetworkParams(**SCALARS, w_time=inst["weights"][0], w_energy=inst["weights"][1])


def test_matches_the_rules_on_random_instances(tmp_path):
    rng = np.random.default_rng(2024)
    for i in range(40):
        inst = random_instance(rng)
        path = tmp_path / f"round{i}.json"
        path.write_text(json.dumps(inst))
        result = runner.invoke(app, ["evaluate-round", str(path)])
        assert result.exit_code == 0, result.stderr
        got = json.loads(result.stdout)
        want = evaluate_round_loop(_params(inst), inst["ues"], [e["gain_to_cloud"] for e in inst["edges"]])
        assert got["round_time_s"] == pytest.approx(want["round_time_s"], rel=1e-9)
        assert got["objective"] == pytest.approx(want["objective"], rel=1e-9)
        assert len(got["ues"]) == len(inst["ues"])
        for g, w in zip(got["ues"], want["ues"]):
            assert set(g) == {"compute_time_s", "ue_edge_comm_time_s", "edge_cloud_comm_time_s", "energy_j", "execution_time_s"}
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12)


def _mutate(inst, path, value):
    target = inst
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return inst


@pytest.mark.parametrize(
    "path,value,named",
    [
        (("ues", 0, "offload"), 3, "ues.0.offload"),
        (("ues", 0, "power_ratio"), 0.0, "ues.0.power_ratio"),
        (("ues", 0, "cpu_ratio"), 1.5, "ues.0.cpu_ratio"),
        (("ues", 0, "edge"), 7, "ues.0.edge"),
        (("ues", 0, "input_bits"), -1.0, "ues.0.input_bits"),
        (("ues", 0, "output_bits"), -5.0, "ues.0.output_bits"),
        (("ues", 0, "gain"), KeyError, "ues.0.gain"),
        (("kappa",), KeyError, "kappa"),
        (("noise_power_w",), "loud", "noise_power_w"),
        (("ues", 0, "cached"), 2, "ues.0.cached"),
    ],
)
def test_invalid_input_names_the_field_and_prints_nothing(tmp_path, path, value, named):
    inst = random_instance(np.random.default_rng(1))
    inst["edges"] = inst["edges"][:1]
    for ue in inst["ues"]:
        ue["edge"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_mutate(inst, path, value)))
    result = runner.invoke(app, ["evaluate-round", str(bad)])
    assert result.exit_code == 2  # usage: an invalid input file
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert named in result.stderr


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["evaluate-round", str(bad)])
    assert result.exit_code == 2 and result.stdout == "" and "not valid JSON" in result.stderr
    result = runner.invoke(app, ["evaluate-round", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and result.stdout == "" and "missing.json" in result.stderr


def test_console_script_end_to_end(tmp_path):
    inst = random_instance(np.random.default_rng(7))
    path = tmp_path / "round.json"
    path.write_text(json.dumps(inst))
    exe = [sys.executable, "-m", "edgepilot"]
    ok = subprocess.run([*exe, "evaluate-round", str(path)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["objective"] > 0
    inst["ues"][0]["offload"] = 5
    path.write_text(json.dumps(inst))
    bad = subprocess.run([*exe, "evaluate-round", str(path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and "ues.0.offload" in bad.stderr and "Traceback" not in bad.stderr
