"""The device side must work where torch is not installed: every edge_agent module (and
edgepilot.hardware.profiles, and the bundle / profile commands) imports, and a verified bundle
runs, in a subprocess where importing torch, cloud_trainer or export raises ImportError."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.export_fixtures import keypair, reference_bundle

BLOCKER = textwrap.dedent('''
    import importlib.abc, sys
    BLOCKED = ("torch", "edgepilot.cloud_trainer", "edgepilot.export", "onnx", "onnxscript")
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{name} is blocked: the device has no torch / trainer / exporter")
            return None
    sys.meta_path.insert(0, Blocker())
''')


def _run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    script = tmp_path / "probe.py"
    script.write_text(BLOCKER + textwrap.dedent(body))
    env = {"PYTHONPATH": f"{site}:{Path(__file__).resolve().parents[1]}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, env=env)


def test_blocker_really_blocks(tmp_path):
    proc = _run(tmp_path, "import torch\n")
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


def test_every_edge_agent_module_imports_without_torch(tmp_path):
    proc = _run(tmp_path, '''
        import importlib, pkgutil, json, sys
        import edgepilot.edge_agent as edge_agent
        names = ["edgepilot.edge_agent"] + [m.name for m in pkgutil.walk_packages(edge_agent.__path__, "edgepilot.edge_agent.")]
        failed = {}
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as err:
                failed[name] = repr(err)
        import edgepilot.hardware.profiles
        assert "torch" not in sys.modules
        print(json.dumps({"imported": names, "failed": failed}))
    ''')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"edgepilot.edge_agent.runtime", "edgepilot.edge_agent.bundle", "edgepilot.edge_agent.actions", "edgepilot.edge_agent.system_model"} <= set(result["imported"])
    assert result["failed"] == {}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    work = tmp_path_factory.getbasetemp() / "edgepilot-export"
    work.mkdir(exist_ok=True)
    path, _ = reference_bundle(work, "laptop", precisions=("fp32", "int8_static", "int8_dynamic"))
    return path, keypair(work)[1]


def test_runtime_and_bundle_commands_work_without_torch(tmp_path, bundle):
    path, pub = bundle
    proc = _run(tmp_path, '''
        import json, sys
        import numpy as np
        from edgepilot.edge_agent.runtime import PolicyRuntime
        rt = PolicyRuntime.from_bundle(sys.argv[1], [sys.argv[2]], profile="laptop")
        d = rt.decide(np.full((3, 6), 1e-3))
        assert "torch" not in sys.modules
        print(json.dumps({"offload": d["offload"].tolist(), "backend": rt.backend}))
    ''', str(path), str(pub))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["backend"] == "onnxruntime" and len(out["offload"]) == 3
    proc = _run(tmp_path, '''
        import sys
        from edgepilot.cli import app
        sys.argv = ["edgepilot"] + sys.argv[1:]
        app()
    ''', "bundle", "verify", str(path), "-T", str(pub))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verified"] is True
