"""What the TAC, DTAC-transfer and HAPPO trainers share: threads, exploration noise,
the replay memory, the critic's reward conditioning and update (18), the actor loss
(19) / (22), validation rounds, training curves (CSV + TensorBoard) and the result
type every trainer returns.

Reward conditioning (documented choice): times range from ~0.1 s to 10^6 s when an
offloaded UE sits in a deep fade or under near-far interference, and its transmit
energy blows up with it. The critic regresses ``max(r, -reward_clip) / reward_scale``:
one common linear scale for both components (so the time / energy trade-off of (19)
is exactly the paper's), and a floor that only touches catastrophic rounds (default
100, i.e. 100 s of weighted time or 100 weighted J for one UE; a good round costs
~13 s).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgepilot.cloud_trainer.play import ActorPolicy, evaluate_policy
from edgepilot.cloud_trainer.scenario import Scenario
from edgepilot.edge_agent.actions import MIN_RATIO

ProgressFn = Callable[[dict], None]


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict]
    wall_s: float
    metrics: dict


def set_threads(n: int) -> None:
    torch.set_num_threads(max(1, int(n)))


def start_run(out_dir: Path, method: str, seed: int, threads: int) -> tuple[Path, Path, torch.Generator]:
    """What every trainer does first: its threads, the run directory, its seeds; returns the
    paths of its periodic (``{method}_last.pt``, for ``--resume``) and final checkpoints and
    its seeded generator."""
    set_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return out_dir / f"{method}_last.pt", out_dir / f"{method}.pt", torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------
# exploration and replay
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
# critic (18) and actor (19) / (22)
class RewardTransform:
    """Maps the vector reward (17) to the critic's regression target:
    ``max(r, -clip) / scale`` (see the module docstring)."""

    def __init__(self, scale, kind: str = "clip", clip: float = 100.0, soft_cap: float | None = None) -> None:
        # kind / soft_cap: what checkpoints saved while other transforms were a trial option
        if kind != "clip":
            raise ValueError(f"reward transform {kind!r} was a removed trial option (docs/decisions.md, Trainer); only 'clip' can be loaded")
        self.scale = torch.as_tensor(np.asarray(scale, dtype=np.float32))
        self.clip = float(clip)

    @classmethod
    def fit(cls, cfg) -> "RewardTransform":
        return cls([cfg.reward_scale, cfg.reward_scale], "clip", cfg.reward_clip)

    def __call__(self, reward: torch.Tensor) -> torch.Tensor:
        return reward.clamp_min(-self.clip) / self.scale

    def state(self) -> dict:
        return {"scale": self.scale.tolist(), "kind": "clip", "clip": self.clip}


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


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-8))).sum(-1)


def actor_objective(q: torch.Tensor, mask: torch.Tensor, w_time: float, w_energy: float) -> torch.Tensor:
    """Per-sample value the actor maximises (19): w1 * (worst UE's time Q, i.e. the
    round time T_t, as rewards are negative the worst is the min) + w2 * sum_n Q_energy.
    The paper writes max_n over Q of the *cost*; with Q of the negative reward the
    worst UE is the minimum. Shape (B,)."""
    q_time = q[..., 0].masked_fill(~mask, float("inf")).min(dim=-1).values
    q_energy = (q[..., 1] * mask).sum(-1)
    return w_time * q_time + w_energy * q_energy


def config_objective(q: torch.Tensor, mask: torch.Tensor, cfg) -> torch.Tensor:
    """:func:`actor_objective` with ``cfg``'s weights (a TACConfig or a TransferConfig)."""
    return actor_objective(q, mask, cfg.actor_w_time, cfg.actor_w_energy)


def actor_loss(critic, state, edge_id, mask, actions, cfg) -> torch.Tensor:
    """(19) / (22): minus the actor objective, minus the entropy bonus over the real UEs."""
    p_x, p_l, a, b = actions
    q = critic(state, edge_id, p_x, p_l, a, b, mask)
    value = config_objective(q, mask, cfg)
    ent = ((entropy(p_x) + entropy(p_l)) * mask).sum(-1)
    return (-value - cfg.entropy_coef * ent).mean()


def actor_step(actor, optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(actor.parameters(), grad_clip)
    optimizer.step()


# ---------------------------------------------------------------------------
# validation rounds
VALIDATION_SEED_OFFSET = 500_009  # validation rounds: cfg.seed + this


def validation_seed(cfg) -> int:
    """The simulator seed of ``cfg``'s validation rounds."""
    return cfg.seed + VALIDATION_SEED_OFFSET


def validation_result(name: str, actor: torch.nn.Module, kind: str, scenario: Scenario, cfg) -> dict:
    """``evaluate_policy``'s result for ``actor`` played the way `edgepilot evaluate` plays
    it, on ``cfg.validation_rounds`` x ``cfg.validation_envs`` rounds of the validation seed.
    The actor goes back to the train / eval mode it was in (playing puts it in eval mode)."""
    training = actor.training
    result = evaluate_policy(ActorPolicy(name, actor, kind), scenario, cfg.validation_rounds, cfg.validation_envs, validation_seed(cfg))
    actor.train(training)
    return result


def validation_reward(name: str, actor: torch.nn.Module, kind: str, scenario: Scenario, cfg) -> float:
    """Weighted reward (27) of :func:`validation_result`."""
    return validation_result(name, actor, kind, scenario, cfg)["weighted_reward"]


# ---------------------------------------------------------------------------
# training curves
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
