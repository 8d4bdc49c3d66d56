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
   (rewards are negative, so the actor *maximises* that sum of Q; see
   :func:`edgepilot.cloud_trainer.common.actor_loss`).

The noise variance decays by ``noise_decay`` once per episode (``rounds_per_episode``
collection rounds, Table II: 600). The critic's reward conditioning is in
:mod:`edgepilot.cloud_trainer.common`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np
import torch
from pydantic import Field

from edgepilot.cloud_trainer.checkpoint import load_checkpoint, save_checkpoint
from edgepilot.cloud_trainer.common import (
    CurveWriter,
    ProgressFn,
    ReplayMemory,
    RewardTransform,
    TrainResult,
    actor_loss,
    actor_step,
    add_exploration_noise,
    critic_update,
    start_run,
)
from edgepilot.cloud_trainer.config_base import TrainerConfig
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, sample_local_states
from edgepilot.cloud_trainer.models import ModelConfig, TACActor, TACCritic
from edgepilot.cloud_trainer.play import decision_from_actions, observation_tensors
from edgepilot.cloud_trainer.scenario import Scenario


class TACConfig(TrainerConfig):
    """Hyper-parameters of centralized training. Defaults: Table II where the paper
    gives a value (AdamW, entropy 0.01, 600 rounds per episode); the rest are ours,
    sized for a 2-core CPU (docs/training.md says why each)."""

    # removed trial options and the value that kept today's behaviour (docs/decisions.md)
    RETIRED: ClassVar[dict] = {
        "actor_update_every": 1, "offload_search_coef": 0.0, "channel_search_coef": 0.0, "ratio_search_coef": 0.0,
        "counterfactuals": False, "ratio_counterfactuals": 0, "actor_time_temperature": 0.0, "offload_epsilon": 0.0,
        "channel_epsilon": 0.0, "reward_transform": "clip", "reward_soft_cap": 3.0, "validation_rounds": 0,
        "validation_envs": 32, "validation_seed": None, "restarts": 1, "restart_jobs": 1,
    }

    seed: int = 0
    episodes: int = Field(7, ge=1)  # noise-decay periods ("episodes") of collection
    rounds_per_episode: Optional[int] = Field(None, ge=1)  # None: scenario.episode.rounds (Table II: 600)
    envs: int = Field(16, ge=1)  # parallel simulator episodes per collection round
    batch_size: int = Field(48, ge=1)  # joint states per gradient step
    updates_per_round: int = Field(1, ge=1)  # U (Algorithm 1 line 8), per collection round
    warmup_rounds: int = Field(20, ge=0)  # collection rounds before the first update
    replay_capacity: int = Field(50_000, ge=1)  # joint states kept in the memory
    actor_lr: float = Field(3e-4, gt=0)  # Table II: 2e-5 (with far more episodes)
    critic_lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)  # AdamW (Table II optimizer)
    entropy_coef: float = Field(0.01, ge=0)  # omega_s (Table II)
    actor_w_time: float = 1.0  # w1 of (19); the reward (17) already carries omega_1
    actor_w_energy: float = 1.0  # w2 of (19); the reward (17) already carries omega_2
    noise_std: float = Field(0.3, ge=0)  # sqrt of the initial noise variance v
    noise_decay: float = Field(0.6, gt=0, le=1)  # epsilon: v <- v * epsilon every episode
    noise_min_std: float = Field(0.02, ge=0)
    ratio_noise_scale: float = Field(0.5, ge=0)  # noise on a, b relative to the probability noise
    reward_clip: float = Field(100.0, gt=0)  # floor of the per-UE reward, in reward units (w1 s / w2 J)
    reward_scale: float = Field(10.0, gt=0)  # common divisor of both reward components
    grad_clip: float = Field(1.0, gt=0)
    normalizer_samples: int = Field(20_000, ge=2)
    checkpoint_every: int = Field(500, ge=1)  # collection rounds
    threads: int = Field(1, ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig)


QUICK_OVERRIDES = dict(episodes=2, rounds_per_episode=30, envs=8, batch_size=16, warmup_rounds=4, normalizer_samples=2000, checkpoint_every=20)


def train_tac(
    scenario: Scenario,
    cfg: TACConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Algorithm 1, lines 1-12. Writes ``tac.pt`` (final), ``tac_last.pt`` (periodic,
    for ``--resume``) and ``curve_tac.csv`` in ``out_dir``."""
    out_dir = Path(out_dir)
    last_path, final_path, gen = start_run(out_dir, "tac", cfg.seed, cfg.threads)
    mcfg = cfg.model
    if mcfg.num_channels != scenario.radio.num_channels:
        mcfg = mcfg.model_copy(update={"num_channels": scenario.radio.num_channels})
        cfg.model = mcfg
    if scenario.topology.num_edge_servers > mcfg.max_edges:
        raise ValueError(f"scenario has {scenario.topology.num_edge_servers} edge servers > model.max_edges={mcfg.max_edges}")
    actor, critic = TACActor(mcfg), TACCritic(mcfg)
    opt_actor = torch.optim.AdamW(actor.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay)
    opt_critic = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=cfg.weight_decay)
    sim = BatchSimulator(scenario, batch_size=cfg.envs, seed=cfg.seed)
    memory = ReplayMemory(cfg.replay_capacity, scenario.max_ues, mcfg.num_channels)
    rpe = int(cfg.rounds_per_episode or scenario.episode.rounds)
    total_rounds = cfg.episodes * rpe
    start_round, noise_std, transform, wall_before = 0, cfg.noise_std, None, 0.0
    history: list[dict] = []

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
    closs_acc, aloss_acc, nupd = 0.0, 0.0, 0

    def checkpoint(path: Path, rnd: int, metrics: dict | None = None) -> None:
        save_checkpoint(
            path, kind="tac", model_config=mcfg.to_dict(), actor=actor.state_dict(), critic=critic.state_dict(),
            optimizers={"actor": opt_actor.state_dict(), "critic": opt_critic.state_dict()},
            scenario=scenario.model_dump(mode="json"), scenario_hash=scenario.scenario_hash(),
            train_config=cfg.to_dict(),
            progress={"round": rnd, "episode": rnd // rpe, "noise_std": noise_std, "wall_s": wall_before + time.perf_counter() - t0,
                      "reward_transform": transform.state() if transform else None, "history": history},
            metrics=metrics or {},
        )

    for rnd in range(start_round, total_rounds):
        state, edge_id, mask = observation_tensors(obs)
        with torch.no_grad():
            actions = actor(state, edge_id, mask)
            noisy = add_exploration_noise(actions, noise_std, cfg.ratio_noise_scale, gen)
        step = sim.step(decision_from_actions(*noisy))
        reward = torch.as_tensor(step.reward, dtype=torch.float32)
        if transform is None:
            transform = RewardTransform.fit(cfg)
        memory.add(state, edge_id, mask, noisy, reward)
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
                critic.requires_grad_(False)  # (19) moves the actor only
                aloss = actor_loss(critic, s, e, m, actor(s, e, m), cfg)  # (19)
                actor_step(actor, opt_actor, aloss, cfg.grad_clip)
                critic.requires_grad_(True)
                closs_acc += float(closs.detach())
                aloss_acc += float(aloss.detach())
                nupd += 1

        done_rounds = rnd + 1
        if done_rounds % rpe == 0:
            noise_std = max(cfg.noise_min_std, noise_std * math.sqrt(cfg.noise_decay))  # v <- v * eps
        log_every = max(1, rpe // 4)
        if done_rounds % log_every == 0 or done_rounds == total_rounds:
            obj, rt, en = (float(np.mean(v)) for v in zip(*window))
            row = {
                "method": "tac", "episode": done_rounds / rpe, "round": done_rounds, "rounds_total": total_rounds,
                "wall_s": round(wall_before + time.perf_counter() - t0, 3), "weighted_reward": -obj, "round_time_s": rt, "energy_j": en,
                "critic_loss": closs_acc / max(nupd, 1), "actor_loss": aloss_acc / max(nupd, 1), "noise_std": noise_std,
            }
            history.append(row)
            curve.write(row)
            window, closs_acc, aloss_acc, nupd = [], 0.0, 0.0, 0
        if progress:
            progress({"round": done_rounds, "total": total_rounds, "weighted_reward": history[-1]["weighted_reward"] if history else float("nan")})
        if done_rounds % cfg.checkpoint_every == 0:
            checkpoint(last_path, done_rounds)

    wall = wall_before + time.perf_counter() - t0
    metrics = {"wall_s": wall, "rounds": total_rounds, "final_weighted_reward_noisy": history[-1]["weighted_reward"] if history else None}
    checkpoint(last_path, total_rounds, metrics)  # the last round, for --resume
    checkpoint(final_path, total_rounds, metrics)
    curve.close()
    return TrainResult(final_path, history, wall, metrics)


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
