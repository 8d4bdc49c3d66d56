"""Where a run happened: CPU, Python and the numeric libraries' versions.

RL training amplifies last-bit differences of floating point, and those differ with
the CPU's kernels and the numpy / torch builds (docs/training.md: the same code and
seed trained different fig6 TACs on two machines). A training seed therefore names
one run only together with this record; checkpoints and benchmark JSON carry it.
No torch import: the versions come from the installed distributions' metadata.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "torch", "onnxruntime")


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's model name ("AMD EPYC ...", "Intel(R) Xeon(R) ..."); where the
    kernel does not say (macOS, Windows, an ARM /proc/cpuinfo without it), what
    :mod:`platform` knows."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# the widest vector extension the CPU reports, widest first: torch and numpy pick their
# kernels by it, so two hosts with one model name can still train different runs
VECTOR_ISAS = (("amx_tile", "amx"), ("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("sve", "sve"), ("asimd", "neon"), ("neon", "neon"))


def vector_isa(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """"avx512", "avx2", "neon", ... from the first CPU's flags (x86 "flags", ARM
    "Features"); None where the kernel does not list them."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("flags", "Features"):
                flags = set(value.split())
                return next((name for flag, name in VECTOR_ISAS if flag in flags), None)
    except OSError:
        pass
    return None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_environment() -> dict:
    """A JSON-ready record of the machine and library versions a run used."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "vector_isa": vector_isa(),
        "cpus": os.cpu_count(),
        **{name: package_version(name) for name in PACKAGES},
    }


def describe(env: dict | None) -> str:
    """One line for reports: "Intel(R) Xeon(R) Processor, 2 CPUs, numpy 2.4.6, torch 2.13.0+cpu"."""
    if not env:
        return "environment not recorded"
    parts = [env.get("cpu_model") or env.get("processor") or "unknown CPU"]
    if env.get("vector_isa"):
        parts[0] += f" ({env['vector_isa']})"
    if env.get("cpus"):
        parts.append(f"{env['cpus']} CPUs")
    versions = [f"{name} {env[name]}" for name in ("numpy", "torch") if env.get(name)]
    if not env.get("cpu_model") and not versions:  # records written before this module
        parts.append("CPU model and library versions not recorded")
    return ", ".join(parts + versions)
