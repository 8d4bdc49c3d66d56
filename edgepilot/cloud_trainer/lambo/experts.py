"""Experts that label LAMBO instances: the exact optimum for small N (every assignment,
each with its optimal shares) and differential evolution for larger N. numpy / scipy."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from edgepilot.cloud_trainer.lambo.system import Instances, expert_value, local_decision, objective_of

#: exhaustive search refuses instances with more UEs than this ((K+1)^N assignments)
EXACT_MAX_UES = 8


@dataclass(frozen=True)
class ExpertSolution:
    assign: np.ndarray  # (N,)
    share: np.ndarray  # (N,)
    value: float  # the prompt's objective
    evaluations: int  # assignments evaluated


def _one(inst: Instances) -> Instances:
    if inst.batch_size != 1:
        raise ValueError(f"an expert solves one instance at a time, got a batch of {inst.batch_size} (use inst.take([i]))")
    return inst


def exact_expert(inst: Instances, prompt: str, chunk: int = 65536) -> ExpertSolution:
    """The optimum of one instance: all (K+1)^N assignments, each with optimal shares."""
    objective_of(prompt)
    inst = _one(inst)
    n, k = inst.num_ues, inst.num_servers
    if n > EXACT_MAX_UES:
        raise ValueError(f"exact expert: {n} UEs is too many for exhaustive search (at most {EXACT_MAX_UES}); use the DE expert")
    best_value, best = np.inf, None
    combos = itertools.product(range(k + 1), repeat=n)
    total = 0
    while True:
        block = np.array(list(itertools.islice(combos, chunk)), dtype=np.int64).reshape(-1, n)
        if not len(block):
            break
        total += len(block)
        rep = inst.take(np.zeros(len(block), dtype=np.int64))
        value, share = expert_value(rep, block, prompt)
        i = int(np.argmin(value))
        if value[i] < best_value:
            best_value, best = float(value[i]), (block[i].copy(), share[i].copy())
    assert best is not None  # all-local is always feasible (LamboScenario validates it)
    return ExpertSolution(best[0], best[1], best_value, total)


def de_expert(inst: Instances, prompt: str, maxiter: int = 100, popsize: int = 15, seed: int = 0,
              polish: bool = False) -> ExpertSolution:
    """Differential evolution (scipy) over the assignment of one instance.

    Each UE's gene is continuous in [0, K+1) and floored to its option; an assignment is
    scored with its optimal shares, an infeasible one by the all-local value plus a
    penalty growing with its overload, so DE is pulled towards feasibility. The all-local
    assignment (always feasible) is in the initial population, so the result is never
    worse than Local. Budget: ``popsize * N`` members for ``maxiter`` generations.
    """
    from scipy.optimize import differential_evolution

    objective_of(prompt)
    inst = _one(inst)
    n, k = inst.num_ues, inst.num_servers
    a0, _ = local_decision(inst)
    base, _ = expert_value(inst, a0, prompt)
    base = float(base[0])
    count = [0]

    def score(x: np.ndarray) -> np.ndarray:  # x (N, S) with vectorized=True
        pop = np.clip(np.floor(x.T), 0, k).astype(np.int64)
        count[0] += len(pop)
        rep = inst.take(np.zeros(len(pop), dtype=np.int64))
        value, _ = expert_value(rep, pop, prompt)
        bad = ~np.isfinite(value)
        if bad.any():
            m = rep.min_share
            srv = np.clip(pop - 1, 0, k - 1)
            need = np.where(pop > 0, np.take_along_axis(m, srv[..., None], -1)[..., 0], 0.0)
            need = np.where(np.isfinite(need), need, 10.0)
            load = np.zeros((len(pop), k))
            rows = np.broadcast_to(np.arange(len(pop))[:, None], pop.shape)
            on = pop > 0
            np.add.at(load, (rows[on], srv[on]), need[on])
            over = np.maximum(load - 1.0, 0.0).sum(axis=1)
            value = np.where(bad, base * (1.0 + over) + 1e-3, value)
        return value

    rng = np.random.default_rng(seed)
    size = max(5, popsize * n)
    init = rng.uniform(0, k + 1, size=(size, n))
    init[0] = 0.5  # all local
    res = differential_evolution(score, bounds=[(0.0, k + 1 - 1e-9)] * n, maxiter=maxiter, init=init, seed=seed,
                                 vectorized=True, updating="deferred", polish=polish, tol=0.0)
    assign = np.clip(np.floor(res.x), 0, k).astype(np.int64)[None, :]
    value, share = expert_value(inst, assign, prompt)
    return ExpertSolution(assign[0], share[0], float(value[0]), count[0])
