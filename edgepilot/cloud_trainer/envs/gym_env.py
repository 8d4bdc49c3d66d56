"""Gymnasium environment for the centralized agent (TAC): one round per step.

Observation (a Dict, padded to the scenario's ``max_ues`` because the number of UEs
changes between episodes):

* ``joint_state``  (max_ues, 6) float64 - the joint state s_t (15), zero for padding
* ``edge_id``      (max_ues,) int64 - each UE's edge server (the position embedding)
* ``ue_mask``      (max_ues,) int8 - 1 where the UE exists

Action: (max_ues, L + 5) in [0, 1], per UE the paper's A_t (16):
[p_x (3) | p_l (L) | a | b]. The environment takes x = argmax p_x, l = argmax p_l and
clips a, b into (0, 1]; rows of padded UEs are ignored.

Reward: the negative objective of the round, -(w1 T_t + w2 sum_n E_t^n) (13); the
vector reward (17) is in ``info["reward_vector"]`` (max_ues, 2). An episode is
truncated after ``scenario.episode.rounds`` rounds.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, Observation
from edgepilot.cloud_trainer.scenario import Scenario, load_scenario
from edgepilot.edge_agent.actions import decode_actions
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM, Decision


def action_width(num_channels: int) -> int:
    return 3 + num_channels + 2


def split_action(action: np.ndarray, num_channels: int) -> dict[str, np.ndarray]:
    """[p_x | p_l | a | b] rows -> decoded decision arrays (argmax, clipped ratios)."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape[-1] != action_width(num_channels):
        raise ValueError(f"action rows must have {action_width(num_channels)} entries (3 + L + 2), got {action.shape[-1]}")
    return decode_actions(action[..., :3], action[..., 3 : 3 + num_channels], action[..., -2], action[..., -1])


def round_info(step, index: int = 0) -> dict:
    """Per-round figures of one episode of a simulator step, for ``info`` dicts."""
    r = step.result
    return {
        "reward_vector": step.reward[index],
        "round_time_s": float(r.round_time_s[index]),
        "total_energy_j": float(r.total_energy_j[index]),
        "objective": float(r.objective[index]),
    }


class CloudEdgeEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario | str | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.num_channels = self.scenario.radio.num_channels
        n, k = self.scenario.max_ues, self.scenario.topology.num_edge_servers
        self.observation_space = spaces.Dict(
            {
                "joint_state": spaces.Box(0.0, np.inf, shape=(n, LOCAL_STATE_DIM), dtype=np.float64),
                "edge_id": spaces.Box(0, k - 1, shape=(n,), dtype=np.int64),
                "ue_mask": spaces.MultiBinary(n),
            }
        )
        self.action_space = spaces.Box(0.0, 1.0, shape=(n, action_width(self.num_channels)), dtype=np.float32)
        self._sim: BatchSimulator | None = None

    def _observation(self, obs: Observation) -> dict:
        return {
            "joint_state": obs.local_state[0].copy(),
            "edge_id": obs.edge_id[0].copy(),
            "ue_mask": obs.ue_mask[0].astype(np.int8),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sim_seed = int(self.np_random.integers(2**63 - 1))
        self._sim = BatchSimulator(self.scenario, batch_size=1, seed=sim_seed)
        obs = self._sim.reset()
        return self._observation(obs), {"num_ues": int(obs.ue_mask.sum())}

    def step(self, action):
        if self._sim is None:
            raise RuntimeError("call reset() before step()")
        decoded = split_action(action, self.num_channels)
        step = self._sim.step(Decision(**{k: v[None] for k, v in decoded.items()}))
        info = round_info(step)
        return self._observation(step.observation), -info["objective"], False, step.episode_done, info
