"""The run-environment record that checkpoints and benchmark JSON carry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgepilot.cloud_trainer.environment import cpu_model, describe, run_environment, vector_isa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _common import write_json  # noqa: E402


def test_cpu_model_reads_the_model_name_and_falls_back_where_there_is_none(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t: avx2\n")
    assert cpu_model(x86) == "AMD EPYC 7B13 64-Core Processor"
    arm = tmp_path / "arm"  # a Raspberry Pi / Jetson style cpuinfo: "Model" at the end
    arm.write_text("processor\t: 0\nBogoMIPS\t: 38.40\n\nModel\t\t: NVIDIA Jetson Nano Developer Kit\n")
    assert cpu_model(arm) == "NVIDIA Jetson Nano Developer Kit"
    bare = tmp_path / "bare"
    bare.write_text("processor\t: 0\nmodel name\t: \n")
    assert cpu_model(bare) and cpu_model(bare) == cpu_model(tmp_path / "missing")


def test_vector_isa_names_the_widest_extension_the_cpu_lists(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: fpu sse4_2 avx avx2 fma avx512f avx512dq\n")
    assert vector_isa(cpuinfo) == "avx512"
    cpuinfo.write_text("processor\t: 0\nflags\t: fpu sse4_2 avx avx2 fma\n")
    assert vector_isa(cpuinfo) == "avx2"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\nModel\t: NVIDIA Jetson Nano Developer Kit\n")
    assert vector_isa(cpuinfo) == "neon"
    cpuinfo.write_text("processor\t: 0\nflags\t: fpu sse2\n")
    assert vector_isa(cpuinfo) is None and vector_isa(tmp_path / "missing") is None
    assert describe({"cpu_model": "AMD EPYC", "vector_isa": "avx512", "cpus": 2}) == "AMD EPYC (avx512), 2 CPUs"


def test_benchmark_json_names_the_machine_and_library_versions(tmp_path):
    out = write_json(tmp_path / "b.json", {"benchmark": "x", "median_s": 1.5})
    payload = json.loads(out.read_text())
    assert payload["median_s"] == 1.5 and payload["machine"] == json.loads(json.dumps(run_environment()))
    assert payload["machine"]["numpy"] == np.__version__ and payload["machine"]["cpu_model"]
    assert describe(payload["machine"]).endswith(f"numpy {np.__version__}, torch {payload['machine']['torch']}")


def test_describe_says_when_an_old_record_lacks_the_cpu_and_versions():
    old = {"python": "3.11.7", "processor": "x86_64", "cpus": 2}  # benchmark JSON before the record
    assert describe(old) == "x86_64, 2 CPUs, CPU model and library versions not recorded"
    assert describe(None) == "environment not recorded"
