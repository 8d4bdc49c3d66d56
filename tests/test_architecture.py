"""Architecture checks that run in `make test`:

* the device floor: everything a device runs passes ``vermin --target=3.8-`` (Python 3.8
  is JetPack 4.6's newest packaged Python); files whose annotations are evaluated at run
  time (typer commands, pydantic models) pass it with ``--eval-annotations``;
* the import contracts of ``[tool.importlinter]`` in pyproject.toml (``lint-imports``):
  device code never imports torch, the trainer, the exporter, emulation or the CLI; the
  layers cli > emulation > export > cloud_trainer > edge_agent > hardware > (v1, config);
  no import cycles between the modules of any package;
* ``ruff check`` with the rule set of ``[tool.ruff]``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the tools are installed with edgepilot[dev] beside this Python

# What a device (Jetson UE agent, edge server) runs: the agent, runtime, bundle
# verification, split client / server, hardware profiles and assets, the CLI that starts them.
DEVICE = ["edgepilot/__init__.py", "edgepilot/__main__.py", "edgepilot/config.py", "edgepilot/models", "edgepilot/v1",
          "edgepilot/edge_agent", "edgepilot/hardware", "edgepilot/cli"]


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    exe = BIN / name
    assert exe.exists(), f"{exe} missing: run `make setup` (edgepilot[dev] installs {name})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever is installed
    return subprocess.run([str(exe), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _imports_pydantic(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pydantic":
            return True
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pydantic" for a in node.names):
            return True
    return False


def evaluated_annotation_files() -> list[str]:
    """Files whose annotations run: every CLI module (typer reads each command's signature
    when any command runs, on the device too) and every device module with a pydantic model."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "edgepilot/cli").rglob("*.py"))
    for entry in DEVICE:
        p = REPO / entry
        for f in ([p] if p.is_file() else sorted(p.rglob("*.py"))):
            rel = str(f.relative_to(REPO))
            if rel not in files and _imports_pydantic(f):
                files.append(rel)
    return files


def test_device_code_runs_on_python_3_8() -> None:
    """Syntax and standard library: ``from __future__ import annotations`` makes
    ``list[int]`` in a plain function annotation fine on 3.8, so this pass does not
    evaluate annotations."""
    r = _tool("vermin", "--target=3.8-", "--violations", "--no-tips", *DEVICE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_evaluated_annotations_run_on_python_3_8() -> None:
    """typer and pydantic evaluate annotations: there ``list[str]`` or ``X | None`` fail on
    3.8 even under ``from __future__ import annotations`` (write typing.List / Optional)."""
    files = evaluated_annotation_files()
    assert "edgepilot/cli/commands/fleet.py" in files and "edgepilot/config.py" in files
    r = _tool("vermin", "--target=3.8-", "--violations", "--no-tips", "--eval-annotations", "--feature", "union-types",
              *files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts() -> None:
    r = _tool("lint-imports", "--no-cache")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_ruff() -> None:
    r = _tool("ruff", "check", "--no-cache", "edgepilot", "tests", "benchmarks", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr
