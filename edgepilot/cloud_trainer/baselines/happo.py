"""HAPPO-style multi-agent PPO baseline (DTAC paper section IV-A, eq. 23-25).

* agents: one MLP actor per UE slot (heterogeneous parameters, as HAPPO), on the local
  state (24): (UE id n, edge id k, s_t^n); the paper's HAPPO uses an RNN actor - ours
  is an MLP (the environment's rounds are independent given the caches);
* centralized critic V(s_g) on the zero-padded global state (25), N_max = scenario.max_ues;
* shared team reward (23): every UE gets -(w1 T_t + w2 sum_n E_t^n), floored at
  ``-reward_clip`` and divided by ``reward_scale`` (the same conditioning as TAC);
* actions: categorical x (3) and l (L); a, b = sigmoid of a Gaussian (per-agent
  learned log-std) - the log-prob of the pre-sigmoid sample is used in the ratios
  (the squashing Jacobian cancels in them);
* update: HAPPO's sequential scheme - agents in a random order each iteration, agent
  i's clipped surrogate is weighted by M = prod of the ratios of the agents updated
  before it (Kuba et al. 2022); gamma = 0 (advantage = r - V(s), rounds are
  independent decisions), advantages normalised per batch.

Deterministic evaluation: argmax x and l, a, b = sigmoid(mean).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import nn

from edgepilot.cloud_trainer.checkpoint import load_checkpoint, save_checkpoint
from edgepilot.cloud_trainer.common import (
    CurveWriter,
    ProgressFn,
    TrainResult,
    start_run,
)
from edgepilot.cloud_trainer.config_base import TrainerConfig
from edgepilot.cloud_trainer.envs.simulator import (
    BatchSimulator,
    sample_local_states,
)
from edgepilot.cloud_trainer.models import (
    HAPPO_STATE_DIM,
    GlobalMLPCritic,
    MLPConfig,
    StateNormalizer,
)
from edgepilot.cloud_trainer.play import decision_from_actions, observation_tensors
from edgepilot.cloud_trainer.scenario import Scenario


class HAPPOConfig(TrainerConfig):
    seed: int = 0
    iterations: int = Field(150, ge=1)
    envs: int = Field(32, ge=1)
    rollout: int = Field(8, ge=1)  # rounds per iteration and env
    ppo_epochs: int = Field(4, ge=1)
    clip: float = Field(0.2, gt=0)
    actor_lr: float = Field(5e-4, gt=0)
    critic_lr: float = Field(1e-3, gt=0)
    entropy_coef: float = Field(0.01, ge=0)
    hidden: int = Field(64, ge=1)
    critic_hidden: int = Field(128, ge=1)
    reward_clip: float = Field(1000.0, gt=0)  # floor of -objective, in objective units
    reward_scale: float = Field(100.0, gt=0)
    checkpoint_every: int = Field(25, ge=1)
    threads: int = Field(1, ge=1)


HAPPO_QUICK_OVERRIDES = dict(iterations=3, envs=4, rollout=2, ppo_epochs=1, checkpoint_every=2)


class AgentMLP(nn.Module):
    def __init__(self, num_channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(HAPPO_STATE_DIM, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 3 + num_channels + 2))
        self.log_std = nn.Parameter(torch.full((2,), -0.5))
        self.num_channels = num_channels

    def forward(self, feats: torch.Tensor):
        o = self.net(feats)
        L = self.num_channels
        return o[..., :3], o[..., 3 : 3 + L], o[..., 3 + L :]


class HAPPOActors(nn.Module):
    """One :class:`AgentMLP` per UE slot; the features of (24) are built here."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        self.agents = nn.ModuleList(AgentMLP(cfg.num_channels, cfg.hidden) for _ in range(cfg.max_ues))

    def features(self, state: torch.Tensor, edge_id: torch.Tensor) -> torch.Tensor:
        n = state.shape[-2]
        ue_id = torch.arange(n, dtype=torch.float32).expand(state.shape[:-1]) / self.cfg.max_ues
        return torch.cat([ue_id[..., None], edge_id.float()[..., None] / self.cfg.max_edges, self.normalizer(state)], -1)

    def agent_out(self, feats: torch.Tensor, i: int):
        return self.agents[i](feats[..., i, :])

    def dist_params(self, state, edge_id):
        feats = self.features(state, edge_id)
        outs = [self.agent_out(feats, i) for i in range(state.shape[-2])]
        return tuple(torch.stack(z, dim=-2) for z in zip(*outs))  # lx, ll, mu each (..., N, .)

    def forward(self, state, edge_id, ue_mask=None):  # deterministic actions, TAC layout
        lx, ll, mu = self.dist_params(state, edge_id)
        r = torch.sigmoid(mu)
        return torch.softmax(lx, -1), torch.softmax(ll, -1), r[..., 0], r[..., 1]


def _log_prob(agent: AgentMLP, out, x, l, u):
    lx, ll, mu = out
    lp = torch.distributions.Categorical(logits=lx).log_prob(x) + torch.distributions.Categorical(logits=ll).log_prob(l)
    std = agent.log_std.exp()
    lp = lp + (-0.5 * ((u - mu) / std) ** 2 - agent.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    ent = torch.distributions.Categorical(logits=lx).entropy() + torch.distributions.Categorical(logits=ll).entropy() + agent.log_std.sum()
    return lp, ent


def train_happo(scenario: Scenario, cfg: HAPPOConfig, out_dir: str | Path, resume: bool = False, progress: ProgressFn | None = None) -> TrainResult:
    out_dir = Path(out_dir)
    last_path, final_path, gen = start_run(out_dir, "happo", cfg.seed, cfg.threads)
    mcfg = MLPConfig(num_channels=scenario.radio.num_channels, hidden=cfg.hidden, max_ues=scenario.max_ues, max_edges=16)
    actors = HAPPOActors(mcfg)
    critic = GlobalMLPCritic(mcfg, cfg.critic_hidden)
    opts = [torch.optim.Adam(a.parameters(), lr=cfg.actor_lr) for a in actors.agents]
    opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    start, wall_before, history = 0, 0.0, []
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        actors.load_state_dict(ckpt["actor"])
        critic.load_state_dict(ckpt["critic"])
        for o, s in zip(opts, ckpt["optimizers"]["actors"]):
            o.load_state_dict(s)
        opt_c.load_state_dict(ckpt["optimizers"]["critic"])
        start, wall_before, history = ckpt["progress"]["iteration"], ckpt["progress"]["wall_s"], list(ckpt["progress"]["history"])
        gen.manual_seed(cfg.seed + start)
    else:
        states = torch.as_tensor(sample_local_states(scenario, 20_000 if cfg.iterations > 10 else 2000, seed=cfg.seed), dtype=torch.float32)
        actors.normalizer.fit(states)
        critic.normalizer.fit(states)
    sim = BatchSimulator(scenario, batch_size=cfg.envs, seed=cfg.seed + 3 + start)
    obs = sim.reset()
    curve = CurveWriter(out_dir / "curve_happo.csv", append=resume and start > 0)
    t0 = time.perf_counter()
    rounds_per_iter = cfg.rollout

    def checkpoint(path, it, metrics=None):
        save_checkpoint(path, kind="happo", model_config=mcfg.to_dict(), actor=actors.state_dict(), critic=critic.state_dict(),
                        optimizers={"actors": [o.state_dict() for o in opts], "critic": opt_c.state_dict()},
                        scenario=scenario.model_dump(mode="json"), scenario_hash=scenario.scenario_hash(), train_config=cfg.to_dict(),
                        progress={"iteration": it, "wall_s": wall_before + time.perf_counter() - t0, "history": history}, metrics=metrics or {})

    for it in range(start, cfg.iterations):
        buf = {k: [] for k in ("s", "e", "m", "x", "l", "u", "lp", "r")}
        objs = []
        for _ in range(rounds_per_iter):
            s, e, m = observation_tensors(obs)
            with torch.no_grad():
                lx, ll, mu = actors.dist_params(s, e)
                x = torch.distributions.Categorical(logits=lx).sample()
                l = torch.distributions.Categorical(logits=ll).sample()
                std = torch.stack([a.log_std.exp() for a in actors.agents[: s.shape[1]]])  # (N, 2)
                u = mu + std * torch.randn(mu.shape, generator=gen)
                lp = torch.stack([_log_prob(actors.agents[i], (lx[:, i], ll[:, i], mu[:, i]), x[:, i], l[:, i], u[:, i])[0] for i in range(s.shape[1])], -1)
            ratios = torch.sigmoid(u)
            step = sim.step(decision_from_actions(torch.nn.functional.one_hot(x, 3), torch.nn.functional.one_hot(l, mcfg.num_channels), ratios[..., 0], ratios[..., 1]))
            obj = torch.as_tensor(step.result.objective, dtype=torch.float32)
            r = -obj.clamp_max(cfg.reward_clip) / cfg.reward_scale  # (23), conditioned
            for k, v in zip(buf, (s, e, m, x, l, u, lp, r)):
                buf[k].append(v)
            objs.append(step.result.objective.mean())
            obs = sim.reset() if step.episode_done else step.observation
        B = {k: torch.cat(v) for k, v in buf.items()}
        with torch.no_grad():
            v = critic(B["s"], B["e"], B["m"])
        adv = B["r"] - v
        adv = (adv - adv.mean()) / (adv.std() + 1e-6)
        for _ in range(cfg.ppo_epochs):  # critic
            loss_c = ((critic(B["s"], B["e"], B["m"]) - B["r"]) ** 2).mean()
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
        feats = actors.features(B["s"], B["e"])
        weight = torch.ones_like(adv)  # M of HAPPO
        order = torch.randperm(B["s"].shape[1], generator=gen).tolist()
        for i in order:
            agent, mask_i = actors.agents[i], B["m"][:, i].float()
            if mask_i.sum() == 0:
                continue
            for _ in range(cfg.ppo_epochs):
                lp_new, ent = _log_prob(agent, actors.agent_out(feats, i), B["x"][:, i], B["l"][:, i], B["u"][:, i])
                ratio = torch.exp(lp_new - B["lp"][:, i])
                a_w = weight * adv
                surr = torch.minimum(ratio * a_w, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a_w)
                loss = -((surr + cfg.entropy_coef * ent) * mask_i).sum() / mask_i.sum()
                opts[i].zero_grad()
                loss.backward()
                opts[i].step()
            with torch.no_grad():
                lp_new, _ = _log_prob(agent, actors.agent_out(feats, i), B["x"][:, i], B["l"][:, i], B["u"][:, i])
                weight = weight * torch.where(mask_i > 0, torch.exp(lp_new - B["lp"][:, i]), torch.ones_like(weight)).clamp(0.0, 10.0)
        row = {"method": "happo", "episode": (it + 1) * rounds_per_iter / scenario.episode.rounds, "round": (it + 1) * rounds_per_iter,
               "rounds_total": cfg.iterations * rounds_per_iter, "wall_s": round(wall_before + time.perf_counter() - t0, 3),
               "weighted_reward": -float(np.mean(objs)), "critic_loss": float(loss_c.detach()), "actor_loss": float("nan"), "noise_std": 0.0,
               "round_time_s": float("nan"), "energy_j": float("nan")}
        history.append(row)
        curve.write(row)
        if progress:
            progress({"round": it + 1, "total": cfg.iterations, "weighted_reward": row["weighted_reward"]})
        if (it + 1) % cfg.checkpoint_every == 0:
            checkpoint(last_path, it + 1)
    wall = wall_before + time.perf_counter() - t0
    metrics = {"wall_s": wall, "iterations": cfg.iterations}
    checkpoint(last_path, cfg.iterations, metrics)
    checkpoint(final_path, cfg.iterations, metrics)
    curve.close()
    return TrainResult(final_path, history, wall, metrics)


def load_happo(path) -> tuple[HAPPOActors, dict]:
    ckpt = load_checkpoint(path)
    if ckpt["kind"] != "happo":
        raise ValueError(f"{path} is a {ckpt['kind']!r} checkpoint, expected 'happo'")
    actors = HAPPOActors(MLPConfig(**ckpt["model_config"]))
    actors.load_state_dict(ckpt["actor"])
    return actors.eval(), ckpt
