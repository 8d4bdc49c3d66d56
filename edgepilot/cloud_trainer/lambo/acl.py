"""Actor-critic pre-training of the AED over both prompts (ACL, section IV-D).

Actor: the AED, sampling UE-by-UE masked decisions (every one feasible). Critic: an AED
of the same structure with a value output on its decoder states, run teacher-forced
over the actor's decisions; it predicts, after each UE's decision state, the cost still
to come. Both objectives are sums of per-UE costs (mean latency = sum T_n / N, total
energy = sum E_n), so UE t's cost is known at its step; costs are normalized per UE
(latency / T_max, energy / the energy of a mean task run locally) and divided by N.
The actor's loss is the policy gradient with advantage (cost-to-go - critic), minus an
entropy bonus; the critic regresses the cost-to-go. Each step trains on both prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from edgepilot.cloud_trainer.lambo.model import AED, AEDConfig, Rollout
from edgepilot.cloud_trainer.lambo.scenario import LamboScenario
from edgepilot.cloud_trainer.lambo.system import PROMPTS, Instances, evaluate, objective_of, sample_instances

#: the prompts pre-training covers, in the paper's wording
TRAIN_PROMPTS = tuple(p.capitalize() for p in PROMPTS)


class ACLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(300, ge=1, le=10_000_000, description="gradient steps (each on both prompts)")
    batch_size: int = Field(32, ge=1, le=100_000, description="instances per prompt per step")
    num_ues: Optional[int] = Field(None, ge=1, le=4096, description="UEs per training instance (default: the scenario's N)")
    lr_actor: float = Field(1e-3, gt=0)
    lr_critic: float = Field(1e-3, gt=0)
    entropy_coef: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eval_instances: int = Field(64, ge=1, description="held-out instances per prompt for the progress figures")
    eval_every: int = Field(25, ge=1)
    seed: int = Field(0, ge=0)
    threads: int = Field(1, ge=1, le=256, description="torch threads")
    model: AEDConfig = AEDConfig()
    critic: AEDConfig = AEDConfig(encoder_layers=2)


@dataclass
class ACLResult:
    actor: AED
    critic: AED
    history: List[Dict[str, float]] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    wall_s: float = 0.0


def unit_costs(inst: Instances, assign: np.ndarray, share: np.ndarray, prompt: str) -> np.ndarray:
    """(B, N) normalized per-UE cost of decisions under the prompt (their sum over UEs is
    the objective up to a constant factor)."""
    ev = evaluate(inst, assign, share)
    n = inst.num_ues
    if objective_of(prompt) == "latency":
        return ev.latency_s / inst.max_latency_s / n
    ref = inst.compute_power_w * float(np.mean(inst.cycles)) / inst.local_hz
    return ev.energy_j / ref / n


def greedy_objective(actor: AED, inst: Instances, prompt: str) -> Dict[str, float]:
    """Mean objective and feasibility rate of the actor's greedy decisions."""
    actor.eval()
    ro = actor.rollout(inst, prompt, greedy=True)
    ev = evaluate(inst, ro.assign, ro.share)
    return {"objective": float(ev.objective(prompt).mean()), "feasible": float(ev.feasible.mean())}


def random_objective(inst: Instances, prompt: str, rng: np.random.Generator) -> Dict[str, float]:
    """The paper's Random contender: each UE local or on a uniformly drawn server, the
    server's capacity split equally among its UEs (may be infeasible)."""
    k = inst.num_servers
    assign = rng.integers(0, k + 1, size=inst.cycles.shape)
    counts = np.zeros((inst.batch_size, k + 1))
    np.add.at(counts, (np.arange(inst.batch_size)[:, None].repeat(inst.num_ues, 1), assign), 1)
    share = np.where(assign > 0, 1.0 / np.take_along_axis(counts, assign, 1), 0.0)
    ev = evaluate(inst, assign, share)
    return {"objective": float(ev.objective(prompt).mean()), "feasible": float(ev.feasible.mean())}


def _actor_critic_step(actor, critic, opt_a, opt_c, inst: Instances, prompt: str, cfg: ACLConfig,
                       gen: torch.Generator) -> Dict[str, float]:
    actor.eval()
    ro: Rollout = actor.rollout(inst, prompt, greedy=False, generator=gen)
    cost = unit_costs(inst, ro.assign, ro.share, prompt)
    to_go = torch.from_numpy(np.cumsum(cost[:, ::-1], axis=1)[:, ::-1].copy()).float()
    actor.train()
    critic.train()
    value = critic.values(inst, prompt, ro)
    critic_loss = torch.mean((value - to_go) ** 2)
    opt_c.zero_grad()
    critic_loss.backward()
    torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
    opt_c.step()
    logp, entropy, _ = actor.teacher_forced(inst, prompt, ro)
    adv = to_go - value.detach()
    adv = adv / (adv.std() + 1e-8)
    actor_loss = torch.mean(adv * logp) - cfg.entropy_coef * entropy.mean()
    opt_a.zero_grad()
    actor_loss.backward()
    torch.nn.utils.clip_grad_norm_(actor.parameters(), cfg.grad_clip)
    opt_a.step()
    return {"cost": float(cost.sum(1).mean()), "critic_loss": float(critic_loss.detach())}


def train_acl(scen: LamboScenario, cfg: ACLConfig, out_dir: Optional[Path] = None,
              progress: Optional[Callable[[Dict[str, float]], None]] = None) -> ACLResult:
    """Pre-train an AED on ``scen`` over both prompts; writes ``out_dir/aed.pt`` if given."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    held_out = sample_instances(scen, cfg.eval_instances, np.random.default_rng(cfg.seed + 10_000), num_ues=cfg.num_ues)
    means = dict(data_mean=(scen.tasks.data_bits.low + scen.tasks.data_bits.high) / 2,
                 cycles_mean=(scen.tasks.cycles.low + scen.tasks.cycles.high) / 2)
    actor = AED(cfg.model, scen.num_servers, **means)
    critic = AED(cfg.critic, scen.num_servers, value_head=True, **means)
    opt_a = torch.optim.Adam(actor.parameters(), lr=cfg.lr_actor)
    opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.lr_critic)
    random_ref = {p: random_objective(held_out, p, np.random.default_rng(cfg.seed + 20_000)) for p in TRAIN_PROMPTS}
    history: List[Dict[str, float]] = []
    start = time.perf_counter()

    def record(step: int, train: Dict[str, float]) -> None:
        row: Dict[str, float] = {"step": step, "total": cfg.steps, **train}
        for p in TRAIN_PROMPTS:
            key = objective_of(p)
            g = greedy_objective(actor, held_out, p)
            row[f"{key}"] = g["objective"]
            row[f"{key}_feasible"] = g["feasible"]
            row[f"{key}_random"] = random_ref[p]["objective"]
        row["wall_s"] = time.perf_counter() - start
        history.append(row)
        if progress is not None:
            progress(row)

    record(0, {})
    for step in range(1, cfg.steps + 1):
        train: Dict[str, float] = {}
        for p in TRAIN_PROMPTS:
            inst = sample_instances(scen, cfg.batch_size, rng, num_ues=cfg.num_ues)
            out = _actor_critic_step(actor, critic, opt_a, opt_c, inst, p, cfg, gen)
            train[f"{objective_of(p)}_train_cost"] = out["cost"]
            train[f"{objective_of(p)}_critic_loss"] = out["critic_loss"]
        if step % cfg.eval_every == 0 or step == cfg.steps:
            record(step, train)
    result = ACLResult(actor, critic, history, wall_s=time.perf_counter() - start)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        result.checkpoint = save_checkpoint(out_dir / "aed.pt", scen, cfg, actor, critic, history)
    return result


def save_checkpoint(path: Path, scen: LamboScenario, cfg: ACLConfig, actor: AED, critic: AED,
                    history: List[Dict[str, float]]) -> Path:
    torch.save({"kind": "lambo-aed", "scenario": scen.model_dump(mode="json"), "acl": cfg.model_dump(mode="json"),
                "data_mean": actor.data_mean, "cycles_mean": actor.cycles_mean,
                "actor": actor.state_dict(), "critic": critic.state_dict(), "history": history}, path)
    return path


def load_checkpoint(path: Path):
    """``(actor, scenario)`` from a checkpoint written by :func:`train_acl`."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck.get("kind") != "lambo-aed":
        raise ValueError(f"{path}: not a LAMBO AED checkpoint")
    scen = LamboScenario.model_validate(ck["scenario"])
    cfg = ACLConfig.model_validate(ck["acl"])
    actor = AED(cfg.model, scen.num_servers, data_mean=ck["data_mean"], cycles_mean=ck["cycles_mean"])
    actor.load_state_dict(ck["actor"])
    actor.eval()
    return actor, scen


#: ``edgepilot train aed --quick``: tiny sizes that finish in seconds (tests, smoke runs)
QUICK_OVERRIDES = {"steps": 20, "batch_size": 8, "num_ues": 10, "eval_instances": 16, "eval_every": 10,
                   "model": {"d_model": 32, "nhead": 2, "dim_feedforward": 64, "encoder_layers": 1},
                   "critic": {"d_model": 32, "nhead": 2, "dim_feedforward": 64, "encoder_layers": 1}}


def write_curve(path: Path, history: List[Dict[str, float]]) -> Path:
    """The progress rows as CSV (one column per key seen)."""
    import csv

    keys: List[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in history:
            w.writerow(row)
    return path
