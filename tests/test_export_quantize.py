"""FP16 / INT8 dynamic / INT8 static variants and the parity figures."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from edgepilot.cloud_trainer.checkpoint import load_actor
from edgepilot.export.onnx_export import export_actor
from edgepilot.export.parity import compare, ort_outputs, parity_states, passes, torch_outputs
from edgepilot.export.quantize import StateCalibrationReader, build_variant
from tests.helpers.export_fixtures import reference_checkpoint
from edgepilot.cloud_trainer.scenario import load_scenario


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.getbasetemp() / "edgepilot-export"
    work.mkdir(exist_ok=True)
    actor = load_actor(reference_checkpoint(work, "dtac"))[0]
    sc = load_scenario("fig5")
    cal, _ = parity_states(sc, "dtac", 1000, seed=1)
    ev, _ = parity_states(sc, "dtac", 2000, seed=2)
    fp32 = export_actor(actor, "dtac", work / "q_fp32.onnx", opset=17)
    ref = torch_outputs(actor, "dtac", ev)
    return work, fp32, cal, ev, ref


def test_fp32_parity_is_exact_enough(setup):
    work, fp32, cal, ev, ref = setup
    fig = compare(ref, ort_outputs(str(fp32), "dtac", ev, chunk=1))
    assert fig["max_abs_error_all_heads"] < 1e-4 and fig["decision_agreement"] == 1.0 and passes(fig, 0.99)


def test_fp16_keeps_the_state_normalisation_in_fp32(setup):
    work, fp32, cal, ev, ref = setup
    path = build_variant("fp16", fp32, work / "q_fp16.onnx")
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    log = next(n for n in model.graph.node if n.op_type == "Log")
    assert types.get(log.input[0], TensorProto.FLOAT) == TensorProto.FLOAT  # received power ~1e-13 W would flush to 0 in FP16
    assert any(n.op_type == "Gemm" and types.get(n.output[0]) == TensorProto.FLOAT16 for n in model.graph.node)
    fig = compare(ref, ort_outputs(str(path), "dtac", ev, chunk=256))
    assert fig["all_finite"] and fig["max_abs_error_all_heads"] < 0.05 and passes(fig, 0.99)


def test_int8_variants_are_quantized_and_close(setup):
    work, fp32, cal, ev, ref = setup
    reader = StateCalibrationReader("dtac", cal, chunk=250)
    static = build_variant("int8_static", fp32, work / "q_int8_static.onnx", reader)
    dynamic = build_variant("int8_dynamic", fp32, work / "q_int8_dynamic.onnx")
    s_ops = {n.op_type for n in onnx.load(str(static)).graph.node}
    d_ops = {n.op_type for n in onnx.load(str(dynamic)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= s_ops
    assert "MatMulInteger" in d_ops
    assert static.stat().st_size and dynamic.stat().st_size < fp32.stat().st_size
    for path in (static, dynamic):
        fig = compare(ref, ort_outputs(str(path), "dtac", ev, chunk=1))
        assert fig["all_finite"]
        assert fig["offload_agreement"] > 0.9 and fig["channel_agreement"] > 0.8
        assert fig["max_abs_error_all_heads"] > 0  # it really is a different model


def test_calibration_reader_yields_equal_batches():
    states = np.zeros((1000, 6), np.float32)
    r = StateCalibrationReader("dtac", states, chunk=300)
    sizes = []
    while (b := r.get_next()) is not None:
        sizes.append(len(b["local_state"]))
    assert sizes == [300, 300, 300]
    r.rewind()
    assert r.get_next() is not None


def test_compare_flags_disagreement():
    ref = [np.array([[0.9, 0.05, 0.05]]), np.array([[0.7, 0.1, 0.1, 0.1]]), np.array([0.5]), np.array([0.5])]
    bad = [np.array([[0.1, 0.8, 0.1]]), ref[1], ref[2], np.array([np.nan])]
    fig = compare(ref, bad)
    assert fig["offload_agreement"] == 0.0 and not fig["all_finite"] and not passes(fig, 0.5)


def test_mixed_precision_keeps_the_costliest_layers_fp32(setup):
    from edgepilot.export.quantize import int8_mixed, quantized_layers

    work, fp32, cal, ev, ref = setup
    reader = StateCalibrationReader("dtac", cal[:500], chunk=250)
    full = compare(ref, ort_outputs(str(build_variant("int8_static", fp32, work / "q_full.onnx", reader)), "dtac", ev, chunk=512))
    target = 0.999
    assert min(full["offload_agreement"], full["channel_agreement"]) < target  # plain INT8 falls short here
    path, keep, score = int8_mixed("int8_static", fp32, work / "q_mixed.onnx", reader, target)
    layers = quantized_layers(fp32)
    assert keep and set(keep) <= set(layers) and len(keep) <= int(0.3 * len(layers))
    model = onnx.load(str(path))
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name for n in model.graph.node if n.op_type == "Gemm" and n.input[1] in dq_outputs}
    assert quantized and quantized == set(layers) - set(keep)  # kept layers have FP32 weights, the rest INT8
    mixed = compare(ref, ort_outputs(str(path), "dtac", ev, chunk=512))
    assert score > min(full["offload_agreement"], full["channel_agreement"])
    assert min(mixed["offload_agreement"], mixed["channel_agreement"]) > min(full["offload_agreement"], full["channel_agreement"])


def _activation_zero_points(path):
    model = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and t.dims and len(t.dims) == 2}
    zps = []
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in weights and len(n.input) > 2:
            zps.append(int(np.abs(inits[n.input[2]]).max()))
    return zps


def test_int8_static_activations_symmetric_for_tensorrt_asymmetric_for_onnxruntime(setup):
    work, fp32, cal, ev, ref = setup
    reader = StateCalibrationReader("dtac", cal, chunk=250)
    sym = build_variant("int8_static", fp32, work / "q_sym.onnx", reader)
    asym = build_variant("int8_static", fp32, work / "q_asym.onnx", reader, symmetric_activations=False)
    assert _activation_zero_points(sym) and not any(_activation_zero_points(sym))  # TensorRT: zero point 0 only
    assert any(_activation_zero_points(asym))  # e.g. the GELU outputs, which lie in [-0.17, max]
    for path in (sym, asym):
        fig = compare(ref, ort_outputs(str(path), "dtac", ev, chunk=1))
        assert fig["all_finite"] and fig["offload_agreement"] > 0.9 and fig["channel_agreement"] > 0.8


def test_mixed_precision_judges_on_held_out_states(setup):
    from edgepilot.export.quantize import int8_mixed

    work, fp32, cal, ev, ref = setup
    reader = StateCalibrationReader("dtac", cal[:500], chunk=250)
    judge = ev[:1000]
    path, keep, score = int8_mixed("int8_static", fp32, work / "q_judged.onnx", reader, 0.999,
                                   symmetric_activations=False, judge_states=(judge, None))
    fig = compare(ort_outputs(str(fp32), "dtac", judge, chunk=512), ort_outputs(str(path), "dtac", judge, chunk=512))
    assert score == min(fig["offload_agreement"], fig["channel_agreement"])  # the score is on the judge states


def test_center_gemm_inputs_is_exact_and_centres_the_gelu_outputs(setup):
    from edgepilot.export.quantize import center_gemm_inputs

    work, fp32, cal, ev, ref = setup
    model = onnx.load(str(fp32))
    gelu_fed = {n.name for n in model.graph.node if n.op_type == "Gemm"
                and any(p.output[0] == n.input[0] and p.op_type in ("Gelu", "Mul") for p in model.graph.node)}
    reader = StateCalibrationReader("dtac", cal, chunk=250)
    changed = center_gemm_inputs(model, reader)
    assert gelu_fed and gelu_fed <= set(changed)  # GELU outputs lie in [-0.17, max]
    onnx.checker.check_model(model)
    path = work / "q_centred.onnx"
    onnx.save(model, str(path))
    before, after = ort_outputs(str(fp32), "dtac", ev, chunk=512), ort_outputs(str(path), "dtac", ev, chunk=512)
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, atol=2e-5)  # an FP32 shift and its bias correction: exact
    # the centred inputs now span a range around zero
    for node in model.graph.node:
        if node.name in changed:
            assert any(n.op_type == "Sub" and n.output[0] == node.input[0] for n in model.graph.node)
