"""TensorRT engine plans and the trtexec commands that build them on a device.

TensorRT cannot be installed on the machines this project is developed on; the plan
and command tests run everywhere; the real build is scripts/checks/tensorrt_build.py,
run by hand where TensorRT is."""

import pytest

from edgepilot.export.tensorrt import TensorRTUnavailable, build_engine, plan_engine, tensorrt_available, trtexec_command
from edgepilot.hardware.profiles import load_profile


def test_nano_fp16_plan_and_command():
    plan = plan_engine("dtac", load_profile("jetson-nano"), "fp16", "dtac_fp16.onnx", "dtac_fp16.plan")
    assert plan.flags == ["FP16"] and plan.workspace_mib == 256 and plan.tensorrt_version == "8.2"
    assert plan.shapes == {"local_state": ((1, 6), (1, 6), (64, 6))}
    cmd = trtexec_command(plan)
    assert cmd == ("trtexec --onnx=dtac_fp16.onnx --saveEngine=dtac_fp16.plan --minShapes=local_state:1x6 "
                   "--optShapes=local_state:1x6 --maxShapes=local_state:64x6 --workspace=256 --fp16 --explicitBatch")
    assert "--int8" not in cmd


def test_nano_refuses_int8_and_dynamic_quantization_has_no_engine():
    with pytest.raises(ValueError, match="does not support int8_static"):
        plan_engine("dtac", load_profile("jetson-nano"), "int8_static", "a.onnx", "a.plan")
    with pytest.raises(ValueError, match="no TensorRT engine for precision 'int8_dynamic'"):
        plan_engine("dtac", load_profile("jetson-orin-nano"), "int8_dynamic", "a.onnx", "a.plan")
    with pytest.raises(ValueError, match="has no TensorRT"):
        plan_engine("dtac", load_profile("laptop"), "fp32", "a.onnx", "a.plan")


def test_orin_int8_tac_plan_uses_mempool_and_two_inputs():
    p = load_profile("jetson-orin-nano")
    plan = plan_engine("tac", p, "int8_static", "tac.onnx", "tac.plan")
    r, u = p.shapes["rounds"], p.shapes["ues"]
    assert plan.shapes["joint_state"] == ((r.min, u.min, 6), (r.opt, u.opt, 6), (r.max, u.max, 6))
    assert plan.shapes["edge_id"] == ((r.min, u.min), (r.opt, u.opt), (r.max, u.max))
    cmd = trtexec_command(plan)
    assert f"--optShapes=joint_state:{r.opt}x{u.opt}x6,edge_id:{r.opt}x{u.opt}" in cmd
    assert "--memPoolSize=workspace:512" in cmd and "--int8" in cmd and "--fp16" in cmd
    assert "--workspace=" not in cmd and "--explicitBatch" not in cmd  # removed in TensorRT 10


def test_builder_says_when_tensorrt_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert tensorrt_available() is None
    plan = plan_engine("dtac", load_profile("jetson-nano"), "fp16", tmp_path / "a.onnx", tmp_path / "a.plan")
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        build_engine(plan)


def test_hardware_check_says_when_tensorrt_is_missing(monkeypatch, capsys):
    """The real engine build lives in scripts/checks/tensorrt_build.py (run where TensorRT is)."""
    import runpy
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    mod = runpy.run_path("scripts/checks/tensorrt_build.py")
    assert mod["main"](["--profile", "jetson-nano"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
