"""torch -> ONNX: opset per profile, no LayerNormalization at opset 16, dynamic axes,
numerical equality with torch, and the affine folding pass."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgepilot.cloud_trainer.checkpoint import load_actor
from edgepilot.cloud_trainer.envs.simulator import sample_local_states
from edgepilot.cloud_trainer.scenario import load_scenario
from edgepilot.export.graph_rewrites import fold_affine_chains
from edgepilot.export.onnx_export import ExportError, check_model, export_actor
from tests.helpers.export_fixtures import reference_checkpoint


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


# --------------------------------------------------------------------------- onnxruntime CPU rewrites


def _model(nodes, inits, inputs=(("x", 6),), outputs=(("y", 4),), opset=20, contrib=False):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", d]) for n, d in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b"] + ([d] if d else [])) for n, d in outputs],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in inits.items()])
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    return helper.make_model(graph, opset_imports=imports)


def _outputs(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _assert_same(before, after, atol=1e-5):
    for b, a in zip(before, after):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


def test_drop_nonnegative_input_clip_only_on_an_input_clamped_at_zero():
    from edgepilot.export.graph_rewrites import drop_nonnegative_input_clip

    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Clip", ["x", "zero"], ["xc"]), helper.make_node("Log", ["xc"], ["lx"]),
             helper.make_node("Clip", ["lx", "zero"], ["y"])]  # not on an input: stays
    model = _model(nodes, {"zero": np.array(0.0)}, outputs=(("y", 6),))
    x = rng.uniform(0.1, 5.0, size=(5, 6)).astype(np.float32)  # the runtime refuses negative states
    before = _outputs(model, {"x": x})
    assert drop_nonnegative_input_clip(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Log", "Clip"] and model.graph.node[0].input[0] == "x"
    onnx.checker.check_model(model, full_check=True)
    _assert_same(before, _outputs(model, {"x": x}))
    other = _model([helper.make_node("Clip", ["x", "half"], ["y"])], {"half": np.array(0.5)}, outputs=(("y", 6),))
    assert drop_nonnegative_input_clip(other) == 0  # a clamp at 0.5 changes non-negative values


def test_fold_gemm_input_affine_folds_the_standardisation_into_the_gemm():
    from edgepilot.export.graph_rewrites import fold_gemm_input_affine

    rng = np.random.default_rng(3)
    inits = {"c": rng.normal(size=6), "s": rng.uniform(0.5, 2.0, size=6), "m": rng.normal(size=(1, 6)),
             "w": rng.normal(size=(4, 6)), "b": rng.normal(size=4)}
    nodes = [helper.make_node("Sub", ["x", "c"], ["xc"]), helper.make_node("Div", ["xc", "s"], ["xs"]),
             helper.make_node("Mul", ["m", "xs"], ["xm"]),  # constant first: also folded
             helper.make_node("Gemm", ["xm", "w", "b"], ["y"], transB=1)]
    model = _model(nodes, inits)
    x = rng.normal(size=(7, 6)).astype(np.float32)
    before = _outputs(model, {"x": x})
    assert fold_gemm_input_affine(model) == 3
    assert [n.op_type for n in model.graph.node] == ["Gemm"] and model.graph.node[0].input[0] == "x"
    onnx.checker.check_model(model, full_check=True)
    _assert_same(before, _outputs(model, {"x": x}))
    # an affine output read by another node too is left alone (folding would duplicate work)
    shared = _model([helper.make_node("Sub", ["x", "c"], ["xc"]), helper.make_node("Gemm", ["xc", "w", "b"], ["y"], transB=1),
                     helper.make_node("Relu", ["xc"], ["z"])], inits, outputs=(("y", 4), ("z", 6)))
    assert fold_gemm_input_affine(shared) == 0


def test_fold_residual_gemm_then_chain_fold_leaves_one_gemm():
    from edgepilot.export.graph_rewrites import fold_residual_gemm

    rng = np.random.default_rng(4)
    inits = {"w1": rng.normal(size=(8, 6)), "b1": rng.normal(size=8), "w2": rng.normal(size=(8, 8)), "b2": rng.normal(size=8)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),  # embedding
             helper.make_node("Gemm", ["h", "w2", "b2"], ["a"], transB=1),  # identity attention out(v(h))
             helper.make_node("Add", ["h", "a"], ["y"])]  # residual
    model = _model(nodes, inits, outputs=(("y", 8),))
    x = rng.normal(size=(5, 6)).astype(np.float32)
    before = _outputs(model, {"x": x})
    assert fold_residual_gemm(model) == 1 and fold_affine_chains(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Gemm"]
    onnx.checker.check_model(model, full_check=True)
    _assert_same(before, _outputs(model, {"x": x}), atol=1e-4)


def test_fold_residual_gemm_turns_skip_layernorm_into_layernorm():
    from edgepilot.export.graph_rewrites import fold_residual_gemm

    rng = np.random.default_rng(5)
    inits = {"w1": rng.normal(size=(8, 6)), "b1": rng.normal(size=8), "w2": rng.normal(size=(8, 8)), "b2": rng.normal(size=8),
             "g": rng.uniform(0.5, 1.5, size=8), "be": rng.normal(size=8)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["a"], transB=1),
             helper.make_node("SkipLayerNormalization", ["a", "h", "g", "be"], ["y"], domain="com.microsoft", epsilon=1e-5)]
    model = _model(nodes, inits, outputs=(("y", 8),), contrib=True)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    before = _outputs(model, {"x": x})
    assert fold_residual_gemm(model) == 1 and fold_affine_chains(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Gemm", "LayerNormalization"]
    _assert_same(before, _outputs(model, {"x": x}), atol=1e-4)
    # h read by a third node: the residual is not rewritten
    shared = _model(nodes + [helper.make_node("Relu", ["h"], ["z"])], inits, outputs=(("y", 8), ("z", 8)), contrib=True)
    assert fold_residual_gemm(shared) == 0


def _heads_model(opset=20):
    """The actor's four heads on a hidden h (batch, 6), as the exporter writes them."""
    rng = np.random.default_rng(6)
    inits = {"wx": rng.normal(size=(3, 6)), "bx": rng.normal(size=3), "wl": rng.normal(size=(4, 6)), "bl": rng.normal(size=4),
             "wr": rng.normal(size=(2, 6)), "br": rng.normal(size=2)}
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Gemm", ["h", "wx", "bx"], ["zx"], transB=1), helper.make_node("Softmax", ["zx"], ["offload_probs"], axis=-1),
             helper.make_node("Gemm", ["h", "wl", "bl"], ["zl"], transB=1), helper.make_node("Softmax", ["zl"], ["channel_probs"], axis=-1),
             helper.make_node("Gemm", ["h", "wr", "br"], ["zr"], transB=1), helper.make_node("Sigmoid", ["zr"], ["r"]),
             helper.make_node("Gather", ["r", "i0"], ["transmit_power_ratio"], axis=1),
             helper.make_node("Gather", ["r", "i1"], ["cpu_freq_ratio"], axis=1)]
    model = _model(nodes, inits, outputs=(("offload_probs", 3), ("channel_probs", 4), ("transmit_power_ratio", None), ("cpu_freq_ratio", None)),
                   opset=opset)
    model.graph.initializer.extend([numpy_helper.from_array(np.array(i, np.int64), f"i{i}") for i in (0, 1)])
    return model


@pytest.mark.parametrize("opset", [17, 20])
def test_pack_action_heads_gives_the_same_heads_from_one_gemm(opset):
    from edgepilot.edge_agent.actions import decode_action_values, decode_actions, heads_from_logits
    from edgepilot.export.graph_rewrites import pack_action_heads

    model = _heads_model(opset)
    rng = np.random.default_rng(7)
    for batch in (1, 5):
        x = rng.normal(size=(batch, 6)).astype(np.float32)
        before = _outputs(model, {"x": x})
        m = onnx.ModelProto()
        m.CopyFrom(model)
        assert pack_action_heads(m) == 1
        assert [n.op_type for n in m.graph.node] == ["Relu", "Gemm"] and [o.name for o in m.graph.output] == ["action_logits"]
        onnx.checker.check_model(m, full_check=True)
        (logits,) = _outputs(m, {"x": x})
        assert logits.shape == (batch, 9)
        _assert_same(before, heads_from_logits(logits), atol=1e-6)
        ref = decode_actions(*before)
        for row, (off, ch, a, b) in enumerate(zip(ref["offload"], ref["channel"], ref["transmit_power_ratio"], ref["cpu_freq_ratio"])):
            assert decode_action_values(logits[row].tolist(), 4, logits=True) == pytest.approx((off, ch, a, b), rel=1e-6)
    # not the four heads (another output, or a head read twice): left alone
    other = _heads_model()
    other.graph.output.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["b", 6]))
    assert pack_action_heads(other) == 0
    shared = _heads_model()
    shared.graph.node.append(helper.make_node("Relu", ["zx"], ["zx2"]))
    assert pack_action_heads(shared) == 0


def test_head_values_from_logits_equals_the_numpy_heads():
    from edgepilot.edge_agent.actions import head_values_from_logits, heads_from_logits

    rng = np.random.default_rng(8)
    for row in rng.normal(scale=30, size=(200, 9)).astype(np.float32):  # large logits: no overflow either way
        ref = np.concatenate([h.reshape(-1) for h in heads_from_logits(row[None])])
        np.testing.assert_array_equal(np.array(head_values_from_logits(row.tolist(), 4), np.float32), ref)


def test_onnxruntime_cpu_variant_of_the_dtac_actor(dtac, work, states):
    from edgepilot.edge_agent.actions import heads_from_logits
    from edgepilot.export.onnx_export import onnxruntime_kernels, write_onnxruntime_cpu_variant

    base = export_actor(dtac, "dtac", work / "laptop_base.onnx", opset=20, ort_contrib_ops=True)
    path, done = write_onnxruntime_cpu_variant(base, work / "laptop_fast.onnx", 20)
    assert done == {"input_clip": 1, "input_affine": 2, "residual_gemm": 1, "affine_chains": 1, "action_heads": 1}
    before, after = check_model(base, 20, allow_contrib=True), check_model(path, 20, allow_contrib=True)
    # 34 -> 23: clip, sub, div, one residual's Gemm, and the heads' 8 nodes -> 1 Gemm
    assert after["nodes"] == before["nodes"] - 11
    assert "Clip" not in after["ops"] and "Gather" not in after["ops"] and "Softmax" not in after["ops"]
    assert after["ops"]["LayerNormalization"] == 1
    assert onnxruntime_kernels(path)["kernels"] < onnxruntime_kernels(base)["kernels"]
    with torch.no_grad():
        ref = [t.numpy() for t in dtac(torch.as_tensor(states))]
    for batch in (1, 7, 500):
        out = heads_from_logits(_run(path, {"local_state": states[:batch]})[0])
        for o, r in zip(out, ref):
            assert o.shape == r[:batch].shape
            # the folds reorder float32 sums over normalized inputs of magnitude ~40 (field
            # 0's log floor); with AVX-512 kernels that moves a probability by up to 2.5e-5
            np.testing.assert_allclose(o, r[:batch], atol=1e-4)


@pytest.mark.parametrize("variant", ["nano", "onnxruntime_cpu"])
@pytest.mark.parametrize("option", [{"cpu_ratio_head": "round_budget"}, {"offload_mask": True},
                                    {"cpu_ratio_head": "round_budget", "offload_mask": True}])
def test_dtac_head_options_export_exactly(dtac, work, states, variant, option):
    """A DTAC with offload_mask reads the raw local state a second time for the offload
    logits, one with "round_budget" for b: every export and every rewrite must keep that."""
    from edgepilot.cloud_trainer.models import DTACActor
    from edgepilot.edge_agent.actions import heads_from_logits
    from edgepilot.export.onnx_export import write_onnxruntime_cpu_variant

    tb = DTACActor(dtac.cfg.model_copy(update=option))
    tb.load_state_dict({**tb.state_dict(), **dtac.state_dict()})
    if "round_budget" in option.values():
        tb.round_budget_s.fill_(float(np.median(states[:, 1])) * 1.5)  # some b below 1, some at it
    tb.eval()
    changed = {0, 3} if len(option) == 2 and "offload_mask" in option else {3} if "cpu_ratio_head" in option else {0}  # b, p_x
    with torch.no_grad():
        ref = [t.numpy() for t in tb(torch.as_tensor(states))]
        plain = [t.numpy() for t in dtac(torch.as_tensor(states))]
    for i, (r, p) in enumerate(zip(ref, plain)):  # the option changes its head, and only it
        assert not np.allclose(r, p, atol=1e-3) if i in changed else np.allclose(r, p, atol=1e-6)
    if variant == "nano":
        path = export_actor(tb, "dtac", work / "tb_nano.onnx", opset=16, ir_version=8)
        out = _run(path, {"local_state": states})
    else:
        base = export_actor(tb, "dtac", work / "tb_laptop_base.onnx", opset=20, ort_contrib_ops=True)
        path, _ = write_onnxruntime_cpu_variant(base, work / "tb_laptop_fast.onnx", 20)
        out = _run(path, {"local_state": states})
        # the prior's term is packed with the heads (padded and added to the offload logits)
        assert len(out) == (1 if "offload_mask" in option and "cpu_ratio_head" not in option else 4)
        out = heads_from_logits(out[0]) if len(out) == 1 else out
    for o, r in zip(out, ref):  # the onnxruntime folds reorder float32 sums (see the test above)
        np.testing.assert_allclose(o, r, atol=2e-5 if variant == "nano" else 1e-4)
