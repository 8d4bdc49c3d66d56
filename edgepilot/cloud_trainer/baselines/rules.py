"""Strong decentralized rules: what a learned DTAC has to beat.

Each rule decides for one UE from its own local state (14) only, like the DTAC actor,
and has a few numbers fitted on training rounds (:func:`fit_rule`, never on the rounds
it is evaluated on):

* ``budget``: every UE computes locally with ``b = min(1, T1* / R)``: it finishes at the
  fitted round budget R (or at full speed when that is longer). One number: R.
* ``edge_rule``: a UE offloads to its edge server when its lower-bound edge time
  T1*(1) + T21*(1) is under a threshold theta; it picks the channel by the bin of its
  received power P_UE |h|^2 (L bins, log-spaced between g_lo and g_hi, one per channel)
  and lowers its transmit power so that it arrives at the bin's lower edge, so the UEs
  that share a channel arrive with similar powers; a local UE uses the round budget R.
  Four numbers: theta, R, g_lo, g_hi.
* ``edge_rule_full_power``: the same without the power control (a = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, Observation
from edgepilot.cloud_trainer.scenario import Scenario
from edgepilot.edge_agent.system_model import EDGE, LOCAL, Decision

RULES = ("budget", "edge_rule", "edge_rule_full_power")


@dataclass
class RuleParams:
    """The fitted numbers of a rule (seconds, watts); unused ones stay at their defaults."""

    round_budget_s: float = 10.0  # R
    edge_threshold_s: float = 0.0  # theta (0: nobody offloads)
    gain_low_w: float = 1e-12  # g_lo: lower edge of the lowest received-power bin
    gain_high_w: float = 1e-9  # g_hi: lower edge of the highest bin


class RulePolicy:
    """One of :data:`RULES` with its parameters, behind the policy interface."""

    def __init__(self, rule: str, params: RuleParams, num_channels: int) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}: expected one of {', '.join(RULES)}")
        self.name, self.params, self.num_channels = rule, params, int(num_channels)

    def act(self, obs: Observation) -> Decision:
        s = obs.local_state
        p = self.params
        received_w, local_s, edge_s, link_s = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
        shape = received_w.shape
        cpu = np.clip(local_s / max(p.round_budget_s, 1e-9), 1e-6, 1.0)
        if self.name == "budget":
            return Decision(np.full(shape, LOCAL), np.zeros(shape, np.int64), np.ones(shape), cpu)
        offload = np.where(edge_s + link_s < p.edge_threshold_s, EDGE, LOCAL)
        edges = bin_edges(p, self.num_channels)
        channel = np.clip(np.searchsorted(edges, received_w, side="right") - 1, 0, self.num_channels - 1)
        power = np.ones(shape)
        if self.name == "edge_rule":
            floor = edges[channel]
            with np.errstate(divide="ignore", invalid="ignore"):
                power = np.where(received_w > floor, floor / received_w, 1.0)
            power = np.clip(power, 1e-4, 1.0)
        return Decision(offload, channel, power, cpu)


def bin_edges(params: RuleParams, num_channels: int) -> np.ndarray:
    """Lower edges of the received-power bins (watts), one per channel, log-spaced."""
    lo = max(params.gain_low_w, 1e-30)
    hi = max(params.gain_high_w, lo * 1.000001)
    return np.geomspace(lo, hi, num_channels) if num_channels > 1 else np.array([lo])


def _score(rule: str, params: RuleParams, scenario: Scenario, rounds: int, envs: int, seed: int) -> float:
    """Mean objective (13) of the rule on ``rounds`` x ``envs`` simulator rounds (lower is better)."""
    sim = BatchSimulator(scenario, batch_size=envs, seed=seed)
    obs = sim.reset()
    policy = RulePolicy(rule, params, scenario.radio.num_channels)
    total, count = 0.0, 0
    for _ in range(rounds):
        step = sim.step(policy.act(obs))
        total += float(np.sum(step.result.objective))
        count += len(step.result.objective)
        obs = sim.reset() if step.episode_done else step.observation
    return total / count


def fit_rule(rule: str, scenario: Scenario, rounds: int = 20, envs: int = 32, seed: int = 0,
             maxiter: int = 25, popsize: int = 12) -> tuple[RuleParams, float]:
    """The rule's numbers that minimize the mean objective on training rounds of
    ``scenario`` (simulator ``seed``, which must not be the evaluation seed), by
    differential evolution over their logarithms. Returns (params, training objective)."""
    from scipy.optimize import differential_evolution

    states = BatchSimulator(scenario, batch_size=envs, seed=seed).reset().local_state
    present = states[..., 1] > 0
    local = states[..., 1][present]
    received = states[..., 0][present]
    edge_time = (states[..., 2] + states[..., 3])[present]
    # search ranges from the training states: budgets around the local times, thresholds
    # around the edge times, bins around the received powers
    ranges = {
        "round_budget_s": (np.log(np.percentile(local, 5)), np.log(20 * local.max())),
        "edge_threshold_s": (np.log(np.percentile(edge_time, 1) / 2), np.log(2 * edge_time.max())),
        "gain_low_w": (np.log(received.min() / 10), np.log(np.percentile(received, 50))),
        "gain_high_w": (np.log(np.percentile(received, 50)), np.log(received.max() * 10)),
    }
    names = {"budget": ["round_budget_s"],
             "edge_rule": list(ranges), "edge_rule_full_power": list(ranges)}[rule]

    def params_of(v) -> RuleParams:
        return RuleParams(**{k: float(np.exp(x)) for k, x in zip(names, v)})

    result = differential_evolution(lambda v: _score(rule, params_of(v), scenario, rounds, envs, seed),
                                    [ranges[k] for k in names], maxiter=maxiter, popsize=popsize, seed=seed,
                                    tol=1e-4, polish=False)
    return params_of(result.x), float(result.fun)
