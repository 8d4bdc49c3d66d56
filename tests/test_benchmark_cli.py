"""Benchmark command lines refuse flag combinations they would silently ignore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_n4_benchmark_refuses_training_flags_with_a_checkpoint(tmp_path):
    out = tmp_path / "n4.json"
    proc = subprocess.run([sys.executable, "benchmarks/dtac_exhaustive_n4.py", "--checkpoint", str(tmp_path / "tac.pt"),
                           "--resume", "--episodes", "2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--checkpoint evaluates a trained TAC; --resume, --episodes only apply to a training run" in proc.stderr
    assert not out.exists() and not (tmp_path / "tac.pt").exists()
