"""torch -> ONNX: opset per profile, no LayerNormalization at opset 16, dynamic axes,
numerical equality with torch, and the affine folding pass."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from cloud_trainer.checkpoint import load_actor
from cloud_trainer.envs.simulator import sample_local_states
from cloud_trainer.scenario import load_scenario
from export.onnx_export import ExportError, check_model, export_actor, fold_affine_chains
from export.testing import reference_checkpoint


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "edgepilot-export"


@pytest.fixture(scope="module")
def states():
    return sample_local_states(load_scenario("fig5"), 500, seed=3).astype(np.float32)


@pytest.fixture(scope="module")
def dtac(work):
    work.mkdir(exist_ok=True)
    return load_actor(reference_checkpoint(work, "dtac"))[0]


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_nano_export_is_opset_16_without_layernorm(dtac, work, states):
    path = export_actor(dtac, "dtac", work / "nano.onnx", opset=16, ir_version=8)
    model = onnx.load(str(path))
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [16]
    assert model.ir_version == 8
    ops = {n.op_type for n in model.graph.node}
    assert "LayerNormalization" not in ops and "Gelu" not in ops and "Attention" not in ops
    assert [i.name for i in model.graph.input] == ["local_state"]
    with torch.no_grad():
        ref = [t.numpy() for t in dtac(torch.as_tensor(states))]
    for batch in (1, 7, 500):  # the batch axis is dynamic
        out = _run(path, {"local_state": states[:batch]})
        for o, r in zip(out, ref):
            np.testing.assert_allclose(o, r[:batch], atol=2e-5)


def test_opset_17_fuses_layernorm_and_folds_gemms(dtac, work, states):
    path = export_actor(dtac, "dtac", work / "orin.onnx", opset=17)
    info = check_model(path, 17)
    assert info["ops"]["LayerNormalization"] == 2 * 2 + 3  # 2 encoders x 2 + 1 decoder x 3
    nano = check_model(work / "nano.onnx", 16) if (work / "nano.onnx").exists() else None
    if nano is not None:
        assert info["nodes"] < nano["nodes"]
    with torch.no_grad():
        ref = [t.numpy() for t in dtac(torch.as_tensor(states))]
    for o, r in zip(_run(path, {"local_state": states}), ref):
        np.testing.assert_allclose(o, r, atol=2e-5)


def test_tac_export_has_dynamic_rounds_and_ues(work, states):
    tac = load_actor(reference_checkpoint(work, "tac"))[0]
    path = export_actor(tac, "tac", work / "tac.onnx", opset=16)
    assert "LayerNormalization" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    rng = np.random.default_rng(0)
    for rounds, ues in ((1, 1), (1, 30), (3, 17)):
        x = states[: rounds * ues].reshape(rounds, ues, 6)
        e = rng.integers(0, 5, (rounds, ues))
        with torch.no_grad():
            ref = [t.numpy() for t in tac(torch.as_tensor(x), torch.as_tensor(e))]
        for o, r in zip(_run(path, {"joint_state": x, "edge_id": e}), ref):
            np.testing.assert_allclose(o, r, atol=2e-5)


def test_check_model_refuses_layernorm_below_17_and_wrong_opset(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=-1)
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(np.ones(4, np.float32), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    onnx.save(model, tmp_path / "ln16.onnx")
    with pytest.raises(ExportError, match="opset 16 target cannot parse LayerNormalization"):
        check_model(tmp_path / "ln16.onnx", 16)
    with pytest.raises(ExportError, match="model has opset 16, the target needs 17"):
        check_model(tmp_path / "ln16.onnx", 17)


def test_fold_affine_chains_is_exact():
    rng = np.random.default_rng(1)
    w1, b1, w2, b2, c = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=(4, 5)), rng.normal(size=4), rng.normal(size=4)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (c, "c"))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="g1"),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["z"], transB=1, name="g2"),
             helper.make_node("Add", ["z", "c"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(6, 3)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert fold_affine_chains(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Gemm"]
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_opset_20_uses_standard_gelu_and_drops_exporter_metadata(dtac, work, states):
    path = export_actor(dtac, "dtac", work / "laptop.onnx", opset=20)
    info = check_model(path, 20)
    assert info["ops"].get("Gelu") == 3 and "Erf" not in info["ops"]
    model = onnx.load(str(path))
    assert not any(n.metadata_props for n in model.graph.node)
    assert path.stat().st_size < 2 * 4 * 8073  # weights dominate: 8,073 float32 parameters
    with torch.no_grad():
        ref = [t.numpy() for t in dtac(torch.as_tensor(states))]
    for o, r in zip(_run(path, {"local_state": states}), ref):
        np.testing.assert_allclose(o, r, atol=2e-5)


def test_cpu_profile_uses_skip_layernorm_only_when_allowed(dtac, work, states):
    path = export_actor(dtac, "dtac", work / "laptop_ort.onnx", opset=20, ort_contrib_ops=True)
    info = check_model(path, 20, allow_contrib=True)
    assert info["ops"].get("SkipLayerNormalization") == 7 and "LayerNormalization" not in info["ops"]
    with pytest.raises(ExportError, match="non-standard domain 'com.microsoft'"):
        check_model(path, 20)
    with torch.no_grad():
        ref = [t.numpy() for t in dtac(torch.as_tensor(states))]
    for batch in (1, 500):
        for o, r in zip(_run(path, {"local_state": states[:batch]}), ref):
            np.testing.assert_allclose(o, r[:batch], atol=2e-5)
