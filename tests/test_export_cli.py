"""`edgepilot export`, `keys generate`, `bundle sign|verify|inspect`, `profiles list` through
the real command line (console script in a subprocess)."""

import json
import subprocess
import sys

import pytest

from tests.helpers.export_fixtures import reference_checkpoint

EDGEPILOT = [sys.executable, "-m", "edgepilot"]


def run(*args, check=None):
    proc = subprocess.run([*EDGEPILOT, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.getbasetemp() / "edgepilot-export"
    d.mkdir(exist_ok=True)
    return d


def test_export_sign_verify_inspect(work, tmp_path):
    ckpt = reference_checkpoint(work, "dtac")
    keys = json.loads(run("keys", "generate", "--out", tmp_path / "keys", "--name", "ci", check=0).stdout)
    assert run("keys", "generate", "--out", tmp_path / "keys", "--name", "ci", check=2).stderr.startswith("error: ")
    out = tmp_path / "nano.bundle"
    proc = run("export", ckpt, "--profile", "jetson-nano", "--out", out, "--states", 500, "--calibration-states", 200,
               "--report", tmp_path / "parity.json", check=0)
    report = json.loads(proc.stdout)
    assert set(report["variants"]) == {"fp32", "fp16"} and report["signed"] is False
    assert report["onnx"]["opset"] == 16 and "LayerNormalization" not in report["onnx"]["ops"]
    assert "TensorRT is not installed" in proc.stderr and "trtexec --onnx=artifacts/dtac_fp16.onnx" in "\n".join(report["tensorrt"]["commands"])
    assert json.loads((tmp_path / "parity.json").read_text())["variants"]["fp16"]["passed"] is True
    # unsigned -> refused (exit 1); signed -> verified; the wrong key -> refused; a missing key file -> usage (2)
    assert run("bundle", "verify", out, "-T", keys["public_key"], check=1).stdout.count('"verified": false') == 1
    assert run("bundle", "verify", out, "--trusted-key", tmp_path / "nokey.pub", check=2).stderr.startswith("error: --trusted-key")
    run("bundle", "sign", out, "--signing-key", keys["private_key"], check=0)
    ok = json.loads(run("bundle", "verify", out, "-T", tmp_path / "keys", check=0).stdout)
    assert ok["verified"] and ok["key_id"] == keys["key_id"] and ok["target"] == "jetson-nano"
    other = json.loads(run("keys", "generate", "--out", tmp_path / "other", check=0).stdout)
    assert "unknown key" in run("bundle", "verify", out, "-T", other["public_key"], check=1).stderr
    manifest = json.loads(run("bundle", "inspect", out, check=0).stdout)["manifest"]
    assert manifest["target"]["name"] == "jetson-nano" and manifest["opset"] == 16
    assert {a["precision"] for a in manifest["artifacts"]} == {"fp32", "fp16"}
    assert manifest["inputs"] == [{"name": "local_state", "dtype": "float32", "shape": ["batch", 6]}]
    assert manifest["scenario_hash"] and all(len(h) == 64 for h in manifest["files"].values())
    assert "tensorrt/build_engines.sh" in manifest["files"]


def test_export_refuses_what_the_profile_cannot_run(work, tmp_path):
    """Bad input exits 2 with one error line and writes nothing."""
    ckpt = reference_checkpoint(work, "dtac")
    proc = run("export", ckpt, "--profile", "jetson-nano", "--precisions", "int8_static", "--out", tmp_path / "x.bundle", check=2)
    assert "jetson-nano does not support int8_static" in proc.stderr and not (tmp_path / "x.bundle").exists()
    proc = run("export", ckpt, "-p", "jetson-tx9", check=2)
    assert proc.stderr.startswith("error: --profile: unknown hardware profile") and len(proc.stderr.splitlines()) == 1
    proc = run("export", tmp_path / "missing.pt", "--profile", "laptop", check=2)
    assert "checkpoint not found" in proc.stderr
    proc = run("export", ckpt, "--profile", "laptop", "--signing-key", tmp_path / "none.key", check=2)
    assert proc.stderr.startswith("error: --signing-key")


def test_export_fails_below_the_agreement_threshold(work, tmp_path):
    ckpt = reference_checkpoint(work, "dtac")
    out = tmp_path / "never.bundle"
    proc = run("export", ckpt, "--profile", "laptop", "--precisions", "int8_dynamic", "--min-agreement", "1.0",
               "--no-mixed-precision", "--states", 500, "--calibration-states", 100, "--out", out, check=1)
    assert "decision agreement below 1.0000" in proc.stderr and "int8_dynamic" in proc.stderr
    assert not out.exists()
    assert json.loads(proc.stdout)["variants"]["int8_dynamic"]["passed"] is False
    # with --on-parity-failure drop the bundle is written without the failing variant
    proc = run("export", ckpt, "--profile", "laptop", "--precisions", "int8_dynamic", "--min-agreement", "1.0",
               "--no-mixed-precision", "--on-parity-failure", "drop", "--states", 500, "--calibration-states", 100,
               "--out", out, check=0)
    assert json.loads(proc.stdout)["dropped"] == ["int8_dynamic"]
    manifest = json.loads(run("bundle", "inspect", out, check=0).stdout)["manifest"]
    assert [a["precision"] for a in manifest["artifacts"]] == ["fp32"]


def test_profiles_list():
    data = json.loads(run("profiles", "list", check=0).stdout)
    assert {p["name"] for p in data["profiles"]} >= {"jetson-nano", "laptop"} and data["detected"] == "laptop"
