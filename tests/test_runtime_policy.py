"""edgepilot.edge_agent.runtime.PolicyRuntime on real bundles exported from a fitted actor."""

import numpy as np
import pytest
import torch

from edgepilot.cloud_trainer.checkpoint import load_actor
from edgepilot.cloud_trainer.scenario import load_scenario
from edgepilot.edge_agent.actions import decode_actions
from edgepilot.edge_agent.bundle import BundleError, inspect_bundle, install_bundle
from edgepilot.edge_agent.runtime import PolicyRuntime, StateError, choose_artifact
from edgepilot.export.parity import parity_states
from tests.helpers.export_fixtures import keypair, reference_bundle, reference_checkpoint
from edgepilot.hardware.profiles import load_profile


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.getbasetemp() / "edgepilot-export"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="module")
def laptop_bundle(work):
    return reference_bundle(work, "laptop", precisions=("fp32", "int8_static", "int8_dynamic"))


@pytest.fixture(scope="module")
def nano_bundle(work):
    return reference_bundle(work, "jetson-nano")


@pytest.fixture(scope="module")
def states():
    return parity_states(load_scenario("fig5"), "dtac", 300, seed=21)[0]


def test_decide_matches_torch(work, laptop_bundle, states):
    path, report = laptop_bundle
    rt = PolicyRuntime.from_bundle(path, [keypair(work)[1]], profile="laptop")
    assert rt.backend == "onnxruntime" and rt.artifact["precision"] == "fp32" and rt.providers == ["CPUExecutionProvider"]
    actor, _ = load_actor(reference_checkpoint(work, "dtac"))
    with torch.no_grad():
        ref = decode_actions(*[t.numpy() for t in actor(torch.as_tensor(states))])
    got = rt.decide(states)
    np.testing.assert_array_equal(got["offload"], ref["offload"])
    np.testing.assert_array_equal(got["channel"], ref["channel"])
    np.testing.assert_allclose(got["transmit_power_ratio"], ref["transmit_power_ratio"], atol=1e-5)
    one = rt.decide(states[3])  # a single local state
    assert one["offload"].shape == () and int(one["offload"]) == ref["offload"][3]
    for batch in (1, 5, 1, 64):  # binding cache across batch sizes
        assert rt.decide(states[:batch])["offload"].tolist() == ref["offload"][:batch].tolist()


def test_precision_choice(work, laptop_bundle, nano_bundle, states):
    pub = [keypair(work)[1]]
    rt = PolicyRuntime.from_bundle(laptop_bundle[0], pub, profile="laptop", precision="int8_static")
    assert rt.artifact["path"].endswith("dtac_int8_static.onnx")
    assert rt.decide(states)["offload"].shape == (len(states),)
    # a Nano bundle (fp32 + fp16) on a CPU-only machine: FP32, not emulated FP16
    rt = PolicyRuntime.from_bundle(nano_bundle[0], pub, profile="laptop")
    assert rt.artifact["precision"] == "fp32"
    # on the Nano itself (CUDA provider present) its preferred FP16
    m = rt.manifest
    assert choose_artifact(m, load_profile("jetson-nano"), ["CUDAExecutionProvider", "CPUExecutionProvider"])["precision"] == "fp16"
    with pytest.raises(BundleError, match="no artifact this device can run"):
        choose_artifact(m, load_profile("laptop"), ["CPUExecutionProvider"], precision="int8_static")


def test_bad_states_are_named(work, laptop_bundle):
    rt = PolicyRuntime.from_bundle(laptop_bundle[0], [keypair(work)[1]], profile="laptop")
    good = np.full((2, 6), 1e-3)
    cases = [
        (np.ones((2, 5)), r"shape \(batch, 6\) or \(6,\), got \(2, 5\)"),
        (np.ones((2, 3, 6)), r"got \(2, 3, 6\)"),
        (np.ones((0, 6)), "empty"),
        ("not a state", "must be numeric"),
    ]
    nan = good.copy(); nan[1, 2] = np.nan
    inf = good.copy(); inf[0, 5] = np.inf
    neg = good.copy(); neg[1, 0] = -1.0
    big = good.copy(); big[0, 1] = 1e300  # overflows float32 -> inf
    cases += [(nan, r"local_states\[1, 2\] \(edge_compute_time_s\) is NaN"),
              (inf, r"local_states\[0, 5\] \(edge_cloud_comm_time_s\) is inf"),
              (neg, r"local_states\[1, 0\] \(received_power_w\) is negative"),
              (big, r"local_states\[0, 1\] \(local_compute_time_s\) is inf")]
    for bad, message in cases:
        with pytest.raises(StateError, match=message):
            rt.decide(bad)
    with pytest.raises(StateError, match="takes local states only"):
        rt.decide(good, edge_id=[0, 1])
    assert rt.decide(good)["offload"].shape == (2,)  # still works after the refusals


def test_tampered_bundle_and_wrong_key_never_load(work, laptop_bundle, tmp_path):
    _, other_pub = keypair(tmp_path, "other")
    with pytest.raises(BundleError, match="unknown key"):
        PolicyRuntime.from_bundle(laptop_bundle[0], [other_pub], profile="laptop")
    root = tmp_path / "policy"
    d = install_bundle(laptop_bundle[0], [keypair(work)[1]], root)
    rt = PolicyRuntime.from_bundle(root / "current", [keypair(work)[1]], profile="laptop")
    assert rt.decide(np.full(6, 1e-3))["channel"].shape == ()
    onnx_file = d / "artifacts" / "dtac_fp32.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(BundleError, match="dtac_fp32.onnx has changed"):
        PolicyRuntime.from_bundle(root / "current", [keypair(work)[1]], profile="laptop")


def test_tac_runtime(work):
    path, report = reference_bundle(work, "laptop", kind="tac", precisions=("fp32",))
    rt = PolicyRuntime.from_bundle(path, [keypair(work)[1]], profile="laptop")
    states, edges = parity_states(load_scenario("fig5"), "tac", 60, seed=4, ues=20)
    actor, _ = load_actor(reference_checkpoint(work, "tac"))
    with torch.no_grad():
        ref = actor(torch.as_tensor(states), torch.as_tensor(edges))
    got = rt.infer(states, edges)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r.numpy(), atol=2e-5)
    single = rt.decide(states[0], edges[0])  # one round of N UEs
    assert single["offload"].shape == (20,)
    with pytest.raises(StateError, match="needs edge_id"):
        rt.decide(states[0])
    with pytest.raises(StateError, match=r"edge_id must have shape \(1, 20\)"):
        rt.decide(states[0], edges[0][:5])


# --------------------------------------------------------------------------- batch-1 fast path


def _decode_reference(values, num_channels):
    v = np.asarray(values, np.float32)
    k = 3 + num_channels
    return decode_actions(v[None, :3], v[None, 3:k], v[None, k], v[None, k + 1])


@pytest.mark.parametrize("values", [
    [0.2, 0.5, 0.3, 0.1, 0.2, 0.6, 0.1, 0.5, 0.25],
    [0.4, 0.4, 0.2, 0.3, 0.3, 0.3, 0.1, 0.5, 0.5],          # ties: the first maximum, as argmax
    [1 / 3, 1 / 3, 1 / 3, 0.25, 0.25, 0.25, 0.25, 1.0, 0.0],  # all tied; ratios at the bounds
    [0.1, 0.1, 0.8, 0.0, 0.0, 0.0, 1.0, 1.5, -0.2],          # ratios out of range: clipped
    [0.1, 0.1, 0.8, 0.0, 0.0, 0.0, 1.0, 1e-4, 2e-3],         # below MIN_RATIO
])
def test_fast_decode_equals_decode_actions(values):
    from edgepilot.edge_agent.actions import decode_action_values

    values = np.asarray(values, np.float32).tolist()  # what the runtime reads: float32 -> float
    got = decode_action_values(values, 4)
    ref = _decode_reference(values, 4)
    assert got == (int(ref["offload"][0]), int(ref["channel"][0]), float(ref["transmit_power_ratio"][0]), float(ref["cpu_freq_ratio"][0]))
    assert type(got[0]) is int and type(got[2]) is float


def test_fast_decode_random_outputs_equal_decode_actions():
    from edgepilot.edge_agent.actions import decode_action_values

    rng = np.random.default_rng(7)
    for _ in range(500):
        v = rng.choice([0.0, 0.25, 0.5, 1.0, -0.1, 1.2], size=9).astype(np.float32)  # many ties
        ref = _decode_reference(v, 4)
        assert decode_action_values(v.tolist(), 4) == (int(ref["offload"][0]), int(ref["channel"][0]),
                                                      float(ref["transmit_power_ratio"][0]), float(ref["cpu_freq_ratio"][0]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_fast_decode_gives_up_on_nan_and_inf(bad):
    from edgepilot.edge_agent.actions import decode_action_values

    for i in (0, 4, 7, 8):
        values = [0.2, 0.5, 0.3, 0.1, 0.2, 0.6, 0.1, 0.5, 0.25]
        values[i] = bad
        assert decode_action_values(values, 4) is None


def test_batch_one_fast_path_equals_the_general_path(work, laptop_bundle, states):
    rt = PolicyRuntime.from_bundle(laptop_bundle[0], [keypair(work)[1]], profile="laptop")
    assert rt._one is not None and rt._one.num_channels == 4
    general = PolicyRuntime.from_bundle(laptop_bundle[0], [keypair(work)[1]], profile="laptop")
    general._one = None  # the general path: checks, per-shape binding, decode_actions
    for row in states[:50]:
        for x in (row[None, :], row):  # (1, 6) and (6,)
            fast, ref = rt.infer(x), general.infer(x)
            for f, r in zip(fast, ref):
                assert np.shape(f) == np.shape(r)
                np.testing.assert_array_equal(f, r)
            fd, rd = rt.decide(x), general.decide(x)
            assert fd.keys() == rd.keys()
            for key in fd:
                assert np.shape(fd[key]) == np.shape(rd[key]) and np.asarray(fd[key]).dtype == np.asarray(rd[key]).dtype
                np.testing.assert_array_equal(fd[key], rd[key])
    # results are copies: a later call does not change them
    a = rt.infer(states[:1])
    kept = [o.copy() for o in a]
    d = rt.decide(states[:1])
    kept_d = {k: v.copy() for k, v in d.items()}
    rt.infer(states[7:8]), rt.decide(states[7:8])
    for o, k in zip(a, kept):
        np.testing.assert_array_equal(o, k)
    for key in d:
        np.testing.assert_array_equal(d[key], kept_d[key])


def test_batch_one_fast_path_still_refuses_bad_states(work, laptop_bundle):
    rt = PolicyRuntime.from_bundle(laptop_bundle[0], [keypair(work)[1]], profile="laptop")
    good = np.full((1, 6), 1e-3, np.float32)
    for col, value, message in [(2, np.nan, r"local_states\[0, 2\] \(edge_compute_time_s\) is NaN"),
                                (5, np.inf, r"local_states\[0, 5\] \(edge_cloud_comm_time_s\) is inf"),
                                (0, -1.0, r"local_states\[0, 0\] \(received_power_w\) is negative")]:
        bad = good.copy()
        bad[0, col] = value
        for x in (bad, bad[0]):
            with pytest.raises(StateError, match=message):  # a (6,) state is row 0 too
                rt.decide(x)
            with pytest.raises(StateError):
                rt.infer(x)
    # float64 and lists take the general path and agree with the fast one
    assert rt.decide(good.astype(np.float64))["offload"].tolist() == rt.decide(good)["offload"].tolist()
    assert rt.decide(good[0].tolist())["channel"] == rt.decide(good[0])["channel"]


def test_batch_one_nan_output_falls_back_to_decode_actions(work, laptop_bundle, states, monkeypatch):
    import edgepilot.edge_agent.runtime as runtime_module

    rt = PolicyRuntime.from_bundle(laptop_bundle[0], [keypair(work)[1]], profile="laptop")
    expected = rt.decide(states[:1])
    monkeypatch.setattr(runtime_module, "decode_action_values", lambda *args: None)
    got = rt.decide(states[:1])
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
        assert got[key].shape == (1,)
    assert rt.decide(states[0])["offload"].shape == ()


def test_laptop_fp32_artifact_is_the_rewritten_graph(laptop_bundle):
    path, report = laptop_bundle
    onnx_info = report["onnx"]
    assert onnx_info["nodes"] < onnx_info["base_nodes"] and onnx_info["rewrites"]["action_heads"] == 1
    fp32 = next(a for a in inspect_bundle(path).artifacts if a["precision"] == "fp32")
    assert fp32["outputs"] == [{"name": "action_logits", "dtype": "float32", "shape": ["batch", 9]}]
    assert all("outputs" not in a for a in inspect_bundle(path).artifacts if a["precision"] != "fp32")  # INT8: four heads
    assert onnx_info["onnxruntime_cpu_kernels"]["kernels"] <= onnx_info["nodes"]
    assert report["variants"]["fp32"]["decision_agreement"] == 1.0 and report["variants"]["fp32"]["max_abs_error_all_heads"] < 1e-4
    assert report["int8_static_activations"] == "asymmetric"  # no TensorRT on the laptop profile
