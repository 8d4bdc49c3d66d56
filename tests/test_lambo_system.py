"""LAMBO section V: the scenario config, the vectorized objectives against a hand
computation, the closed-form shares against scipy, and the experts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

from edgepilot.cloud_trainer.lambo.experts import de_expert, exact_expert
from edgepilot.cloud_trainer.lambo.scenario import (
    LamboScenario,
    LamboScenarioError,
    list_presets,
    load_lambo_scenario,
)
from edgepilot.cloud_trainer.lambo.system import (
    Instances,
    PromptError,
    evaluate,
    expert_value,
    local_decision,
    move,
    objective_of,
    optimal_shares,
    sample_instances,
)


def _hand_instance() -> Instances:
    return Instances(
        rate_bps=np.array([[[1e8, 2e8], [4e8, 1e8], [1e8, 1e8]]]),
        data_bits=np.array([[1e8, 2e8, 1e8]]),
        cycles=np.array([[1e9, 0.5e9, 1.2e9]]),
        server_hz=np.array([1e10, 2e10]),
        local_hz=1e9, tx_power_w=1.0, compute_power_w=1.0, max_latency_s=1.5,
    )


def test_defaults_are_section_v_and_the_preset_file_spells_them_out():
    s = LamboScenario()
    assert s.servers.cpu_hz == [1.5e10, 1.5e10, 3e10, 5e10] and s.num_servers == 4
    assert (s.num_ues, s.area.side_m, s.area.max_speed_mps, s.tasks.max_latency_s) == (50, 50.0, 1.2, 1.5)
    assert (s.device.tx_power_w, s.device.compute_power_w) == (1.0, 1.0)
    assert "lambo" in list_presets()
    assert load_lambo_scenario("lambo") == s == load_lambo_scenario(None)


def test_a_scenario_where_local_misses_the_bound_is_refused_naming_the_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: {cpu_hz: 1.0e+8}\n")
    with pytest.raises(LamboScenarioError, match="device.cpu_hz"):
        load_lambo_scenario(bad)
    with pytest.raises(LamboScenarioError, match="servers.cpu_hz"):
        load_lambo_scenario(_write(tmp_path, "servers: {cpu_hz: [1.0e+10, -1]}\n"))
    with pytest.raises(LamboScenarioError, match="presets are"):
        load_lambo_scenario("nope")


def _write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_objectives_match_a_hand_computation():
    inst = _hand_instance()
    # UE0 on server 0 with half of it: 1 s upload + 1e9 / 5e9 = 1.2 s, 1 J
    # UE1 on server 1 with a quarter: 2 s upload + 0.5e9 / 5e9 = 2.1 s (misses 1.5 s), 2 J
    # UE2 local: 1.2 s, 1.2 J
    ev = evaluate(inst, np.array([[1, 2, 0]]), np.array([[0.5, 0.25, 0.0]]))
    np.testing.assert_allclose(ev.latency_s, [[1.2, 2.1, 1.2]])
    np.testing.assert_allclose(ev.energy_j, [[1.0, 2.0, 1.2]])
    assert ev.objective("Minimum latency")[0] == pytest.approx(1.5)
    assert ev.objective("minimum  ENERGY")[0] == pytest.approx(4.2)
    assert not ev.feasible[0] and ev.latency_ok.tolist() == [[True, False, True]]
    # UE1 on server 0 instead: 0.5 s upload + 0.1 s = 0.6 s, 0.5 J; feasible
    ev = evaluate(inst, np.array([[1, 1, 0]]), np.array([[0.5, 0.5, 0.0]]))
    assert ev.objective("Minimum latency")[0] == pytest.approx(1.0)
    assert ev.objective("Minimum energy")[0] == pytest.approx(2.7)
    assert ev.feasible[0]
    # the same with 110 % of server 0 handed out: the capacity constraint fails
    ev = evaluate(inst, np.array([[1, 1, 0]]), np.array([[0.6, 0.5, 0.0]]))
    assert not ev.feasible[0] and ev.server_load[0].tolist() == pytest.approx([1.1, 0.0])


def test_unknown_prompts_are_refused_naming_the_known_ones():
    assert objective_of("Minimum latency") == "latency"
    with pytest.raises(PromptError, match="Minimum latency"):
        objective_of("maximum throughput")


def _scipy_latency(c, m, f):
    """min sum c / (s f) s.t. sum s <= 1, s >= m, by SLSQP."""
    x0 = m + (1 - m.sum()) / len(m)
    res = minimize(lambda s: float(np.sum(c / (s * f))), x0, method="SLSQP",
                   bounds=[(mi, 1.0) for mi in m], constraints=[{"type": "ineq", "fun": lambda s: 1.0 - s.sum()}],
                   options={"ftol": 1e-14, "maxiter": 500})
    assert res.success, res.message
    return res.fun


def test_closed_form_shares_match_scipy_on_random_instances():
    scen = LamboScenario(tasks={"num_ues": 6})
    rng = np.random.default_rng(1)
    checked = clamped = 0
    for _ in range(40):
        inst = sample_instances(scen, 1, rng)
        assign = rng.integers(0, scen.num_servers + 1, size=(1, 6))
        share, ok = optimal_shares(inst, assign)
        m = np.take_along_axis(inst.min_share[0], np.clip(assign[0] - 1, 0, 3)[:, None], 1)[:, 0]
        for k in range(scen.num_servers):
            on = assign[0] == k + 1
            if not on.any() or m[on].sum() > 1:
                continue
            ours = float(np.sum(inst.cycles[0, on] / (share[0, on] * inst.server_hz[k])))
            ref = _scipy_latency(inst.cycles[0, on], m[on], inst.server_hz[k])
            assert ours <= ref * (1 + 1e-7) and ours == pytest.approx(ref, rel=1e-5)
            assert share[0, on].sum() == pytest.approx(1.0) and (share[0, on] >= m[on] - 1e-12).all()
            clamped += int(np.isclose(share[0, on], m[on]).any())
            checked += 1
        ev = evaluate(inst, assign, share)
        assert bool(ev.feasible[0]) == bool(ok[0])
    assert checked > 40


def test_closed_form_shares_respect_active_lower_bounds():
    # two UEs on one server: sqrt-proportional shares would give UE1 less than it needs
    inst = Instances(rate_bps=np.array([[[1e9], [1.5e8]]]), data_bits=np.array([[1e8, 2e8]]),
                     cycles=np.array([[1.2e9, 0.3e9]]), server_hz=np.array([3e9]), local_hz=1e9,
                     tx_power_w=1.0, compute_power_w=1.0, max_latency_s=1.5)
    m = inst.min_share[0, :, 0]
    free = np.sqrt([1.2e9, 0.3e9]) / np.sqrt([1.2e9, 0.3e9]).sum()
    assert free[1] < m[1]  # the bound is active
    share, ok = optimal_shares(inst, np.array([[1, 1]]))
    assert ok[0] and share[0, 1] == pytest.approx(m[1]) and share[0].sum() == pytest.approx(1.0)
    ref = _scipy_latency(inst.cycles[0], m, 3e9)
    assert float(np.sum(inst.cycles[0] / (share[0] * 3e9))) == pytest.approx(ref, rel=1e-6)


def _brute_force(inst: Instances, prompt: str) -> float:
    """Every assignment, shares by scipy (latency) or the feasibility test (energy)."""
    n, k = inst.num_ues, inst.num_servers
    best = np.inf
    for combo in itertools.product(range(k + 1), repeat=n):
        a = np.array(combo)
        m = np.where(a > 0, inst.min_share[0][np.arange(n), np.clip(a - 1, 0, k - 1)], 0.0)
        loads = [m[a == j + 1].sum() for j in range(k)]
        if any(load > 1 for load in loads):
            continue
        lat = np.where(a > 0, inst.tx_time_s[0][np.arange(n), np.clip(a - 1, 0, k - 1)], inst.local_latency_s[0])
        energy = np.where(a > 0, inst.tx_power_w * lat, inst.local_energy_j[0])
        if prompt == "Minimum energy":
            best = min(best, energy.sum())
            continue
        total = lat.sum()
        for j in range(k):
            on = a == j + 1
            if on.any():
                total += _scipy_latency(inst.cycles[0, on], m[on], inst.server_hz[j])
        best = min(best, total / n)
    return best


@pytest.mark.parametrize("prompt", ["Minimum latency", "Minimum energy"])
def test_exhaustive_expert_is_the_optimum_at_tiny_n(prompt):
    scen = LamboScenario(tasks={"num_ues": 4}, servers={"cpu_hz": [2e9, 4e9]})
    rng = np.random.default_rng(3)
    for _ in range(3):
        inst = sample_instances(scen, 1, rng)
        sol = exact_expert(inst, prompt)
        assert sol.evaluations == 3 ** 4
        assert sol.value == pytest.approx(_brute_force(inst, prompt), rel=1e-6)
        ev = evaluate(inst, sol.assign[None], sol.share[None])
        assert ev.feasible[0] and ev.objective(prompt)[0] == pytest.approx(sol.value)


def test_exhaustive_expert_refuses_large_n():
    inst = sample_instances(LamboScenario(), 1, np.random.default_rng(0), num_ues=9)
    with pytest.raises(ValueError, match="DE expert"):
        exact_expert(inst, "Minimum latency")


@pytest.mark.parametrize("prompt", ["Minimum latency", "Minimum energy"])
def test_de_expert_reaches_the_exact_optimum_at_small_n_and_beats_local_at_n_50(prompt):
    scen = LamboScenario()
    small = sample_instances(scen, 1, np.random.default_rng(5), num_ues=6)
    exact = exact_expert(small, prompt)
    de = de_expert(small, prompt, maxiter=60, seed=0)
    assert exact.value <= de.value <= exact.value * 1.02
    big = sample_instances(scen, 1, np.random.default_rng(6))
    de = de_expert(big, prompt, maxiter=15, popsize=5, seed=0)
    local = evaluate(big, *local_decision(big)).objective(prompt)[0]
    assert de.value < local * 0.95
    assert evaluate(big, de.assign[None], de.share[None]).feasible[0]


def test_expert_value_is_inf_for_infeasible_assignments():
    inst = _hand_instance()
    value, _ = expert_value(inst, np.array([[2, 2, 2]]), "Minimum latency")  # UE1's 2 s upload breaks 1.5 s
    assert value[0] == np.inf


def test_mobility_keeps_ues_in_the_square_and_redraws_the_channel():
    scen = LamboScenario()
    rng = np.random.default_rng(0)
    inst = sample_instances(scen, 8, rng)
    speed = np.linalg.norm(inst.ue_velocity, axis=-1)
    assert speed.max() <= 1.2 and speed.min() >= 0
    later = move(scen, inst, 100.0, rng)
    assert (later.ue_xy >= 0).all() and (later.ue_xy <= 50).all()
    assert not np.allclose(later.ue_xy, inst.ue_xy) and not np.allclose(later.rate_bps, inst.rate_bps)
    np.testing.assert_array_equal(later.cycles, inst.cycles)
