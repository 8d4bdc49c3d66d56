"""The system model (DTAC paper eq. 2-14, 17) against hand-computed values and properties."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepilot.edge_agent.system_model import (
    CLOUD,
    EDGE,
    LOCAL,
    Decision,
    NetworkParams,
    RoundTasks,
    evaluate_round,
    local_state,
    vector_reward,
)
from edgepilot.edge_agent.system_model_reference import evaluate_round_loop

# A hand-sized network: 2 edge servers, 3 UEs, 2 channels. Powers and gains are chosen
# so the SINRs are small round numbers.
P = NetworkParams(
    channel_bandwidth_hz=1e6,
    noise_power_w=1.0,
    ue_max_power_w=1.0,
    edge_power_w=2.0,
    cloud_power_w=4.0,
    ue_max_cpu_hz=1e9,
    edge_cpu_hz=4e9,
    cloud_cpu_hz=8e9,
    kappa=1e-27,
    w_time=1.0,
    w_energy=0.5,
)
EDGE_CLOUD_GAIN = [1.0, 2.0]
UES = [
    # UE0 -> its edge server (edge 0, channel 0), full power
    dict(edge=0, gain=3.0, input_bits=6e6, output_bits=3e6, cycles_per_bit=100, cached=0, offload=EDGE, channel=0, power_ratio=1.0, cpu_ratio=1.0),
    # UE1 -> the cloud through edge 0 on channel 0, half power, its task cached (irrelevant for x=2)
    dict(edge=0, gain=1.0, input_bits=2e6, output_bits=6e6, cycles_per_bit=200, cached=1, offload=CLOUD, channel=0, power_ratio=0.5, cpu_ratio=1.0),
    # UE2 computes locally at half speed (edge 1, channel 1)
    dict(edge=1, gain=1.0, input_bits=4e6, output_bits=1e6, cycles_per_bit=500, cached=0, offload=LOCAL, channel=1, power_ratio=0.5, cpu_ratio=0.5),
]


def _arrays(ues, edge_cloud_gain=EDGE_CLOUD_GAIN):
    col = lambda k: [u[k] for u in ues]  # noqa: E731
    tasks = RoundTasks(
        edge=col("edge"),
        gain=col("gain"),
        edge_cloud_gain=edge_cloud_gain,
        input_bits=col("input_bits"),
        output_bits=col("output_bits"),
        cycles_per_bit=col("cycles_per_bit"),
        cached=col("cached"),
    )
    return tasks, Decision(col("offload"), col("channel"), col("power_ratio"), col("cpu_ratio"))


def test_hand_computed_round():
    tasks, decision = _arrays(UES)
    r = evaluate_round(P, tasks, decision)
    B = 1e6
    # (5) interference: UE0 and UE1 share edge 0 and channel 0 and both offload
    i0 = 0.5 * 1.0 * 1.0  # a1 P_UE |h(0,1)|^2
    i1 = 1.0 * 1.0 * 3.0  # a0 P_UE |h(0,0)|^2
    assert r.interference_w[0, 0] == pytest.approx(i0)
    assert r.interference_w[0, 1] == pytest.approx(i1)
    # (4) rates
    up0 = B * log2(1 + 3.0 / (1 + i0))  # SINR 2
    up1 = B * log2(1 + 0.5 / (1 + i1))  # SINR 1/8
    down0, down1 = B * log2(1 + 2 * 3.0), B * log2(1 + 2 * 1.0)
    r_kc, r_ck = B * log2(1 + 2 * 1.0), B * log2(1 + 4 * 1.0)  # edge 0 to / from the cloud
    assert up0 == pytest.approx(B * log2(3))
    assert r.uplink_rate_bps[0, 0] == pytest.approx(up0)
    assert r.uplink_rate_bps[0, 1] == pytest.approx(up1)
    louder = [dict(u) for u in UES]
    louder[1]["power_ratio"] = 1.0  # UE1 shouts on UE0's channel: UE0's rate drops
    assert evaluate_round(P, *_arrays(louder)).uplink_rate_bps[0, 0] < up0
    # (2) computation time
    t1 = [6e6 * 100 / 4e9, 2e6 * 200 / 8e9, 4e6 * 500 / (0.5 * 1e9)]
    np.testing.assert_allclose(r.compute_time_s[0], t1)
    # (8), (9) communication time
    t21 = [6e6 / up0 + 3e6 / down0, 2e6 / up1 + 6e6 / down1, 0.0]
    t22 = [0.0, 2e6 / r_kc + 6e6 / r_ck, 0.0]
    np.testing.assert_allclose(r.ue_edge_comm_time_s[0], t21)
    np.testing.assert_allclose(r.edge_cloud_comm_time_s[0], t22)
    # (3), (6), (7) energy
    e_local = 1e-27 * 4e6 * 500 * (0.5e9) ** 2
    e = [1.0 * 6e6 / up0, 0.5 * 2e6 / up1, e_local]
    np.testing.assert_allclose(r.energy_j[0], e)
    assert r.transmit_energy_j[0, 2] == 0 and r.local_energy_j[0, 0] == 0
    # (12) per-UE execution times: UE0 alone at edge 0, UE1 alone in the cloud queue
    exec_t = [t1[0] + t21[0], t1[1] + t21[1] + t22[1], t1[2]]
    np.testing.assert_allclose(r.execution_time_s[0], exec_t)
    assert r.round_time_s[0] == pytest.approx(max(exec_t))
    # (13) objective and (17) vector reward
    assert r.objective[0] == pytest.approx(1.0 * max(exec_t) + 0.5 * sum(e))
    np.testing.assert_allclose(vector_reward(P, r)[0], np.stack([-1.0 * np.array(exec_t), -0.5 * np.array(e)], -1))


def test_edge_queue_sums_served_times_of_the_same_edge_server():
    ues = [dict(u) for u in UES]
    ues[1].update(offload=EDGE)  # UE0 and UE1 now queue at edge 0; UE2 goes to edge 1 alone
    ues[2].update(offload=EDGE)
    tasks, decision = _arrays(ues)
    r = evaluate_round(P, tasks, decision)
    served = r.compute_time_s[0] + r.ue_edge_comm_time_s[0]
    assert r.compute_time_s[0, 1] == 0.0  # cached result at the edge: no edge computation
    np.testing.assert_allclose(r.execution_time_s[0], [served[0] + served[1], served[0] + served[1], served[2]])


def test_cloud_queue_spans_edge_servers_and_adds_own_backhaul_time():
    ues = [dict(u) for u in UES]
    for u in ues:
        u.update(offload=CLOUD)
    tasks, decision = _arrays(ues)
    r = evaluate_round(P, tasks, decision)
    served = (r.compute_time_s[0] + r.ue_edge_comm_time_s[0]).sum()
    np.testing.assert_allclose(r.execution_time_s[0], served + r.edge_cloud_comm_time_s[0])
    # edge 1 has a better backhaul gain (2.0) than edge 0 (1.0)
    assert r.edge_cloud_comm_time_s[0, 2] < 4e6 / (1e6 * log2(3)) + 1e6 / (1e6 * log2(5))


def test_local_state_is_the_lower_bound_of_each_option():
    tasks, _ = _arrays(UES)
    s = local_state(P, tasks)[0]
    for n, u in enumerate(UES):
        alone, _ = _arrays([dict(u, edge=0)], [EDGE_CLOUD_GAIN[u["edge"]]])
        by_option = {}
        for x in (LOCAL, EDGE, CLOUD):
            d = Decision([x], [0], [1.0], [1.0])
            by_option[x] = evaluate_round(P, alone, d)
        assert s[n, 0] == pytest.approx(P.ue_max_power_w * u["gain"])
        assert s[n, 1] == pytest.approx(by_option[LOCAL].compute_time_s[0, 0])
        assert s[n, 2] == pytest.approx(by_option[EDGE].compute_time_s[0, 0])
        assert s[n, 3] == pytest.approx(by_option[EDGE].ue_edge_comm_time_s[0, 0])
        assert s[n, 4] == pytest.approx(by_option[CLOUD].compute_time_s[0, 0])
        assert s[n, 5] == pytest.approx(by_option[CLOUD].edge_cloud_comm_time_s[0, 0])


def test_padded_ues_change_nothing():
    tasks, decision = _arrays(UES)
    base = evaluate_round(P, tasks, decision)
    ghost = dict(UES[0], gain=100.0, offload=EDGE)  # would interfere badly if it existed
    tasks2, decision2 = _arrays([*UES, ghost])
    tasks2.ue_mask = np.array([[True, True, True, False]])
    padded = evaluate_round(P, tasks2, decision2)
    np.testing.assert_allclose(padded.execution_time_s[0, :3], base.execution_time_s[0])
    assert padded.execution_time_s[0, 3] == 0 and padded.energy_j[0, 3] == 0
    assert padded.objective[0] == pytest.approx(base.objective[0])


def test_batch_of_rounds_is_independent_per_round():
    tasks, decision = _arrays(UES)
    r1 = evaluate_round(P, tasks, decision)
    stacked = RoundTasks(
        edge=np.repeat(tasks.edge, 2, 0),
        gain=np.vstack([tasks.gain, tasks.gain * 10]),
        edge_cloud_gain=np.repeat(tasks.edge_cloud_gain, 2, 0),
        input_bits=np.repeat(tasks.input_bits, 2, 0),
        output_bits=np.repeat(tasks.output_bits, 2, 0),
        cycles_per_bit=np.repeat(tasks.cycles_per_bit, 2, 0),
        cached=np.repeat(tasks.cached, 2, 0),
    )
    d2 = Decision(*(np.repeat(getattr(decision, f), 2, 0) for f in ("offload", "channel", "transmit_power_ratio", "cpu_freq_ratio")))
    r2 = evaluate_round(P, stacked, d2)
    assert r2.objective[0] == pytest.approx(r1.objective[0])
    assert r2.objective[1] != pytest.approx(r1.objective[0])


# ---- properties -------------------------------------------------------------------

ratio = st.floats(min_value=0.01, max_value=1.0)


@st.composite
def rounds(draw, max_ues=6):
    k = draw(st.integers(1, 2))
    n = draw(st.integers(1, max_ues))
    ues = []
    for _ in range(n):
        ues.append(
            dict(
                edge=draw(st.integers(0, k - 1)),
                gain=draw(st.floats(1e-13, 1e-7)),
                input_bits=draw(st.floats(1e5, 2e7)),
                output_bits=draw(st.floats(1e5, 4e7)),
                cycles_per_bit=draw(st.floats(100, 1200)),
                cached=draw(st.integers(0, 1)),
                offload=draw(st.integers(0, 2)),
                channel=draw(st.integers(0, 1)),
                power_ratio=draw(ratio),
                cpu_ratio=draw(ratio),
            )
        )
    edge_cloud_gain = [draw(st.floats(1e-12, 1e-8)) for _ in range(k)]
    return ues, edge_cloud_gain


REALISTIC = NetworkParams(20e6, 6.3e-13, 0.245, 1.0, 10.0, 1.43e9, 8.6e9, 43.2e9, 1e-27, 1.0, 0.1)


@settings(max_examples=150, deadline=None)
@given(rounds())
def test_vectorized_matches_per_ue_loop(case):
    ues, ecg = case
    tasks, decision = _arrays(ues, ecg)
    vec = evaluate_round(REALISTIC, tasks, decision).for_round(0)
    ref = evaluate_round_loop(REALISTIC, ues, ecg)
    assert vec["objective"] == pytest.approx(ref["objective"], rel=1e-9)
    for a, b in zip(vec["ues"], ref["ues"]):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(rounds(), st.integers(0, 5), st.floats(1.0, 10.0))
def test_same_channel_neighbour_raising_power_never_raises_rate(case, pick, factor):
    ues, ecg = case
    if len(ues) < 2:
        return
    me, other = ues[0], ues[1 + pick % (len(ues) - 1)]
    other.update(edge=me["edge"], channel=me["channel"], offload=EDGE, power_ratio=other["power_ratio"] / 10)
    me["offload"] = EDGE
    before = evaluate_round(REALISTIC, *_arrays(ues, ecg)).uplink_rate_bps[0, 0]
    other["power_ratio"] = min(1.0, other["power_ratio"] * factor)
    after = evaluate_round(REALISTIC, *_arrays(ues, ecg)).uplink_rate_bps[0, 0]
    assert after <= before * (1 + 1e-12)


@settings(max_examples=100, deadline=None)
@given(rounds())
def test_cache_hit_never_increases_time(case):
    ues, ecg = case
    misses = [dict(u, cached=0) for u in ues]
    hits = [dict(u, cached=1) for u in ues]
    r_miss = evaluate_round(REALISTIC, *_arrays(misses, ecg))
    r_hit = evaluate_round(REALISTIC, *_arrays(hits, ecg))
    assert np.all(r_hit.execution_time_s <= r_miss.execution_time_s * (1 + 1e-12))
    assert r_hit.round_time_s[0] <= r_miss.round_time_s[0] * (1 + 1e-12)
    np.testing.assert_allclose(r_hit.energy_j, r_miss.energy_j)


@settings(max_examples=100, deadline=None)
@given(rounds())
def test_local_only_round_has_no_interference_and_no_transmission(case):
    ues, ecg = case
    local = [dict(u, offload=LOCAL) for u in ues]
    r = evaluate_round(REALISTIC, *_arrays(local, ecg))
    assert np.all(r.interference_w == 0)
    assert np.all(r.transmit_energy_j == 0)
    assert np.all(r.ue_edge_comm_time_s == 0) and np.all(r.edge_cloud_comm_time_s == 0)
    np.testing.assert_allclose(r.execution_time_s, r.compute_time_s)


@settings(max_examples=100, deadline=None)
@given(rounds(), st.floats(0, 10), st.floats(0, 10), st.floats(0, 5), st.floats(0, 5))
def test_objective_monotone_in_weights(case, w1, w2, d1, d2):
    ues, ecg = case
    tasks, decision = _arrays(ues, ecg)

    def objective(a, b):
        p = NetworkParams(**{**REALISTIC.__dict__, "w_time": a, "w_energy": b})
        return evaluate_round(p, tasks, decision).objective[0]

    base = objective(w1, w2)
    assert objective(w1 + d1, w2) >= base
    assert objective(w1, w2 + d2) >= base


def test_shape_mismatch_is_rejected():
    tasks, decision = _arrays(UES)
    with pytest.raises(ValueError, match="shape"):
        evaluate_round(P, tasks, Decision([0, 0], [0, 0], [1, 1], [1, 1]))
    with pytest.raises(ValueError, match="edge index"):
        RoundTasks(edge=[0, 3], gain=[1, 1], edge_cloud_gain=[1.0], input_bits=[1, 1], output_bits=[1, 1], cycles_per_bit=[1, 1], cached=[0, 0])


def test_retain_freed_heap_reaches_glibc():
    import platform

    from edgepilot.edge_agent.system_model import retain_freed_heap

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert retain_freed_heap() is expected
