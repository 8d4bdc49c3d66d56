"""PettingZoo parallel environment: one agent per UE, local observations only.

Each agent ``ue_<n>`` observes the HAPPO local state of eq. (24),
[n, k, P_UE |h|^2, T1*(0), T1*(1), T21*(1), T1*(2), T22*(2)] (8 values), and acts with
its own row [p_x (3) | p_l (L) | a | b]. All agents share the reward of eq. (23),
the negative objective of the round; ``state()`` is the padded global state of
eq. (25), (8 * N_max,). The number of UEs (so the set of agents) changes between
episodes; every agent is truncated after ``scenario.episode.rounds`` rounds.
"""

from __future__ import annotations

import functools

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from edgepilot.cloud_trainer.envs.gym_env import action_width, round_info, split_action
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, Observation
from edgepilot.cloud_trainer.scenario import Scenario, load_scenario
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM, Decision

HAPPO_STATE_DIM = LOCAL_STATE_DIM + 2  # eq. (24): UE id and edge id in front


class CloudEdgeParallelEnv(ParallelEnv):
    metadata = {"name": "edgepilot_cloud_edge_v0", "render_modes": []}

    def __init__(self, scenario: Scenario | str | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.num_channels = self.scenario.radio.num_channels
        self.max_ues = self.scenario.max_ues
        self.possible_agents = [f"ue_{i}" for i in range(self.max_ues)]
        self.agents: list[str] = []
        self.state_space = spaces.Box(-np.inf, np.inf, shape=(HAPPO_STATE_DIM * self.max_ues,), dtype=np.float64)
        self._sim: BatchSimulator | None = None
        self._obs: Observation | None = None
        self._rng = np.random.default_rng()

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one space object per agent, as PettingZoo expects
    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, shape=(HAPPO_STATE_DIM,), dtype=np.float64)

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def action_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, 1.0, shape=(action_width(self.num_channels),), dtype=np.float32)

    def _agent_obs(self, obs: Observation, i: int) -> np.ndarray:
        return np.concatenate([[float(i), float(obs.edge_id[0, i])], obs.local_state[0, i]])

    def _observations(self) -> dict[str, np.ndarray]:
        return {a: self._agent_obs(self._obs, int(a.split("_")[1])) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._sim = BatchSimulator(self.scenario, batch_size=1, seed=int(self._rng.integers(2**63 - 1)))
        self._obs = self._sim.reset()
        self.agents = [f"ue_{i}" for i in np.flatnonzero(self._obs.ue_mask[0])]
        return self._observations(), {a: {} for a in self.agents}

    def state(self) -> np.ndarray:
        """Eq. (25): the agents' eq. (24) states concatenated, zero-padded to N_max."""
        out = np.zeros((self.max_ues, HAPPO_STATE_DIM))
        for a in self.agents:
            i = int(a.split("_")[1])
            out[i] = self._agent_obs(self._obs, i)
        return out.ravel()

    def step(self, actions: dict[str, np.ndarray]):
        if self._sim is None:
            raise RuntimeError("call reset() before step()")
        rows = np.zeros((self.max_ues, action_width(self.num_channels)))
        rows[:, -2:] = 1.0  # padded UEs: any valid row, they are masked out
        for agent, act in actions.items():
            if agent not in self.agents:
                raise ValueError(f"action for unknown or finished agent {agent!r}")
            rows[int(agent.split("_")[1])] = act
        decoded = split_action(rows, self.num_channels)
        step = self._sim.step(Decision(**{k: v[None] for k, v in decoded.items()}))
        info = round_info(step)
        reward = -info["objective"]  # eq. (23), shared
        agents = list(self.agents)
        self._obs = step.observation
        observations = self._observations()
        rewards = {a: reward for a in agents}
        terminations = {a: False for a in agents}
        truncations = {a: step.episode_done for a in agents}
        infos = {a: {"reward_vector": info["reward_vector"][int(a.split("_")[1])]} for a in agents}
        if step.episode_done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos
