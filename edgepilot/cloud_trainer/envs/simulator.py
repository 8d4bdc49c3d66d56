"""The cloud-edge network simulator: B independent episodes stepped together.

Per episode: edge servers sit evenly on a circle of ``cloud_radius_m`` around the
cloud; each edge server gets a number of UEs drawn uniformly from
[ues_per_edge_min, ues_per_edge_max], placed uniformly on its disk of
``edge_radius_m``; each UE gets a UE type. Per round: every UE draws a task from its
type's popularity law and, with Rayleigh fading on, a fresh channel gain. The edge
caches (LRU or LFU, capacity S^k bits) carry state across the rounds of an episode.

Episodes have a different number of UEs, so per-UE arrays are padded to
``scenario.max_ues`` and ``ue_mask`` marks the UEs that exist; the system model
ignores padded UEs. All randomness comes from one seeded numpy Generator, so a
(scenario, seed) pair reproduces a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepilot.cloud_trainer.scenario import Scenario
from edgepilot.edge_agent.system_model import (
    CLOUD,
    EDGE,
    Decision,
    RoundResult,
    RoundTasks,
    evaluate_round,
    local_state,
    retain_freed_heap,
    vector_reward,
)


@dataclass
class TaskCatalogue:
    """The M task types (S_i, S_o, C) and each UE type's arrival law over them."""

    input_bits: np.ndarray  # (M,)
    output_bits: np.ndarray  # (M,)
    cycles_per_bit: np.ndarray  # (M,)
    type_cdf: np.ndarray  # (num_ue_types, M), cumulative arrival probabilities

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> "TaskCatalogue":
        t = scenario.tasks
        rng = np.random.default_rng([scenario.seed, 0x7A5C])
        m = t.num_task_types
        catalogue_in = rng.uniform(t.input_bits.low, t.input_bits.high, m)
        catalogue_out = rng.uniform(t.output_bits.low, t.output_bits.high, m)
        catalogue_cyc = rng.uniform(t.cycles_per_bit.low, t.cycles_per_bit.high, m)
        zipf = 1.0 / np.arange(1, m + 1) ** t.popularity_zipf
        probs = np.empty((t.num_ue_types, m))
        for u in range(t.num_ue_types):  # a random ranking of the tasks per UE type
            probs[u, rng.permutation(m)] = zipf
        probs /= probs.sum(axis=1, keepdims=True)
        cdf = np.cumsum(probs, axis=1)
        cdf[:, -1] = 1.0
        return cls(catalogue_in, catalogue_out, catalogue_cyc, cdf)

    def sample(self, rng: np.random.Generator, ue_type: np.ndarray) -> np.ndarray:
        """One task index per UE, drawn from its type's law (vectorized inverse CDF)."""
        num_types, m = self.type_cdf.shape
        shifted = (self.type_cdf + np.arange(num_types)[:, None]).ravel()  # rows live in [u, u+1]
        u = rng.random(ue_type.shape) + ue_type
        idx = np.searchsorted(shifted, u, side="right") - ue_type * m
        return np.minimum(idx, m - 1)


@dataclass
class Observation:
    """What the agents see at the start of a round; (B, N, ...) arrays, padded."""

    local_state: np.ndarray  # (B, N, 6) float64, eq. (14)
    edge_id: np.ndarray  # (B, N) int64
    ue_mask: np.ndarray  # (B, N) bool
    tasks: RoundTasks  # the full round description (for the system model / evaluation)
    task_id: np.ndarray  # (B, N) int64, index into the catalogue


@dataclass
class StepResult:
    result: RoundResult
    reward: np.ndarray  # (B, N, 2) vector reward (17)
    observation: Observation  # the next round
    episode_done: bool


class BatchSimulator:
    """B parallel episodes of one scenario, vectorized over episodes and UEs."""

    def __init__(self, scenario: Scenario, batch_size: int = 1, seed: int | None = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.scenario = scenario
        self.params = scenario.network_params
        self.batch_size = batch_size
        self.catalogue = TaskCatalogue.from_scenario(scenario)
        self.rng = np.random.default_rng(seed)
        self.num_edges = scenario.topology.num_edge_servers
        self.max_ues = scenario.max_ues
        self.round = 0
        self._obs: Observation | None = None
        retain_freed_heap()  # every step allocates and frees the same ~MBs of temporaries

    # -- episode -------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        topo, b, k = self.scenario.topology, self.batch_size, self.num_edges
        per_edge_max = topo.ues_per_edge_max
        counts = self.rng.integers(topo.ues_per_edge_min, per_edge_max + 1, size=(b, k))
        slot = np.arange(per_edge_max)
        # UE slots are grouped by edge server: slot j of edge e is UE e * max + j.
        self.ue_mask = (slot[None, None, :] < counts[:, :, None]).reshape(b, self.max_ues)
        self.edge_id = np.broadcast_to(np.repeat(np.arange(k), per_edge_max), (b, self.max_ues)).copy()
        radius = topo.edge_radius_m * np.sqrt(self.rng.random((b, self.max_ues)))
        self.distance_m = np.maximum(radius, topo.min_distance_m)
        self.path_gain = self.scenario.radio.path_gain(self.distance_m)
        # edge servers evenly on the cloud circle: all at cloud_radius_m from the cloud
        self.edge_cloud_path_gain = np.full((b, k), self.scenario.radio.path_gain(topo.cloud_radius_m))
        self.ue_type = self.rng.integers(0, self.scenario.tasks.num_ue_types, size=(b, self.max_ues))
        m = self.scenario.tasks.num_task_types
        self.cached = np.zeros((b, k, m), dtype=bool)
        self.cache_recency = np.zeros((b, k, m))
        self.cache_count = np.zeros((b, k, m))
        self.round = 0
        self._obs = self._draw_round()
        return self._obs

    def _draw_round(self) -> Observation:
        task_id = self.catalogue.sample(self.rng, self.ue_type)
        gain, edge_cloud_gain = self.path_gain, self.edge_cloud_path_gain
        if self.scenario.radio.rayleigh_fading:
            gain = gain * self.rng.exponential(1.0, gain.shape)
            edge_cloud_gain = edge_cloud_gain * self.rng.exponential(1.0, edge_cloud_gain.shape)
        batch_idx = np.arange(self.batch_size)[:, None]
        cached = self.cached[batch_idx, self.edge_id, task_id] & self.ue_mask
        tasks = RoundTasks(
            edge=self.edge_id,
            gain=gain,
            edge_cloud_gain=edge_cloud_gain,
            input_bits=self.catalogue.input_bits[task_id],
            output_bits=self.catalogue.output_bits[task_id],
            cycles_per_bit=self.catalogue.cycles_per_bit[task_id],
            cached=cached.astype(np.float64),
            ue_mask=self.ue_mask,
        )
        state = local_state(self.params, tasks)
        return Observation(state, self.edge_id, self.ue_mask, tasks, task_id)

    @property
    def observation(self) -> Observation:
        if self._obs is None:
            raise RuntimeError("call reset() before using the simulator")
        return self._obs

    # -- round ---------------------------------------------------------------
    def step(self, decision: Decision) -> StepResult:
        obs = self.observation
        if decision.offload.shape != obs.edge_id.shape:
            raise ValueError(f"decision shape {decision.offload.shape} != observation shape {obs.edge_id.shape}")
        result = evaluate_round(self.params, obs.tasks, decision)
        offloaded = ((decision.offload == EDGE) | (decision.offload == CLOUD)) & self.ue_mask
        self._update_caches(obs.task_id, offloaded)
        self.round += 1
        done = self.round >= self.scenario.episode.rounds
        self._obs = self._draw_round()
        return StepResult(result, vector_reward(self.params, result), self._obs, done)

    def _update_caches(self, task_id: np.ndarray, offloaded: np.ndarray) -> None:
        """Place the results of this round's offloaded tasks in their edge caches.

        Requested results become most recent; the cache then keeps the results with
        the highest priority (recency for LRU, request count then recency for LFU)
        whose sizes fit in S^k, in priority order - what evicting from the tail until
        everything fits gives."""
        self.round_clock = self.round + 1
        b_idx = np.broadcast_to(np.arange(self.batch_size)[:, None], task_id.shape)[offloaded]
        k_idx = self.edge_id[offloaded]
        m_idx = task_id[offloaded]
        requested = np.zeros_like(self.cached)
        requested[b_idx, k_idx, m_idx] = True
        if not requested.any():
            return
        self.cache_recency[requested] = self.round_clock
        np.add.at(self.cache_count, (b_idx, k_idx, m_idx), 1.0)
        candidates = self.cached | requested
        if self.scenario.cache.policy == "lru":
            priority = self.cache_recency
        else:
            priority = self.cache_count + self.cache_recency / (self.round_clock + 1.0)
        priority = np.where(candidates, priority, -np.inf)
        order = np.argsort(-priority, axis=-1, kind="stable")
        sizes = np.where(candidates, self.catalogue.output_bits, 0.0)
        sorted_sizes = np.take_along_axis(sizes, order, axis=-1)
        fits = np.cumsum(sorted_sizes, axis=-1) <= self.scenario.cache.capacity_bits
        keep = np.zeros_like(self.cached)
        np.put_along_axis(keep, order, fits, axis=-1)
        self.cached = keep & candidates


def random_decision(rng: np.random.Generator, shape: tuple[int, int], num_channels: int) -> Decision:
    """The paper's Random baseline: x, l uniform; a, b uniform in (0, 1]."""
    return Decision(
        offload=rng.integers(0, 3, size=shape),
        channel=rng.integers(0, num_channels, size=shape),
        transmit_power_ratio=1.0 - rng.random(shape),
        cpu_freq_ratio=1.0 - rng.random(shape),
    )


def sample_local_states(scenario: Scenario, count: int, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """``count`` raw local states (count, 6) drawn from the simulator under random
    decisions (so edge caches fill as they would), for calibration and parity."""
    sim = BatchSimulator(scenario, batch_size=batch_size, seed=seed)
    obs = sim.reset()
    out, have = [], 0
    rng = np.random.default_rng(seed + 1)
    rounds_in_episode = 0
    while have < count:
        states = obs.local_state[obs.ue_mask]
        out.append(states)
        have += len(states)
        step = sim.step(random_decision(rng, obs.edge_id.shape, scenario.radio.num_channels))
        obs = step.observation
        rounds_in_episode += 1
        if step.episode_done or rounds_in_episode >= 50:  # fresh placements now and then
            obs, rounds_in_episode = sim.reset(), 0
    return np.concatenate(out)[:count]
