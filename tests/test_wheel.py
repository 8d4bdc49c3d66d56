"""The wheel works as a user gets it: built with ``python -m build``, installed into a
fresh virtual environment (base install plus the ``fleet`` extra; dependencies from the
package index, no torch), then ``edgepilot agent --help``, ``edgepilot serve`` (a health
check and one split-inference request against the shipped split model) and ``edgepilot
demo`` run outside the checkout: the working directory is a temporary one and nothing of
the checkout is on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from edgepilot.hardware.jetson.flash import build_wheel

ASSET_SUFFIXES = (".onnx", ".bundle", ".yaml", ".sh", ".service", ".conf")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))  # python -m build --wheel on a clean copy of the checkout


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> dict:
    """A fresh venv with ``edgepilot[fleet]`` from the wheel; ``env`` has no PYTHONPATH."""
    root = tmp_path_factory.mktemp("user")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, cwd=root, env=env, timeout=120)
    py = root / "venv" / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[fleet]"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    work = root / "work"  # an empty working directory: nothing of the checkout around
    work.mkdir()
    return {"py": py, "edgepilot": root / "venv" / "bin" / "edgepilot", "env": env, "cwd": work}


def run(venv: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=venv["cwd"], env=venv["env"], capture_output=True, text=True,
                          timeout=timeout)


def test_wheel_has_one_top_level_package_and_every_asset(wheel) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"edgepilot", wheel.name.split("-py3")[0] + ".dist-info"}, top
    for suffix in ASSET_SUFFIXES:
        assert any(n.endswith(suffix) for n in names), f"no {suffix} file in the wheel"
    for needed in ("edgepilot/edge_agent/split/assets/fmnist-cnn/manifest.json",
                   "edgepilot/edge_agent/split/assets/fmnist-cnn/tail.onnx",
                   "edgepilot/models/policies/dtac_fig5-laptop.bundle",
                   "edgepilot/hardware/jetson/install.sh", "edgepilot/hardware/jetson/edgepilot-agent.service",
                   "edgepilot/hardware/mosquitto/mosquitto.conf", "edgepilot/hardware/profiles/jetson-nano.yaml"):
        assert needed in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)
    metadata = zipfile.ZipFile(wheel).read(wheel.name.split("-py3")[0] + ".dist-info/METADATA").decode()
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base and not any("torch" in line for line in base)  # the device install has no torch


def test_installed_package_is_the_wheel_and_has_no_torch(venv) -> None:
    r = run(venv, venv["py"], "-c", "import edgepilot, importlib.util as u; print(edgepilot.__file__); "
                                    "print(u.find_spec('torch') is None)")
    assert r.returncode == 0, r.stderr
    where, no_torch = r.stdout.split()
    assert where.startswith(str(venv["py"].parent.parent)) and no_torch == "True"


def test_agent_help(venv) -> None:
    r = run(venv, venv["edgepilot"], "agent", "--help")
    assert r.returncode == 0, r.stderr
    assert "--ue-id" in r.stdout and "--broker" in r.stdout


PROBE = """
import json, sys
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.client import SplitClient, as_model_input

target = sys.argv[1]
channel = grpc.insecure_channel(target)
health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
bundle = SplitBundle.load()  # the shipped split model, from the installed package's assets
image = np.random.default_rng(0).integers(0, 256, size=(28, 28), dtype=np.uint8)
with SplitClient(target, bundle) as client:
    result = client.infer(image)
local = bundle.tail_logits(bundle.head_symbols(as_model_input(image[None])))[0]
print(json.dumps({"health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                  "remote": result.logits.tolist(), "local": local.tolist(),
                  "predicted": int(result.predicted_class), "assets": str(bundle.root)}))
"""


def test_serve_answers_health_and_a_split_inference_request(venv, tmp_path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([str(venv["edgepilot"]), "serve", "--port", "0", "--ready-file", str(ready)],
                            cwd=venv["cwd"], env=venv["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"edgepilot serve did not start: {proc.stdout.read()}")
            time.sleep(0.1)
        port = json.loads(ready.read_text())["port"]
        r = run(venv, venv["py"], "-c", PROBE, f"127.0.0.1:{port}", timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["health"] == "SERVING"
        assert out["assets"].startswith(str(venv["py"].parent.parent))  # the wheel's copy of the split model
        remote, local = out["remote"], out["local"]
        assert len(remote) == 10 and max(abs(a - b) for a, b in zip(remote, local)) < 1e-4  # the server ran the tail
        assert out["predicted"] == max(range(10), key=lambda i: local[i])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_demo_runs_without_torch(venv, tmp_path) -> None:
    r = run(venv, venv["edgepilot"], "demo", "--ues", "3", "--rounds", "2", "--edges", "1", "--out", str(tmp_path / "demo"),
            timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert not (venv["cwd"] / "runs").exists()  # everything went under --out
    assert any((tmp_path / "demo").rglob("*.json")), sorted(p.name for p in (tmp_path / "demo").rglob("*"))
