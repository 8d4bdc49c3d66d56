"""Centralized TAC training (DTAC paper, Algorithm 1 lines 1-12, eq. 17-19).

One training iteration:

1. *collect*: the actor sees the joint state of ``envs`` parallel episodes of the
   batched simulator; Gaussian noise N(0, v) is added to p_x and p_l (and to a, b),
   the decision is the argmax of the noisy probabilities (deterministic selection
   with Gaussian exploration, Algorithm 1 line 4); the experience
   (s, edge id, mask, noisy A, vector reward r (17)) goes into the replay memory;
2. *update* ``updates_per_round`` times: the critic regresses the vector reward with
   MSE (18) over the real (unpadded) UEs; the actor minimises (19):
   ``actor_w_time * max_n Q_time + actor_w_energy * sum_n Q_energy - w_s * S[pi]``
   (rewards are negative, so the actor *maximises* that sum of Q; see ``actor_loss``).

The noise variance decays by ``noise_decay`` once per episode (``rounds_per_episode``
collection rounds, Table II: 600).

Reward conditioning (documented choice): times range from ~0.1 s to 10^6 s when an
offloaded UE sits in a deep fade or under near-far interference, and its transmit
energy blows up with it. The critic regresses ``max(r, -reward_clip) / reward_scale``:
one common linear scale for both components (so the time / energy trade-off of (19)
is exactly the paper's), and a floor that only touches catastrophic rounds (default
100, i.e. 100 s of weighted time or 100 weighted J for one UE; a good round costs
~13 s). ``reward_transform="symlog"`` (per-component scale, then symlog) is kept for
experiments: it compresses the worst-UE time far more than the summed energy and so
changes the trade-off - with it the actor learned to offload everything.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgepilot.cloud_trainer.checkpoint import load_checkpoint, save_checkpoint
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, Observation, sample_local_states
from edgepilot.cloud_trainer.models import ModelConfig, TACActor, TACCritic
from edgepilot.cloud_trainer.scenario import Scenario
from edgepilot.edge_agent.actions import MIN_RATIO
from edgepilot.edge_agent.system_model import LOCAL, Decision, RoundTasks, evaluate_round, vector_reward


# ---------------------------------------------------------------------------
# configuration
@dataclass
class TACConfig:
    """Hyper-parameters of centralized training. Defaults: Table II where the paper
    gives a value (AdamW, entropy 0.01, 600 rounds per episode); the rest are ours."""

    seed: int = 0
    episodes: int = 7  # noise-decay periods ("episodes") of collection
    rounds_per_episode: int | None = None  # None: scenario.episode.rounds (Table II: 600)
    envs: int = 16  # parallel simulator episodes per collection round
    batch_size: int = 48  # joint states per gradient step
    updates_per_round: int = 1  # U (Algorithm 1 line 8), per collection round
    # the actor takes a step of (19) after every this-many critic steps of (18) (ours;
    # TD3's delayed policy update: the actor follows a critic that has caught up with
    # its last move). 1 is Algorithm 1: one actor step per critic step
    actor_update_every: int = 1
    # > 0 (ours): adds this weight times a cross-entropy that pulls each UE's p_x (p_l)
    # toward the offload choice (channel) the critic scores best with the other UEs'
    # actions fixed (discrete_search_loss); 0 is Algorithm 1's actor loss (19) alone
    offload_search_coef: float = 0.0
    channel_search_coef: float = 0.0
    # > 0 (ours): adds this weight times conditional_ratio_loss: a and b are also trained
    # under every UE's other offload choices, not only at the one the actor plays
    ratio_search_coef: float = 0.0
    # True (ours): every collection round also stores each single-UE deviation of the
    # played action (each other offload choice, a random other channel) scored by the
    # system model on the same round, as critic samples (valid for (18): gamma = 0);
    # see counterfactual_deviations. The replay then holds 1 + 3 N samples per env-round
    counterfactuals: bool = False
    # > 0 (ours): every collection round also stores this many copies of each env's played
    # action with every real UE's a and b drawn uniformly from [MIN_RATIO, 1] (offload and
    # channel as played), scored by the system model on the same round; see
    # ratio_deviations. Without them the critic only sees a and b near what the actor plays
    # and can rank the ratios it never sees arbitrarily (docs/results-n4.md)
    ratio_counterfactuals: int = 0
    warmup_rounds: int = 20  # collection rounds before the first update
    replay_capacity: int = 50_000  # joint states kept in the memory
    actor_lr: float = 3e-4  # Table II: 2e-5 (with far more episodes; ours is sized for a 2-core CPU)
    critic_lr: float = 1e-3
    weight_decay: float = 1e-4  # AdamW (Table II optimizer)
    entropy_coef: float = 0.01  # omega_s (Table II)
    actor_w_time: float = 1.0  # w1 of (19); the reward (17) already carries omega_1
    actor_w_energy: float = 1.0  # w2 of (19); the reward (17) already carries omega_2
    actor_time_temperature: float = 0.0  # ours: > 0 takes a soft max over the UEs' time Q in (19) (actor_objective)
    noise_std: float = 0.3  # sqrt of the initial noise variance v
    noise_decay: float = 0.6  # epsilon: v <- v * epsilon every episode
    noise_min_std: float = 0.02
    ratio_noise_scale: float = 0.5  # noise on a, b relative to the probability noise
    # epsilon over the discrete choices (ours, off by default): each UE's played offload
    # decision / channel is replaced by a uniform one with this probability, decaying
    # with the noise std (eps * std / noise_std); see add_discrete_exploration
    offload_epsilon: float = 0.0
    channel_epsilon: float = 0.0
    reward_transform: str = "clip"  # "clip" | "softclip" | "symlog"
    reward_clip: float = 100.0  # floor of the per-UE reward, in reward units (w1 s / w2 J)
    # "softclip" only: beyond the floor c the cost is c * (1 + ln(cost / c)), capped at this times c
    reward_soft_cap: float = 3.0
    reward_scale: float = 10.0  # common divisor of both reward components
    grad_clip: float = 1.0
    normalizer_samples: int = 20_000
    checkpoint_every: int = 500  # collection rounds
    # > 0 (ours; 0 is Algorithm 1: tac.pt holds the last actor): at every logged point the
    # deterministic actor plays this many rounds x validation_envs episodes of the training
    # scenario on one fixed seed (its own, not an evaluation's), the way `edgepilot
    # evaluate` plays it, and tac.pt holds the actor / critic pair that scored best
    validation_rounds: int = 0
    validation_envs: int = 32
    validation_seed: int | None = None  # None: seed + VALIDATION_SEED_OFFSET
    # > 1 (ours; needs validation_rounds > 0): this many independent runs, restart k trained
    # with seed + k * RESTART_SEED_STRIDE (k = 0 is the plain run), all scored on this
    # config's validation seed; tac.pt is the copy of the best one's. Restart k's files are
    # in <out>/restart-k; restart_jobs of them train at once, each in its own process
    restarts: int = 1
    restart_jobs: int = 1
    threads: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.actor_update_every < 1:
            raise ValueError(f"actor_update_every must be >= 1, got {self.actor_update_every}")
        if self.restarts < 1 or self.restart_jobs < 1:
            raise ValueError(f"restarts and restart_jobs must be >= 1, got {self.restarts} and {self.restart_jobs}")
        if self.restarts > 1 and self.validation_rounds <= 0:
            raise ValueError("restarts > 1 keeps the run that scores best on the validation rounds: set validation_rounds > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TACConfig":
        data = dict(data)
        model = ModelConfig(**data.pop("model", {}))
        return cls(model=model, **data)


QUICK_OVERRIDES = dict(episodes=2, rounds_per_episode=30, envs=8, batch_size=16, warmup_rounds=4, normalizer_samples=2000, checkpoint_every=20)


# ---------------------------------------------------------------------------
# helpers shared by DTAC and the baselines
VALIDATION_SEED_OFFSET = 500_009  # validation rounds (TAC and DTAC): cfg.seed + this
RESTART_SEED_STRIDE = 100_003  # restart k of a TAC run trains with seed + k * this


def validation_seed(cfg) -> int:
    """The simulator seed of ``cfg``'s validation rounds."""
    fixed = getattr(cfg, "validation_seed", None)
    return int(fixed) if fixed is not None else cfg.seed + VALIDATION_SEED_OFFSET


def validation_result(name: str, actor: torch.nn.Module, kind: str, scenario: Scenario, cfg) -> dict:
    """``evaluate_policy``'s result for ``actor`` played the way `edgepilot evaluate` plays
    it, on ``cfg.validation_rounds`` x ``cfg.validation_envs`` rounds of the validation seed.
    The actor goes back to the train / eval mode it was in (playing puts it in eval mode)."""
    from edgepilot.cloud_trainer.evaluate import ActorPolicy, evaluate_policy  # evaluate imports this module

    training = actor.training
    result = evaluate_policy(ActorPolicy(name, actor, kind), scenario, cfg.validation_rounds, cfg.validation_envs, validation_seed(cfg))
    actor.train(training)
    return result


def validation_reward(name: str, actor: torch.nn.Module, kind: str, scenario: Scenario, cfg) -> float:
    """Weighted reward (27) of :func:`validation_result`."""
    return validation_result(name, actor, kind, scenario, cfg)["weighted_reward"]


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


class RewardTransform:
    """Maps the vector reward (17) to the critic's regression target."""

    KINDS = ("clip", "softclip", "symlog")

    def __init__(self, scale, kind: str = "clip", clip: float = 100.0, soft_cap: float = 3.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"reward_transform must be one of {', '.join(self.KINDS)}, got {kind!r}")
        if soft_cap <= 1:
            raise ValueError(f"reward_soft_cap must be > 1, got {soft_cap}")
        self.scale = torch.as_tensor(np.asarray(scale, dtype=np.float32))
        self.kind, self.clip, self.soft_cap = kind, float(clip), float(soft_cap)

    @classmethod
    def fit(cls, reward: np.ndarray, mask: np.ndarray, cfg) -> "RewardTransform":
        if cfg.reward_transform in ("clip", "softclip"):
            return cls([cfg.reward_scale, cfg.reward_scale], cfg.reward_transform, cfg.reward_clip, cfg.reward_soft_cap)
        real = np.abs(reward[mask])  # (M, 2)
        return cls(np.maximum(np.median(real, axis=0), 1e-6), "symlog", cfg.reward_clip)

    def __call__(self, reward: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":
            return reward.clamp_min(-self.clip) / self.scale
        if self.kind == "softclip":
            # costs up to the floor unchanged; beyond it c * (1 + ln(cost / c)), which keeps
            # a worse outcome worse (a hard floor scores a 9 s and a 42 s round alike), up
            # to soft_cap * c, reached at cost c * e^(soft_cap - 1)
            cost = -reward
            c = self.clip
            soft = c * (1 + torch.log(cost.clamp_min(c) / c))
            return -torch.where(cost <= c, cost, soft.clamp_max(self.soft_cap * c)) / self.scale
        return symlog(reward / self.scale)

    def state(self) -> dict:
        return {"scale": self.scale.tolist(), "kind": self.kind, "clip": self.clip, "soft_cap": self.soft_cap}


def set_threads(n: int) -> None:
    torch.set_num_threads(max(1, int(n)))


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


def add_exploration_noise(actions, std: float, ratio_scale: float, generator: torch.Generator):
    """Algorithm 1 line 4: Gaussian noise on the probabilities (argmax is taken after),
    smaller noise on a and b, which are then clipped into (0, 1]."""
    p_x, p_l, a, b = actions
    n = lambda t, s: t + s * torch.randn(t.shape, generator=generator)  # noqa: E731
    return (
        n(p_x, std),
        n(p_l, std),
        n(a, std * ratio_scale).clamp(MIN_RATIO, 1.0),
        n(b, std * ratio_scale).clamp(MIN_RATIO, 1.0),
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


def add_discrete_exploration(actions, offload_eps: float, channel_eps: float, generator: torch.Generator):
    """Epsilon over the discrete choices (our addition to Algorithm 1 line 4, off by
    default): with probability ``offload_eps`` (``channel_eps``) a UE plays a uniformly
    drawn offload decision (channel) instead of the argmax of its noisy p_x (p_l). The
    stored action stays a consistent critic input: the drawn entry is swapped with the
    vector's largest one, so its argmax is what was played.

    Why: with a peaked p_l the Gaussian noise on the probabilities no longer flips a
    channel, the critic stops seeing other channel patterns and cannot tell the actor
    that separating the UEs of a cell pays (5); see docs/results-dtac.md, N = 4."""
    def explore(p: torch.Tensor, eps: float) -> torch.Tensor:
        if eps <= 0:
            return p
        pick = torch.rand(p.shape[:-1], generator=generator) < eps
        return swap_to_argmax(p, pick, torch.randint(0, p.shape[-1], p.shape[:-1], generator=generator))

    p_x, p_l, a, b = actions
    return explore(p_x, offload_eps), explore(p_l, channel_eps), a, b


def counterfactual_deviations(params, tasks, actions, generator: torch.Generator):
    """Every single-UE deviation of the played joint ``actions`` (ours, for the critic's
    data): for each env and real UE, the joint action with that UE playing each other
    offload decision, and with it playing a random other channel, everything else as
    played; each scored by the system model on the same round (valid samples of (18):
    rewards are per round, gamma = 0). Returns (env index (M,), actions, vector reward
    (M, N, 2)) over the M = 3 x (real UEs) deviations."""
    p_x, p_l, a, b = actions
    mask = torch.as_tensor(tasks.ue_mask)
    env, ue = mask.nonzero(as_tuple=True)
    k = len(env)
    rows = torch.arange(3 * k)
    env3, ue3 = env.repeat(3), ue.repeat(3)
    dx, dl = p_x[env3].clone(), p_l[env3].clone()
    played_x, played_l = dx[rows, ue3].argmax(-1), dl[rows, ue3].argmax(-1)
    step = torch.arange(3).repeat_interleave(k)  # 0, 1: the two other offload choices; 2: a channel
    on_channel = step == 2
    other_x = (played_x + 1 + step.clamp_max(1)) % dx.shape[-1]
    other_l = (played_l + torch.randint(1, dl.shape[-1], (3 * k,), generator=generator)) % dl.shape[-1] if dl.shape[-1] > 1 else played_l
    dx[rows, ue3] = swap_to_argmax(dx[rows, ue3], ~on_channel, other_x)
    dl[rows, ue3] = swap_to_argmax(dl[rows, ue3], on_channel, other_l)
    dev = (dx, dl, a[env3], b[env3])
    return env3, dev, score_on_rounds(params, tasks, env3, dev)


def score_on_rounds(params, tasks, env: torch.Tensor, actions) -> torch.Tensor:
    """Vector reward (M, N, 2) of the joint ``actions`` (M rows) played in the rounds
    ``env`` (M,) of ``tasks``, by the system model."""
    rt = RoundTasks(**{f.name: np.asarray(getattr(tasks, f.name))[env.numpy()] for f in dataclasses.fields(RoundTasks)})
    reward = vector_reward(params, evaluate_round(params, rt, decision_from_actions(*actions)))
    return torch.as_tensor(reward, dtype=torch.float32)


def redraw_ratios(where: torch.Tensor, ratios: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``ratios`` (a or b) with the entries of ``where`` replaced by draws uniform on
    [MIN_RATIO, 1]: the ratio counterfactuals' and the local ones' redraw."""
    return torch.where(where, MIN_RATIO + (1 - MIN_RATIO) * torch.rand(ratios.shape, generator=generator), ratios)


def ratio_deviations(params, tasks, actions, copies: int, generator: torch.Generator):
    """``copies`` versions of each env's played joint ``actions`` (ours, for the critic's
    data) with every real UE's a and b drawn uniformly from [MIN_RATIO, 1], the offload
    and channel choices as played (padded UEs keep theirs), scored by the system model on
    the same round. Returns (env index (M,), actions, vector reward (M, N, 2)), M =
    ``copies`` x envs."""
    p_x, p_l, a, b = actions
    mask = torch.as_tensor(tasks.ue_mask)
    env = torch.arange(p_x.shape[0]).repeat(copies)
    m = mask[env]
    dev = (p_x[env], p_l[env], redraw_ratios(m, a[env], generator), redraw_ratios(m, b[env], generator))
    return env, dev, score_on_rounds(params, tasks, env, dev)


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
    """``copies`` versions of each env's played joint ``actions`` (ours, a trial option of
    the DTAC transfer's critic data) with a random subset of real UEs
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


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-8))).sum(-1)


def actor_objective(q: torch.Tensor, mask: torch.Tensor, w_time: float, w_energy: float, time_temperature: float = 0.0) -> torch.Tensor:
    """Per-sample value the actor maximises (19): w1 * (worst UE's time Q, i.e. the
    round time T_t, as rewards are negative the worst is the min) + w2 * sum_n Q_energy.
    The paper writes max_n over Q of the *cost*; with Q of the negative reward the
    worst UE is the minimum. ``time_temperature`` > 0 (ours) takes a soft minimum,
    -tau log sum_n exp(-Q_time / tau), instead: the hard minimum gives only the worst
    UE's time a gradient, so the others' a and b follow the energy term alone until
    they become the worst. Shape (B,)."""
    q_time = q[..., 0].masked_fill(~mask, float("inf"))
    if time_temperature > 0:
        q_time = -time_temperature * torch.logsumexp(-q_time / time_temperature, dim=-1)
    else:
        q_time = q_time.min(dim=-1).values
    q_energy = (q[..., 1] * mask).sum(-1)
    return w_time * q_time + w_energy * q_energy


def config_objective(q: torch.Tensor, mask: torch.Tensor, cfg) -> torch.Tensor:
    """:func:`actor_objective` with ``cfg``'s weights and time temperature (a TACConfig, or
    the DTAC transfer's TransferConfig, which has no temperature)."""
    return actor_objective(q, mask, cfg.actor_w_time, cfg.actor_w_energy, getattr(cfg, "actor_time_temperature", 0.0))


def critic_update(critic, optimizer, transform: RewardTransform, batch, grad_clip: float) -> torch.Tensor:
    """One step of (18): the critic's vector Q regresses the transformed vector reward of
    the stored (s, A) over the real UEs. ``batch`` is a :meth:`ReplayMemory.sample`."""
    s, e, m, acts, r = batch
    q = critic(s, e, *acts, m)
    closs = (((q - transform(r)) ** 2).sum(-1) * m).sum() / m.sum().clamp_min(1)
    optimizer.zero_grad()
    closs.backward()
    torch.nn.utils.clip_grad_norm_(critic.parameters(), grad_clip)
    optimizer.step()
    return closs


def actor_loss(critic, state, edge_id, mask, actions, cfg) -> torch.Tensor:
    """(19) / (22): minus the actor objective, minus the entropy bonus over the real UEs
    (plus ``offload_search_coef`` / ``channel_search_coef`` times
    :func:`discrete_search_loss` of p_x / p_l where set)."""
    p_x, p_l, a, b = actions
    q = critic(state, edge_id, p_x, p_l, a, b, mask)
    value = config_objective(q, mask, cfg)
    ent = ((entropy(p_x) + entropy(p_l)) * mask).sum(-1)
    loss = (-value - cfg.entropy_coef * ent).mean()
    # getattr: the DTAC transfer's (22) calls this with a TransferConfig, which has the offload search only
    for head, coef in enumerate((getattr(cfg, "offload_search_coef", 0.0), getattr(cfg, "channel_search_coef", 0.0))):
        if coef > 0:
            loss = loss + coef * discrete_search_loss(critic, state, edge_id, mask, actions, cfg, head)
    if getattr(cfg, "ratio_search_coef", 0.0) > 0:
        loss = loss + cfg.ratio_search_coef * conditional_ratio_loss(critic, state, edge_id, mask, actions, cfg)
    return loss


def one_hot_candidates(p: torch.Tensor) -> torch.Tensor:
    """(B, N, K) -> (B * N * K, N, K): for every UE n and option o of a discrete head
    (p_x or p_l), the joint vectors with UE n's row replaced by one-hot(o)."""
    bsz, n, k = p.shape
    cand = p[:, None, None].repeat(1, n, k, 1, 1)  # (B, n, o, N, K)
    ues = torch.arange(n)
    cand[:, ues, :, ues, :] = torch.eye(k)
    return cand.reshape(bsz * n * k, n, k)


def conditional_ratio_loss(critic, state, edge_id, mask, actions, cfg) -> torch.Tensor:
    """Minus the mean critic objective (19) over every single-UE offload candidate (UE n
    playing option o, the rest as the actor gives it), differentiated in a and b only
    (ours). a only matters when a UE offloads and b only when it computes locally, so
    at the actor's own action (19) gives no gradient to the b of an offloading UE: it
    drifts (toward the smallest b, whose local energy the critic scores lowest), and
    then keeping that UE local looks catastrophic - also where a deep fade makes local
    the best choice. This trains each ratio for the choices the actor does not play."""
    p_x, p_l, a, b = actions
    bsz, n, k = p_x.shape
    rep = lambda t: t.repeat_interleave(n * k, 0)  # noqa: E731
    m = rep(mask)
    q = critic(rep(state), rep(edge_id), one_hot_candidates(p_x.detach()), rep(p_l.detach()), rep(a), rep(b), m)
    value = config_objective(q, m, cfg)  # (B * n * k,)
    real = mask[:, :, None].expand(bsz, n, k).reshape(-1).float()  # candidates of padded UEs do not count
    return -(value * real).sum() / real.sum().clamp_min(1)


def discrete_search_targets(critic, state, edge_id, mask, actions, cfg, head: int = 0) -> torch.Tensor:
    """For every UE n and option o of a discrete head (``head`` 0: offload p_x, 1:
    channel p_l): the critic's objective (19) of the joint action with UE n's vector
    of that head replaced by one-hot(o) and everything else as the actor gives it;
    returns the best option per UE, (B, N) int64. One critic call over B * N * K
    joint actions."""
    acts = [t.detach() for t in actions]
    p = acts[head]
    bsz, n, k = p.shape
    with torch.no_grad():
        rep = lambda t: t.repeat_interleave(n * k, 0)  # noqa: E731
        acts = [rep(t) for t in acts]
        acts[head] = one_hot_candidates(p)
        q = critic(rep(state), rep(edge_id), *acts, rep(mask))
        value = actor_objective(q, rep(mask), cfg.actor_w_time, cfg.actor_w_energy)  # ranking discrete options: the hard max
    return value.reshape(bsz, n, k).argmax(-1)


def discrete_search_loss(critic, state, edge_id, mask, actions, cfg, head: int = 0) -> torch.Tensor:
    """Cross-entropy of each real UE's p_x (``head`` 0) or p_l (1) toward
    :func:`discrete_search_targets` (ours, not in the paper): the deterministic policy
    gradient of (19) moves a probability vector only along the critic's local slope at
    the played vertex; this compares the discrete alternatives the critic can score."""
    target = discrete_search_targets(critic, state, edge_id, mask, actions, cfg, head)
    logp = torch.log(actions[head].clamp_min(1e-8)).gather(-1, target[..., None]).squeeze(-1)
    return -(logp * mask).sum() / mask.sum().clamp_min(1)


def refine_with_critic(critic, state, edge_id, mask, actions, cfg, sweeps: int = 2, group: int = 1):
    """Critic-guided local search over the discrete choices at decision time (ours, not in
    the paper; TAC only, it needs the centralized critic and the joint state). Starting
    from the actor's argmax offload and channel choices (a and b as the actor gives them),
    each sweep visits every ``group`` of UEs (1: one UE at a time, 2: every pair) and
    sets their (offload, channel) choices to the combination the critic scores best under
    the actor objective (19), the rest held; the current choice is among the candidates,
    so the critic's objective never falls. The deterministic policy gradient only follows
    the critic's slope at the vertex the actor plays; this compares the vertices.
    ``sweeps`` x C(N, group) critic calls of B x (3 L)^group joint actions. Groups that
    contain a padded UE are skipped. Returns one-hot (p_x, p_l) and the actor's (a, b)."""
    p_x, p_l, a, b = actions
    bsz, n, nx = p_x.shape
    nl = p_l.shape[-1]
    x = torch.nn.functional.one_hot(p_x.argmax(-1), nx).to(p_x.dtype)
    l = torch.nn.functional.one_hot(p_l.argmax(-1), nl).to(p_l.dtype)
    single = torch.cartesian_prod(torch.arange(nx), torch.arange(nl))  # (3 L, 2): (offload, channel)
    g = min(group, n)
    combos = torch.cartesian_prod(*[torch.arange(len(single))] * g).reshape(-1, g)  # (K, g)
    k = len(combos)
    rep = lambda t: t.repeat_interleave(k, 0)  # noqa: E731
    rows = torch.arange(bsz)
    with torch.no_grad():
        for _ in range(sweeps):
            for ues in itertools.combinations(range(n), g):
                cx, cl = x[:, None].repeat(1, k, 1, 1), l[:, None].repeat(1, k, 1, 1)
                for j, ue in enumerate(ues):
                    choice = single[combos[:, j]]
                    cx[:, :, ue] = torch.nn.functional.one_hot(choice[:, 0], nx).to(x.dtype)
                    cl[:, :, ue] = torch.nn.functional.one_hot(choice[:, 1], nl).to(l.dtype)
                q = critic(rep(state), rep(edge_id), cx.reshape(bsz * k, n, nx), cl.reshape(bsz * k, n, nl), rep(a), rep(b), rep(mask))
                best = actor_objective(q, rep(mask), cfg.actor_w_time, cfg.actor_w_energy).reshape(bsz, k).argmax(-1)
                ok = mask[:, list(ues)].all(-1)[:, None, None]
                x, l = torch.where(ok, cx[rows, best], x), torch.where(ok, cl[rows, best], l)
    return x, l, a, b


class ReplayMemory:
    """Ring buffer of (s, edge id, mask, A, r) joint experiences (Algorithm 1 line 5)."""

    def __init__(self, capacity: int, n: int, num_channels: int) -> None:
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.state = torch.zeros(capacity, n, 6)
        self.edge_id = torch.zeros(capacity, n, dtype=torch.int64)
        self.mask = torch.zeros(capacity, n, dtype=torch.bool)
        self.p_x = torch.zeros(capacity, n, 3)
        self.p_l = torch.zeros(capacity, n, num_channels)
        self.a = torch.zeros(capacity, n)
        self.b = torch.zeros(capacity, n)
        self.reward = torch.zeros(capacity, n, 2)

    def add(self, state, edge_id, mask, actions, reward) -> None:
        k = state.shape[0]
        idx = (self.pos + torch.arange(k)) % self.capacity
        self.state[idx], self.edge_id[idx], self.mask[idx] = state, edge_id, mask
        self.p_x[idx], self.p_l[idx], self.a[idx], self.b[idx] = actions
        self.reward[idx] = reward
        self.pos = int((self.pos + k) % self.capacity)
        self.size = min(self.capacity, self.size + k)

    def sample(self, k: int, generator: torch.Generator):
        idx = torch.randint(0, self.size, (k,), generator=generator)
        return (
            self.state[idx], self.edge_id[idx], self.mask[idx],
            (self.p_x[idx], self.p_l[idx], self.a[idx], self.b[idx]),
            self.reward[idx],
        )

    def states(self, limit: int | None = None):
        n = self.size if limit is None else min(self.size, limit)
        return self.state[:n], self.edge_id[:n], self.mask[:n]


# ---------------------------------------------------------------------------
# training
ProgressFn = Callable[[dict], None]


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict]
    wall_s: float
    metrics: dict


def tensorboard_dir(out_dir: Path, method: str) -> Path:
    """Where CurveWriter puts a method's TensorBoard events (``--logdir`` is its parent)."""
    return Path(out_dir) / "tensorboard" / method


class CurveWriter:
    """Training curve to CSV (one row per logged point) and, where the ``tensorboard``
    package is installed (the ``trainer`` extra has it), the same scalars as TensorBoard
    events in ``<dir>/tensorboard/<method>/`` (``tensorboard --logdir <dir>/tensorboard``),
    each at its row's ``round`` (TAC / HAPPO: collection rounds; transfer: gradient steps)."""

    FIELDS = ["method", "episode", "round", "rounds_total", "wall_s", "weighted_reward", "round_time_s", "energy_j", "critic_loss", "actor_loss", "noise_std", "validation_reward"]
    SCALARS = ("weighted_reward", "validation_reward", "round_time_s", "energy_j", "critic_loss", "actor_loss", "noise_std")

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (append and path.exists())
        self.fh = open(path, "w" if fresh else "a", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=self.FIELDS, extrasaction="ignore")
        if fresh:
            self.writer.writeheader()
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch without the tensorboard package: the CSV is the curve
            return
        self.tb = SummaryWriter(log_dir=str(tensorboard_dir(path.parent, path.stem.removeprefix("curve_"))))

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.fh.flush()
        if self.tb is not None:
            for key in self.SCALARS:
                value = row.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"{row['method']}/{key}", value, int(row["round"]))
            self.tb.flush()

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def _rounds_per_episode(cfg, scenario: Scenario) -> int:
    return int(cfg.rounds_per_episode or scenario.episode.rounds)


def train_tac(
    scenario: Scenario,
    cfg: TACConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Algorithm 1, lines 1-12. Writes ``tac.pt`` (final), ``tac_last.pt`` (periodic,
    for ``--resume``) and ``curve_tac.csv`` in ``out_dir``; with ``cfg.restarts`` > 1, see
    train_tac_restarts."""
    if cfg.restarts > 1:
        return train_tac_restarts(scenario, cfg, out_dir, resume, progress)
    set_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, final_path = out_dir / "tac_last.pt", out_dir / "tac.pt"
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mcfg = cfg.model
    if mcfg.num_channels != scenario.radio.num_channels:
        mcfg = ModelConfig(**{**mcfg.to_dict(), "num_channels": scenario.radio.num_channels})
        cfg.model = mcfg
    if scenario.topology.num_edge_servers > mcfg.max_edges:
        raise ValueError(f"scenario has {scenario.topology.num_edge_servers} edge servers > model.max_edges={mcfg.max_edges}")
    actor, critic = TACActor(mcfg), TACCritic(mcfg)
    opt_actor = torch.optim.AdamW(actor.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay)
    opt_critic = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=cfg.weight_decay)
    sim = BatchSimulator(scenario, batch_size=cfg.envs, seed=cfg.seed)
    memory = ReplayMemory(cfg.replay_capacity, scenario.max_ues, mcfg.num_channels)
    rpe = _rounds_per_episode(cfg, scenario)
    total_rounds = cfg.episodes * rpe
    start_round, noise_std, transform, wall_before = 0, cfg.noise_std, None, 0.0
    history: list[dict] = []
    best = {"reward": -float("inf"), "round": None, "actor": None, "critic": None}

    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        if ckpt["scenario_hash"] != scenario.scenario_hash():
            raise ValueError(f"{last_path} was trained on another scenario (hash {ckpt['scenario_hash'][:12]})")
        actor.load_state_dict(ckpt["actor"])
        critic.load_state_dict(ckpt["critic"])
        opt_actor.load_state_dict(ckpt["optimizers"]["actor"])
        opt_critic.load_state_dict(ckpt["optimizers"]["critic"])
        prog = ckpt["progress"]
        start_round, noise_std, wall_before = prog["round"], prog["noise_std"], prog.get("wall_s", 0.0)
        transform = RewardTransform(**prog["reward_transform"])
        history = list(prog.get("history", []))
        if ckpt.get("best_actor") is not None:
            best.update(**prog["best"], actor=ckpt["best_actor"], critic=ckpt["best_critic"])
        gen.manual_seed(cfg.seed + start_round)
        sim = BatchSimulator(scenario, batch_size=cfg.envs, seed=cfg.seed + 1 + start_round)
    else:
        states = torch.as_tensor(sample_local_states(scenario, cfg.normalizer_samples, seed=cfg.seed), dtype=torch.float32)
        actor.normalizer.fit(states)
        critic.normalizer.fit(states)

    curve = CurveWriter(out_dir / "curve_tac.csv", append=resume and start_round > 0)
    obs = sim.reset()
    t0 = time.perf_counter()
    window: list[tuple[float, float, float]] = []
    closs_acc, aloss_acc, nupd, nact, critic_steps = 0.0, 0.0, 0, 0, 0

    def checkpoint(path: Path, rnd: int, metrics: dict | None = None) -> None:
        save_checkpoint(
            path, kind="tac", model_config=mcfg.to_dict(), actor=actor.state_dict(), critic=critic.state_dict(),
            optimizers={"actor": opt_actor.state_dict(), "critic": opt_critic.state_dict()},
            scenario=scenario.model_dump(mode="json"), scenario_hash=scenario.scenario_hash(),
            train_config=cfg.to_dict(),
            progress={"round": rnd, "episode": rnd // rpe, "noise_std": noise_std, "wall_s": wall_before + time.perf_counter() - t0,
                      "reward_transform": transform.state() if transform else None, "history": history,
                      "best": {"reward": best["reward"], "round": best["round"]}},
            best_actor=best["actor"] if path == last_path else None,
            best_critic=best["critic"] if path == last_path else None,
            metrics=metrics or {},
        )

    for rnd in range(start_round, total_rounds):
        state, edge_id, mask = observation_tensors(obs)
        with torch.no_grad():
            actions = actor(state, edge_id, mask)
            noisy = add_exploration_noise(actions, noise_std, cfg.ratio_noise_scale, gen)
            if cfg.offload_epsilon > 0 or cfg.channel_epsilon > 0:
                decay = noise_std / cfg.noise_std  # the epsilons follow the noise schedule
                noisy = add_discrete_exploration(noisy, cfg.offload_epsilon * decay, cfg.channel_epsilon * decay, gen)
        step = sim.step(decision_from_actions(*noisy))
        reward = torch.as_tensor(step.reward, dtype=torch.float32)
        if transform is None:
            transform = RewardTransform.fit(step.reward, obs.ue_mask, cfg)
        memory.add(state, edge_id, mask, noisy, reward)
        extra = []  # system-model-scored variants of the played action, as more critic samples
        if cfg.counterfactuals:
            extra.append(counterfactual_deviations(scenario.network_params, obs.tasks, noisy, gen))
        if cfg.ratio_counterfactuals > 0:
            extra.append(ratio_deviations(scenario.network_params, obs.tasks, noisy, cfg.ratio_counterfactuals, gen))
        for env, dev, dev_reward in extra:
            memory.add(state[env], edge_id[env], mask[env], dev, dev_reward)
        window.append((float(step.result.objective.mean()), float(step.result.round_time_s.mean()), float(step.result.total_energy_j.mean())))
        obs = step.observation
        if step.episode_done:
            obs = sim.reset()

        # the replay memory is not checkpointed: after a resume it refills for
        # warmup_rounds like a fresh start (updating on one round's 16 states overfits)
        if rnd - start_round >= cfg.warmup_rounds:
            for _ in range(cfg.updates_per_round):
                s, e, m, acts, r = memory.sample(cfg.batch_size, gen)
                closs = critic_update(critic, opt_critic, transform, (s, e, m, acts, r), cfg.grad_clip)
                closs_acc += float(closs.detach())
                nupd += 1
                critic_steps += 1
                if critic_steps % cfg.actor_update_every:
                    continue
                critic.requires_grad_(False)  # (19) moves the actor only
                aloss = actor_loss(critic, s, e, m, actor(s, e, m), cfg)  # (19)
                opt_actor.zero_grad()
                aloss.backward()
                torch.nn.utils.clip_grad_norm_(actor.parameters(), cfg.grad_clip)
                opt_actor.step()
                critic.requires_grad_(True)
                aloss_acc += float(aloss.detach())
                nact += 1

        done_rounds = rnd + 1
        if done_rounds % rpe == 0:
            noise_std = max(cfg.noise_min_std, noise_std * math.sqrt(cfg.noise_decay))  # v <- v * eps
        log_every = max(1, rpe // 4)
        if done_rounds % log_every == 0 or done_rounds == total_rounds:
            obj, rt, en = (float(np.mean(v)) for v in zip(*window))
            row = {
                "method": "tac", "episode": done_rounds / rpe, "round": done_rounds, "rounds_total": total_rounds,
                "wall_s": round(wall_before + time.perf_counter() - t0, 3), "weighted_reward": -obj, "round_time_s": rt, "energy_j": en,
                "critic_loss": closs_acc / max(nupd, 1), "actor_loss": aloss_acc / max(nact, 1), "noise_std": noise_std,
            }
            if cfg.validation_rounds > 0:
                row["validation_reward"] = score = validation_reward("tac", actor, "joint", scenario, cfg)
                if score > best["reward"]:
                    best.update(reward=score, round=done_rounds, actor=copy.deepcopy(actor.state_dict()),
                                critic=copy.deepcopy(critic.state_dict()))
            history.append(row)
            curve.write(row)
            window, closs_acc, aloss_acc, nupd, nact = [], 0.0, 0.0, 0, 0
        if progress:
            progress({"round": done_rounds, "total": total_rounds, "weighted_reward": history[-1]["weighted_reward"] if history else float("nan")})
        if done_rounds % cfg.checkpoint_every == 0:
            checkpoint(last_path, done_rounds)

    wall = wall_before + time.perf_counter() - t0
    metrics = {"wall_s": wall, "rounds": total_rounds, "final_weighted_reward_noisy": history[-1]["weighted_reward"] if history else None}
    checkpoint(last_path, total_rounds, metrics)  # the last round, for --resume
    if best["actor"] is not None:
        actor.load_state_dict(best["actor"])
        critic.load_state_dict(best["critic"])
        metrics.update(selected_round=best["round"], selected_weighted_reward=best["reward"])
    checkpoint(final_path, total_rounds, metrics)
    curve.close()
    return TrainResult(final_path, history, wall, metrics)


def _restart_configs(cfg: TACConfig) -> list[TACConfig]:
    fixed = validation_seed(cfg)
    return [TACConfig.from_dict({**cfg.to_dict(), "seed": cfg.seed + k * RESTART_SEED_STRIDE, "validation_seed": fixed,
                                 "restarts": 1, "restart_jobs": 1}) for k in range(cfg.restarts)]


def train_tac_restarts(scenario: Scenario, cfg: TACConfig, out_dir: str | Path, resume: bool = False,
                       progress: ProgressFn | None = None) -> TrainResult:
    """``cfg.restarts`` independent TAC runs (restart k: seed + k * RESTART_SEED_STRIDE, in
    ``out_dir/restart-k``; k = 0 is the run without restarts), every one scored on the same
    validation rounds; ``out_dir/tac.pt`` and ``curve_tac.csv`` are copies of the best one's
    (``metrics.selected_restart``). ``--resume`` resumes each restart from its own
    ``tac_last.pt`` (a finished one is only re-read). The wall time returned is the sum of
    the restarts' (CPU time spent); ``metrics.restarts_elapsed_s`` is what this call took."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subs, dirs = _restart_configs(cfg), [out_dir / f"restart-{k}" for k in range(cfg.restarts)]
    per_run = cfg.episodes * _rounds_per_episode(cfg, scenario)
    total, t0 = per_run * cfg.restarts, time.perf_counter()
    results: list[TrainResult] = []
    if cfg.restart_jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(cfg.restart_jobs, cfg.restarts), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(train_tac, scenario, sub, str(d), resume): k for k, (sub, d) in enumerate(zip(subs, dirs))}
            done: dict[int, TrainResult] = {}
            for fut in as_completed(futures):
                res = done[futures[fut]] = fut.result()
                if progress:
                    progress({"round": per_run * len(done), "total": total, "weighted_reward": res.history[-1]["weighted_reward"]})
            results = [done[k] for k in range(cfg.restarts)]
    else:
        for k, (sub, d) in enumerate(zip(subs, dirs)):
            inner = (lambda info, k=k: progress({**info, "round": k * per_run + info["round"], "total": total})) if progress else None
            results.append(train_tac(scenario, sub, d, resume=resume, progress=inner))
    scores = [r.metrics["selected_weighted_reward"] for r in results]
    best = int(np.argmax(scores))
    ckpt = load_checkpoint(results[best].checkpoint)
    metrics = {**ckpt.get("metrics", {}), "wall_s": sum(r.wall_s for r in results), "restarts_elapsed_s": time.perf_counter() - t0,
               "selected_restart": best, "restart_validation_rewards": scores,
               "restart_seeds": [s.seed for s in subs], "restart_wall_s": [r.wall_s for r in results]}
    ckpt.update(train_config=cfg.to_dict(), metrics=metrics)
    final = save_checkpoint(out_dir / "tac.pt", **ckpt)
    (out_dir / "curve_tac.csv").write_bytes((dirs[best] / "curve_tac.csv").read_bytes())
    return TrainResult(final, results[best].history, metrics["wall_s"], metrics)


def load_tac(path: str | Path):
    """(actor, critic, reward transform, checkpoint) of a "tac" checkpoint."""
    ckpt = load_checkpoint(path)
    if ckpt["kind"] != "tac":
        raise ValueError(f"{path} is a {ckpt['kind']!r} checkpoint, expected 'tac'")
    mcfg = ModelConfig(**ckpt["model_config"])
    actor, critic = TACActor(mcfg), TACCritic(mcfg)
    actor.load_state_dict(ckpt["actor"])
    critic.load_state_dict(ckpt["critic"])
    return actor.eval(), critic.eval(), RewardTransform(**ckpt["progress"]["reward_transform"]), ckpt


def history_json(history: list[dict]) -> str:
    return json.dumps(history)
