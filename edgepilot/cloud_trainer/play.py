"""Playing a learned actor on the simulator: the decision an actor's (noisy or
deterministic) outputs stand for, the policy wrapper every evaluation uses, and
:func:`evaluate_policy`, which scores any policy on rounds of a scenario. Trainers
validate with it too, so it sits below them (it imports no trainer)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, Observation
from edgepilot.cloud_trainer.scenario import Scenario
from edgepilot.edge_agent.actions import MIN_RATIO
from edgepilot.edge_agent.system_model import Decision


def observation_tensors(obs: Observation):
    """(joint_state float32, edge_id int64, ue_mask bool) tensors of an observation."""
    return (
        torch.as_tensor(obs.local_state, dtype=torch.float32),
        torch.as_tensor(obs.edge_id, dtype=torch.int64),
        torch.as_tensor(obs.ue_mask, dtype=torch.bool),
    )


def decision_from_actions(p_x, p_l, a, b) -> Decision:
    """Argmax decision from (possibly noisy) action tensors / arrays."""
    p_x, p_l, a, b = (np.asarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t) for t in (p_x, p_l, a, b))
    return Decision(
        offload=p_x.argmax(-1),
        channel=p_l.argmax(-1),
        transmit_power_ratio=np.clip(a, MIN_RATIO, 1.0).astype(np.float64),
        cpu_freq_ratio=np.clip(b, MIN_RATIO, 1.0).astype(np.float64),
    )


def per_ue(actor: torch.nn.Module, state: torch.Tensor):
    """Apply a DTAC actor to every UE of (B, N, 6) joint states separately: the
    local states are flattened to (B*N, 6) rows, so no information crosses UEs."""
    b, n, _ = state.shape
    p_x, p_l, a, bb = actor(state.reshape(b * n, -1))
    return p_x.reshape(b, n, -1), p_l.reshape(b, n, -1), a.reshape(b, n), bb.reshape(b, n)


# ---------------------------------------------------------------------------
# policies over learned actors
class ActorPolicy:
    """Wraps an actor: ``kind`` "joint" (TAC, TL MLP, HAPPO: (B, N, 6) + edge ids) or
    "local" (DTAC, TL-transformer: each UE's local state alone)."""

    def __init__(self, name: str, actor: torch.nn.Module, kind: str, refine: Callable | None = None) -> None:
        self.name, self.actor, self.kind, self.refine = name, actor.eval(), kind, refine

    def actions(self, obs: Observation):
        s, e, m = observation_tensors(obs)
        with torch.no_grad():
            if self.kind == "local":
                return per_ue(self.actor, s)
            acts = self.actor(s, e, m)
            return self.refine(s, e, m, acts) if self.refine else acts

    def act(self, obs: Observation) -> Decision:
        return decision_from_actions(*self.actions(obs))


HEADLINE_KEYS = ("weighted_reward", "weighted_reward_median", "avg_round_time_s", "avg_energy_per_task_j", "offload_preference")


def headline(result: dict) -> dict:
    """The figures of an :func:`evaluate_policy` result that the benchmarks report."""
    return {k: result[k] for k in HEADLINE_KEYS}


def evaluate_policy(policy, scenario: Scenario, rounds: int = 50, envs: int = 32, seed: int = 1000, keep_rounds: bool = False) -> dict:
    """Roll ``policy`` for ``rounds`` rounds of ``envs`` parallel episodes. ``keep_rounds``
    also returns each round's objective and number of local UEs (arrays, in play order:
    round-major, then env) for per-round comparisons of methods played on the same seed."""
    sim = BatchSimulator(scenario, batch_size=envs, seed=seed)
    obs = sim.reset()
    objective, round_time, energy, tasks, local_ues = [], [], [], [], []
    counts = np.zeros(3)
    by_n: dict[int, list[float]] = {}
    by_n_time: dict[int, list[float]] = {}
    by_n_energy: dict[int, list[float]] = {}
    t0 = time.perf_counter()
    for _ in range(rounds):
        decision = policy.act(obs)
        step = sim.step(decision)
        res, mask = step.result, obs.ue_mask
        n_ues = mask.sum(1)
        objective.append(res.objective)
        round_time.append(res.round_time_s)
        energy.append(res.total_energy_j)
        tasks.append(n_ues)
        x = np.where(mask, decision.offload, -1)
        counts += [(x == k).sum() for k in range(3)]
        local_ues.append((x == 0).sum(1))
        for i, n in enumerate(n_ues.tolist()):
            by_n.setdefault(n, []).append(float(res.objective[i]))
            by_n_time.setdefault(n, []).append(float(res.round_time_s[i]))
            by_n_energy.setdefault(n, []).append(float(res.total_energy_j[i] / n))
        obs = sim.reset() if step.episode_done else step.observation
    objective, round_time, energy, tasks = (np.concatenate(v) for v in (objective, round_time, energy, tasks))
    kept = {"round_objective": objective, "round_local_ues": np.concatenate(local_ues)} if keep_rounds else {}
    return {
        "weighted_reward": -float(objective.mean()),  # (27)
        "weighted_reward_median": -float(np.median(objective)),
        "avg_round_time_s": float(round_time.mean()),
        "avg_energy_per_task_j": float(energy.sum() / tasks.sum()),
        "offload_preference": dict(zip(("local", "edge", "cloud"), (counts / counts.sum()).tolist())),
        "by_num_ues": {
            str(n): {"weighted_reward": -float(np.mean(by_n[n])), "avg_round_time_s": float(np.mean(by_n_time[n])),
                     "avg_energy_per_task_j": float(np.mean(by_n_energy[n])), "rounds": len(by_n[n])}
            for n in sorted(by_n)
        },
        "rounds": int(rounds * envs),
        "decide_wall_s": time.perf_counter() - t0,
        **kept,
    }
