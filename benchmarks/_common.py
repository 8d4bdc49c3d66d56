"""Shared helpers of the benchmark scripts: one-core pinning, robust timing, JSON output."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from edgepilot.cloud_trainer.environment import run_environment


def pin_one_core() -> None:
    """Pin the process to one CPU core and single-threaded math libraries."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def repeat_timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(xs) -> float:
    return float(statistics.median(xs))


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": run_environment(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    return path
