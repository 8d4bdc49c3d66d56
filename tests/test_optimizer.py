"""The full-information optimizer and the strong rules (issue 38's ceiling and floor)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepilot.cloud_trainer.baselines.exhaustive import ExhaustivePolicy
from edgepilot.cloud_trainer.baselines.optimizer import RoundOptimizer, RoundScorer, cell_rank
from edgepilot.cloud_trainer.baselines.rules import RuleParams, RulePolicy, fit_rule
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator
from edgepilot.cloud_trainer.scenario import load_scenario, scenario_from_dict
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, Decision, evaluate_round


def _small(ues: int = 4, edges: int = 1):
    data = load_scenario("fig5").model_dump()
    data.pop("derived", None)
    data["topology"].update(num_edge_servers=edges, ues_per_edge_min=ues, ues_per_edge_max=ues)
    return scenario_from_dict(data)


@pytest.fixture(scope="module")
def n4():
    sc = _small()
    obs = BatchSimulator(sc, batch_size=3, seed=3).reset()
    return sc, obs


def test_optimizer_matches_or_beats_the_exhaustive_search_at_n4(n4):
    sc, obs = n4
    plan = RoundOptimizer(sc.network_params, sc.radio.num_channels).solve(obs.tasks, obs.local_state)
    # what it reports is what the system model says of its decision
    played = evaluate_round(sc.network_params, obs.tasks, plan.decision())
    np.testing.assert_allclose(plan.objective, played.objective, rtol=1e-9)
    exhaustive = ExhaustivePolicy(sc.network_params, sc.radio.num_channels)
    best = np.array([exhaustive.best_for_round(obs.tasks, i)[1] for i in range(obs.tasks.batch_size)])
    # the exhaustive search only knows a grid of a and b: the optimizer may be better, never worse by > 0.5%
    assert np.all(plan.objective <= best * 1.005), (plan.objective, best)


def test_lower_bound_is_below_what_is_played(n4):
    sc, obs = n4
    opt = RoundOptimizer(sc.network_params, sc.radio.num_channels)
    plan = opt.solve(obs.tasks, obs.local_state)
    bound = opt.lower_bound(obs.tasks, obs.local_state)
    assert np.all(bound <= plan.objective * (1 + 1e-6)) and np.all(bound > 0)


def test_closed_form_cpu_ratio_beats_every_b_on_a_grid(n4):
    """For fixed offload / channel / power, the scorer's b is at least as good as any
    common grid of b values for the local UEs."""
    sc, obs = n4
    t = obs.tasks
    shape = t.edge.shape
    offload = np.tile(np.array([LOCAL, LOCAL, EDGE, CLOUD]), (shape[0], 1))
    channel, power = np.tile(np.arange(4), (shape[0], 1)), np.ones(shape)
    objective, cpu, _ = RoundScorer(sc.network_params).score(t, offload, channel, power)
    np.testing.assert_allclose(objective, evaluate_round(sc.network_params, t, Decision(offload, channel, power, cpu)).objective)
    rng = np.random.default_rng(0)
    for _ in range(200):
        b = np.where(offload == LOCAL, rng.uniform(0.05, 1.0, shape), 1.0)
        other = evaluate_round(sc.network_params, t, Decision(offload, channel, power, b)).objective
        assert np.all(objective <= other * (1 + 1e-9))


def test_cell_rank_orders_gains_within_each_cell():
    sc = _small(ues=3, edges=2)
    obs = BatchSimulator(sc, batch_size=4, seed=1).reset()
    rank = cell_rank(obs.tasks)
    for i in range(4):
        for k in (0, 1):
            members = np.flatnonzero((obs.tasks.edge[i] == k) & obs.tasks.ue_mask[i])
            order = members[np.argsort(-obs.tasks.gain[i, members])]
            assert rank[i, order].tolist() == list(range(len(members)))


def test_rules_decide_from_the_local_state_alone():
    sc = load_scenario("fig5")
    obs = BatchSimulator(sc, batch_size=4, seed=2).reset()
    params = RuleParams(round_budget_s=8.0, edge_threshold_s=2.0, gain_low_w=1e-12, gain_high_w=1e-10)
    policy = RulePolicy("edge_rule", params, sc.radio.num_channels)
    d = policy.act(obs)
    # the same local state anywhere in the batch gives the same decision
    perm = np.random.default_rng(0).permutation(obs.local_state.shape[1])
    shuffled = type(obs)(obs.local_state[:, perm], obs.edge_id[:, perm], obs.ue_mask[:, perm], obs.tasks, obs.task_id[:, perm])
    d2 = policy.act(shuffled)
    for a, b in ((d.offload, d2.offload), (d.channel, d2.channel), (d.transmit_power_ratio, d2.transmit_power_ratio)):
        np.testing.assert_array_equal(a[:, perm], b)
    s = obs.local_state
    offload = s[..., 2] + s[..., 3] < 2.0
    np.testing.assert_array_equal(d.offload == EDGE, offload)
    # power control: an offloading UE arrives at its bin's lower edge, never above its full power
    rx = s[..., 0] * d.transmit_power_ratio
    assert np.all(d.transmit_power_ratio <= 1.0) and np.all(rx <= s[..., 0] * (1 + 1e-12))
    budget = RulePolicy("budget", params, sc.radio.num_channels).act(obs)
    assert np.all(budget.offload == LOCAL)
    np.testing.assert_allclose(budget.cpu_freq_ratio, np.clip(s[..., 1] / 8.0, 1e-6, 1.0))


def test_fitting_a_rule_improves_it_on_training_rounds():
    sc = _small(ues=5, edges=2)
    from edgepilot.cloud_trainer.baselines.rules import _score

    default = _score("edge_rule", RuleParams(), sc, rounds=4, envs=8, seed=0)
    params, fitted = fit_rule("edge_rule", sc, rounds=4, envs=8, seed=0, maxiter=4, popsize=5)
    assert fitted < default
    assert fitted == pytest.approx(_score("edge_rule", params, sc, rounds=4, envs=8, seed=0))


def test_simulate_plays_the_optimizer(tmp_path):
    """``edgepilot simulate --policy optimizer`` plays the ceiling: on the same rounds it
    beats every UE computing locally."""
    import json

    from typer.testing import CliRunner

    from edgepilot.cli import app

    out = {}
    for policy in ("optimizer", "local"):
        r = CliRunner().invoke(app, ["simulate", "--scenario", "fig5", "--policy", policy, "--rounds", "2", "--seed", "4",
                                     "-o", str(tmp_path / f"{policy}.json")])
        assert r.exit_code == 0, r.output
        out[policy] = json.loads((tmp_path / f"{policy}.json").read_text())["summary"]["weighted_reward"]
    assert out["optimizer"] > out["local"] * 0.5  # rewards are negative: at least twice as good
