"""Exhaustive per-round optimum for tiny N (the benchmark's reference objective).

Each UE has 3 offload choices; an offloading UE also picks one of L channels and a
transmit power ratio a on ``power_grid``; a local UE picks b on ``cpu_grid``
(a only matters when offloading, b only when computing locally, so these are all the
distinct decisions on the grid). All (len(cpu_grid) + 2 L len(power_grid))^N joint
decisions of a round are evaluated with the system model in vectorized chunks and
the one with the smallest objective (13) is played.
"""

from __future__ import annotations

import itertools

import numpy as np

from edgepilot.cloud_trainer.envs.simulator import Observation
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, Decision, NetworkParams, RoundTasks, evaluate_round

DEFAULT_GRID = (0.25, 0.5, 0.75, 1.0)
MAX_JOINT = 5_000_000


def ue_options(num_channels: int, power_grid=DEFAULT_GRID, cpu_grid=DEFAULT_GRID) -> np.ndarray:
    """(K, 4) rows (offload, channel, a, b) of one UE's distinct decisions."""
    rows = [(LOCAL, 0, 1.0, b) for b in cpu_grid]
    for x in (EDGE, CLOUD):
        rows += [(x, l, a, 1.0) for l in range(num_channels) for a in power_grid]
    return np.array(rows, dtype=np.float64)


def repeat_round(tasks: RoundTasks, i: int, real: np.ndarray, count: int) -> RoundTasks:
    """Round ``i`` of ``tasks``, restricted to the UEs ``real``, as a batch of ``count``
    identical rounds: one joint decision per row is scored in a single system-model call."""
    sub = lambda arr: np.broadcast_to(np.asarray(arr)[i, real], (count, len(real)))  # noqa: E731
    return RoundTasks(
        edge=sub(tasks.edge), gain=sub(tasks.gain),
        edge_cloud_gain=np.broadcast_to(tasks.edge_cloud_gain[i], (count, tasks.edge_cloud_gain.shape[1])),
        input_bits=sub(tasks.input_bits), output_bits=sub(tasks.output_bits),
        cycles_per_bit=sub(tasks.cycles_per_bit), cached=sub(tasks.cached),
    )


class ExhaustivePolicy:
    name = "exhaustive"

    def __init__(self, params: NetworkParams, num_channels: int, power_grid=DEFAULT_GRID, cpu_grid=DEFAULT_GRID, chunk: int = 200_000) -> None:
        self.params, self.chunk = params, chunk
        self.options = ue_options(num_channels, power_grid, cpu_grid)

    def best_for_round(self, tasks: RoundTasks, i: int) -> tuple[np.ndarray, float]:
        """Best (N, 4) decision rows and objective of round ``i`` of ``tasks``."""
        real = np.flatnonzero(tasks.ue_mask[i])
        k = len(self.options)
        total = k ** len(real)
        if total > MAX_JOINT:
            raise ValueError(f"exhaustive search over {total} joint decisions (N={len(real)}) is too large; use N <= 4")
        best_obj, best_idx = np.inf, None
        combos = np.array(list(itertools.product(range(k), repeat=len(real))), dtype=np.int64)
        for start in range(0, total, self.chunk):
            idx = combos[start : start + self.chunk]
            rows = self.options[idx]  # (c, n, 4)
            t = repeat_round(tasks, i, real, len(idx))
            res = evaluate_round(self.params, t, Decision(rows[..., 0], rows[..., 1], rows[..., 2], rows[..., 3]))
            j = int(np.argmin(res.objective))
            if res.objective[j] < best_obj:
                best_obj, best_idx = float(res.objective[j]), idx[j]
        out = np.tile(np.array([LOCAL, 0, 1.0, 1.0]), (tasks.num_ues, 1))
        out[real] = self.options[best_idx]
        return out, best_obj

    def act(self, obs: Observation) -> Decision:
        rows = np.stack([self.best_for_round(obs.tasks, i)[0] for i in range(obs.tasks.batch_size)])
        return Decision(rows[..., 0].astype(int), rows[..., 1].astype(int), rows[..., 2], rows[..., 3])
