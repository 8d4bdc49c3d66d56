"""Baselines of the DTAC paper (section IV-A) and ours, behind one policy interface.

A *policy* maps a simulator :class:`~edgepilot.cloud_trainer.envs.simulator.Observation`
(batch of rounds, padded UEs) to a :class:`~edgepilot.edge_agent.system_model.Decision`.

* ``random``     - the paper's Random: x, l uniform, a, b uniform in (0, 1];
* ``local``      - every UE computes locally at full CPU frequency (b = 1);
* ``all_edge``   - every UE offloads to its edge server at full power on a uniformly
  random channel (a UE has no view of the others' channels);
* ``greedy``     - each UE picks the option with the smallest lower-bound time in its
  local state (14): T1*(0) vs T1*(1) + T21*(1) vs T1*(2) + T21*(1) + T22*(2); random
  channel, a = b = 1;
* ``exhaustive`` - per round, the best joint decision over all offload / channel
  choices with a and b on a grid (tiny N only), :mod:`.exhaustive`;
* ``happo``, ``tl``, ``tl_transformer`` - learned, :mod:`.happo`, :mod:`.tl`,
  :mod:`.tl_transformer`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgepilot.cloud_trainer.envs.simulator import Observation, random_decision
from edgepilot.cloud_trainer.state_bounds import lower_bound_times
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, Decision

HEURISTICS = ("random", "local", "all_edge", "greedy")
LEARNED = ("happo", "tl", "tl_transformer")


class Policy(Protocol):
    name: str

    def act(self, obs: Observation) -> Decision: ...


class RandomPolicy:
    name = "random"

    def __init__(self, num_channels: int, seed: int = 0) -> None:
        self.num_channels, self.rng = num_channels, np.random.default_rng(seed)

    def act(self, obs: Observation) -> Decision:
        return random_decision(self.rng, obs.edge_id.shape, self.num_channels)


class LocalPolicy:
    name = "local"

    def __init__(self, num_channels: int, seed: int = 0) -> None:
        pass

    def act(self, obs: Observation) -> Decision:
        shape = obs.edge_id.shape
        return Decision(np.full(shape, LOCAL), np.zeros(shape, int), np.ones(shape), np.ones(shape))


class AllEdgePolicy:
    name = "all_edge"

    def __init__(self, num_channels: int, seed: int = 0) -> None:
        self.num_channels, self.rng = num_channels, np.random.default_rng(seed)

    def act(self, obs: Observation) -> Decision:
        shape = obs.edge_id.shape
        return Decision(np.full(shape, EDGE), self.rng.integers(0, self.num_channels, shape), np.ones(shape), np.ones(shape))



class GreedyPolicy:
    name = "greedy"

    def __init__(self, num_channels: int, seed: int = 0) -> None:
        self.num_channels, self.rng = num_channels, np.random.default_rng(seed)

    def act(self, obs: Observation) -> Decision:
        shape = obs.edge_id.shape
        x = lower_bound_times(obs.local_state).argmin(-1)
        return Decision(x, self.rng.integers(0, self.num_channels, shape), np.ones(shape), np.ones(shape))


HEURISTIC_POLICIES = {"random": RandomPolicy, "local": LocalPolicy, "all_edge": AllEdgePolicy, "greedy": GreedyPolicy}

__all__ = ["Policy", "HEURISTICS", "LEARNED", "HEURISTIC_POLICIES", "lower_bound_times", "CLOUD", "EDGE", "LOCAL"]
