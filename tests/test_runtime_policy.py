"""edge_agent.runtime.PolicyRuntime on real bundles exported from a fitted actor."""

import numpy as np
import pytest
import torch

from cloud_trainer.checkpoint import load_actor
from cloud_trainer.scenario import load_scenario
from edge_agent.actions import decode_actions
from edge_agent.bundle import BundleError, install_bundle
from edge_agent.runtime import PolicyRuntime, StateError, choose_artifact
from export.parity import parity_states
from export.testing import keypair, reference_bundle, reference_checkpoint
from hardware.profiles import load_profile


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
