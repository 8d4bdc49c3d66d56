"""hardware/jetson/install.sh into a scratch root (no systemd start, venv provisioned)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_install_script_lays_out_env_unit_keys_and_runs_the_cli(tmp_path) -> None:
    prefix, etc, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "units"
    prefix.mkdir()
    units.mkdir()
    (prefix / "venv").symlink_to(Path(sys.prefix))  # the test venv stands in for the provisioned one
    key = tmp_path / "fleet.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("ca\n")
    pw = tmp_path / "ue.pass"
    pw.write_text("s3cret")
    env = {**os.environ, "PREFIX": str(prefix), "ETC_DIR": str(etc), "SYSTEMD_DIR": str(units), "SKIP_PIP": "1", "NO_START": "1"}
    r = subprocess.run(["bash", str(REPO / "edgepilot/hardware/jetson/install.sh"), "--ue-id", "ue-007", "--edge-id", "1",
                        "--broker", "broker.lan:8883", "--ca", str(ca), "--trusted-key", str(key), "--password-file", str(pw)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "edgepilot" in r.stdout and "installed" in r.stdout
    agent_env = (etc / "agent.env").read_text().splitlines()
    assert "EDGEPILOT_UE_ID=ue-007" in agent_env and "EDGEPILOT_MQTT_USERNAME=ue-007" in agent_env
    assert "EDGEPILOT_MQTT_PASSWORD=s3cret" in agent_env and "EDGEPILOT_BROKER=broker.lan:8883" in agent_env
    assert oct((etc / "agent.env").stat().st_mode & 0o777) == "0o600"
    assert (etc / "trusted_keys" / "fleet.pub").read_text() == key.read_text()
    unit = (units / "edgepilot-agent.service").read_text()
    assert "ExecStart=/opt/edgepilot/venv/bin/edgepilot agent" in unit and "Restart=always" in unit
    # a bad UE id is refused before anything is written
    r = subprocess.run(["bash", str(REPO / "edgepilot/hardware/jetson/install.sh"), "--ue-id", "a/b", "--edge-id", "1",
                        "--broker", "x:1", "--trusted-key", str(key)], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "bad --ue-id" in r.stderr
