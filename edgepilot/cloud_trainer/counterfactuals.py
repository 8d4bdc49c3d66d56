"""System-model-scored variants of played actions, as more samples for the critic that
the DTAC transfer refits (ours, not in the paper; TransferConfig says which are on by
default). Rewards are per round (gamma = 0), so a variant of a round's joint action,
scored by the system model on the same round, is a valid sample of (18)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from edgepilot.cloud_trainer.common import config_objective
from edgepilot.cloud_trainer.play import decision_from_actions
from edgepilot.edge_agent.actions import MIN_RATIO
from edgepilot.edge_agent.system_model import (
    LOCAL,
    RoundTasks,
    evaluate_round,
    vector_reward,
)


def swap_to_argmax(p: torch.Tensor, pick: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Where ``pick`` (...,) is set, swap the entry at ``choice`` (...,) with the largest
    entry of ``p`` (..., K), so that the argmax is ``choice`` and the vector keeps its
    values (only their order changes). Elsewhere ``p`` is returned unchanged."""
    top = p.argmax(-1, keepdim=True)
    c = choice[..., None]
    v_top, v_c = p.gather(-1, top), p.gather(-1, c)
    out = p.scatter(-1, c, v_top).scatter(-1, top, torch.where(top == c, v_top, v_c))
    return torch.where(pick[..., None], out, p)


def score_on_rounds(params, tasks, env: torch.Tensor, actions) -> torch.Tensor:
    """Vector reward (M, N, 2) of the joint ``actions`` (M rows) played in the rounds
    ``env`` (M,) of ``tasks``, by the system model."""
    rt = RoundTasks(**{f.name: np.asarray(getattr(tasks, f.name))[env.numpy()] for f in dataclasses.fields(RoundTasks)})
    reward = vector_reward(params, evaluate_round(params, rt, decision_from_actions(*actions)))
    return torch.as_tensor(reward, dtype=torch.float32)


def redraw_ratios(where: torch.Tensor, ratios: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``ratios`` (a or b) with the entries of ``where`` replaced by draws uniform on
    [MIN_RATIO, 1]: the local counterfactuals' redraw of b."""
    return torch.where(where, MIN_RATIO + (1 - MIN_RATIO) * torch.rand(ratios.shape, generator=generator), ratios)


def local_switch_mask(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random subset of each row's real UEs (B, N): per row a fraction u ~ U(0, 1), then
    each real UE independently with probability u, so the rows range from none or one
    UE to every UE (the all-local round) of the played joint action."""
    u = torch.rand(mask.shape[0], 1, generator=generator)
    return mask & (torch.rand(mask.shape, generator=generator) < u)


def switch_to_local(p_x: torch.Tensor, switch: torch.Tensor) -> torch.Tensor:
    """p_x with the rows of ``switch`` (B, N) replaced by one-hot(LOCAL)."""
    local = torch.zeros_like(p_x)
    local[..., LOCAL] = 1.0
    return torch.where(switch[..., None], local, p_x)


def local_deviations(params, tasks, actions, copies: int, generator: torch.Generator):
    """``copies`` versions of each env's played joint ``actions`` (ours, for the DTAC
    transfer's critic data) with a random subset of real UEs (:func:`local_switch_mask`)
    computing locally at a b drawn uniformly from [MIN_RATIO, 1], everything else as
    played, scored by the system model on the same round. A policy that offloads most
    tasks leaves the critic, and so the b it teaches, with few local rounds to learn
    from; these cover rounds from one more local UE to all. Returns (env index (M,), actions,
    vector reward (M, N, 2)), M = ``copies`` x envs."""
    p_x, p_l, a, b = actions
    mask = torch.as_tensor(tasks.ue_mask)
    env = torch.arange(p_x.shape[0]).repeat(copies)
    switch = local_switch_mask(mask[env], generator)
    dev = (switch_to_local(p_x[env], switch), p_l[env], a[env], redraw_ratios(switch, b[env], generator))
    return env, dev, score_on_rounds(params, tasks, env, dev)


def offload_deviations(params, tasks, actions, copies: int, generator: torch.Generator):
    """``copies`` versions of each env's played joint ``actions`` (the retried DTAC
    transfer's critic data, TransferConfig.retry_offload_counterfactuals) with a random subset of real UEs
    (:func:`local_switch_mask`) each playing a uniformly drawn other offload decision,
    channel, a and b as played, scored by the system model on the same round. The critic
    then sees what offloading (or not) costs the UEs the student decides otherwise for.
    Returns (env index (M,), actions, vector reward (M, N, 2)), M = ``copies`` x envs."""
    p_x, p_l, a, b = actions
    mask = torch.as_tensor(tasks.ue_mask)
    env = torch.arange(p_x.shape[0]).repeat(copies)
    switch = local_switch_mask(mask[env], generator)
    px = p_x[env]
    other = (px.argmax(-1) + torch.randint(1, px.shape[-1], switch.shape, generator=generator)) % px.shape[-1]
    dev = (swap_to_argmax(px, switch, other), p_l[env], a[env], b[env])
    return env, dev, score_on_rounds(params, tasks, env, dev)


def local_ratio_loss(critic, state, edge_id, mask, actions, cfg, generator: torch.Generator) -> torch.Tensor:
    """Minus the critic objective (19) of the actor's joint action with a random subset of
    real UEs switched to local (:func:`local_switch_mask`), differentiated in b only (ours,
    the DTAC transfer's ``local_ratio_coef``). b matters only to a UE that computes
    locally, so where the policy offloads nearly everything (22) leaves b untrained, and
    a UE that turns local in another scenario runs at whatever b the copy drifted to.
    This trains b as if the UE computed locally, in rounds from one local UE to all."""
    p_x, p_l, a, b = actions
    switch = local_switch_mask(mask, generator)
    q = critic(state, edge_id, switch_to_local(p_x.detach(), switch), p_l.detach(), a.detach(), b, mask)
    return -config_objective(q, mask, cfg).mean()
