"""Simulator and the Gymnasium / PettingZoo environments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test

from edgepilot.cloud_trainer.envs.gym_env import CloudEdgeEnv
from edgepilot.cloud_trainer.envs.pz_env import HAPPO_STATE_DIM, CloudEdgeParallelEnv
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, random_decision, sample_local_states
from edgepilot.cloud_trainer.scenario import load_scenario, scenario_from_dict
from edgepilot.edge_agent.system_model import EDGE, Decision

SMALL = scenario_from_dict(
    {"name": "small", "topology": {"num_edge_servers": 2, "ues_per_edge_min": 1, "ues_per_edge_max": 3}, "episode": {"rounds": 6}}
)


def _run(sim, rounds, seed=0):
    rng = np.random.default_rng(seed)
    obs, out = sim.observation, []
    for _ in range(rounds):
        step = sim.step(random_decision(rng, obs.edge_id.shape, sim.scenario.radio.num_channels))
        out.append(step.result.objective.copy())
        obs = step.observation
    return np.array(out)


def test_simulator_is_seeded_and_reproducible():
    a, b, c = (BatchSimulator(load_scenario("fig5"), batch_size=4, seed=s) for s in (1, 1, 2))
    for sim in (a, b, c):
        sim.reset()
    np.testing.assert_array_equal(a.observation.local_state, b.observation.local_state)
    np.testing.assert_array_equal(_run(a, 5), _run(b, 5))
    assert not np.array_equal(a.observation.local_state, c.observation.local_state)


def test_placement_follows_the_topology():
    scen = load_scenario("fig6")
    sim = BatchSimulator(scen, batch_size=64, seed=0)
    obs = sim.reset()
    counts = np.stack([(obs.ue_mask & (obs.edge_id == k)).sum(1) for k in range(7)], 1)
    assert counts.min() >= 4 and counts.max() <= 6
    assert len(np.unique(obs.ue_mask.sum(1))) > 1  # the number of UEs varies between episodes
    assert sim.distance_m.max() <= scen.topology.edge_radius_m
    assert np.all(obs.local_state[~obs.ue_mask] == 0)
    assert np.all(obs.local_state[obs.ue_mask] > 0)  # caches start empty, so no zero edge time yet


def test_edge_cache_carries_state_and_respects_capacity():
    scen = scenario_from_dict({**SMALL.model_dump(), "cache": {"capacity_bits": 100e6}, "episode": {"rounds": 100}})
    sim = BatchSimulator(scen, batch_size=8, seed=3)
    obs = sim.reset()
    assert not obs.tasks.cached.any()  # empty caches at the start of an episode
    all_edge = Decision(np.full(obs.edge_id.shape, EDGE), np.zeros(obs.edge_id.shape, int), np.ones(obs.edge_id.shape), np.ones(obs.edge_id.shape))
    hits = 0
    for _ in range(30):
        step = sim.step(all_edge)
        stored = (sim.cached * sim.catalogue.output_bits).sum(-1)
        assert np.all(stored <= scen.cache.capacity_bits)
        hits += step.observation.tasks.cached.sum()
    assert hits > 0  # popular tasks come back and hit
    # a cached flag means the result sits in that UE's edge cache, and the local state sees it
    obs = sim.observation
    cached = obs.tasks.cached.astype(bool)
    assert np.all(obs.local_state[..., 2][cached] == 0)
    sim.reset()
    assert not sim.cached.any()


def test_sample_local_states_shape():
    states = sample_local_states(SMALL, 500, seed=0)
    assert states.shape == (500, 6) and np.isfinite(states).all()


def test_gymnasium_checker_passes():
    env = CloudEdgeEnv(SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker warns about infinite Box bounds: times are unbounded
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=5)
    assert obs["joint_state"].shape == (6, 6) and obs["ue_mask"].sum() == info["num_ues"]
    action = env.action_space.sample()
    _, reward, terminated, truncated, info = env.step(action)
    assert reward == pytest.approx(-info["objective"]) and not terminated
    assert info["reward_vector"].shape == (6, 2)


def test_gym_episode_truncates_after_the_scenario_rounds():
    env = CloudEdgeEnv(SMALL)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(SMALL.episode.rounds)]
    assert flags == [False] * (SMALL.episode.rounds - 1) + [True]


def test_gym_rejects_wrong_action_width():
    env = CloudEdgeEnv(SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="3 \\+ L \\+ 2"):
        env.step(np.zeros((6, 4)))


def test_pettingzoo_checker_passes():
    env = CloudEdgeParallelEnv(SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(env, num_cycles=20)
    obs, _ = env.reset(seed=1)
    agent = env.agents[0]
    assert obs[agent].shape == (HAPPO_STATE_DIM,)
    state = env.state()
    assert state.shape == (HAPPO_STATE_DIM * SMALL.max_ues,)
    # eq. (25): zero padding beyond the present agents
    present = {int(a.split("_")[1]) for a in env.agents}
    rows = state.reshape(SMALL.max_ues, HAPPO_STATE_DIM)
    for i in range(SMALL.max_ues):
        assert (np.any(rows[i] != 0) or i == 0) if i in present else np.all(rows[i] == 0)
    _, rewards, _, _, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
    assert len(set(rewards.values())) == 1  # eq. (23): one shared reward
