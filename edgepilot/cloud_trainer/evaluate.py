"""The DTAC paper's evaluation (section IV): every method on the Fig. 5 / 6 / 7
scenarios, offload preferences (Fig. 8/9), generalization (Fig. 11), action
similarity (Table III) and model complexity (Table IV).

Metrics per method and scenario, from ``rounds`` rounds of ``envs`` parallel episodes
(same simulator seed for every method; each method plays its own trajectory, since
the edge caches follow the decisions):

* ``avg_round_time_s`` - mean round duration T_t (12), the paper's "average task
  execution time" (the round ends when the last task does);
* ``avg_energy_per_task_j`` - total UE energy / number of tasks;
* ``weighted_reward`` - (27): -mean_t (w1 T_t + w2 sum_n E_t^n);
* ``offload_preference`` - fraction of tasks computed locally / at the edge / at the cloud.

"Against the number of UEs": the simulator draws 4-6 UEs per edge server each
episode, so the per-episode N varies; results are also bucketed by N (the layout of
UE slots is the one the models were trained on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgepilot.cloud_trainer.baselines import HEURISTIC_POLICIES
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator
# ActorPolicy, evaluate_policy and headline live in play.py (below the trainers); the
# benchmarks and tests take them from here too
from edgepilot.cloud_trainer.play import ActorPolicy, decision_from_actions, evaluate_policy
from edgepilot.cloud_trainer.scenario import Scenario, load_scenario

METHOD_ORDER = ("tac", "dtac", "happo", "tl", "tl_transformer", "greedy", "all_edge", "local", "random")
LABELS = {"tac": "TAC (centralized)", "dtac": "DTAC", "happo": "HAPPO", "tl": "TL", "tl_transformer": "TL-transformer",
          "greedy": "Greedy", "all_edge": "All-edge", "local": "Local-only", "random": "Random", "exhaustive": "Exhaustive"}


# ---------------------------------------------------------------------------
# policies over learned actors
def load_policy(method: str, checkpoint: str | Path) -> ActorPolicy:
    """The learned policy of ``checkpoint``."""
    if method == "tac":
        from edgepilot.cloud_trainer.tac import load_tac

        return ActorPolicy("tac", load_tac(checkpoint)[0], "joint")
    if method in ("dtac", "tl_transformer"):
        from edgepilot.cloud_trainer.dtac import load_transfer_actor

        return ActorPolicy(method, load_transfer_actor(checkpoint)[0], "local")
    if method == "tl":
        from edgepilot.cloud_trainer.dtac import load_transfer_actor

        return ActorPolicy("tl", load_transfer_actor(checkpoint)[0], "joint")
    if method == "happo":
        from edgepilot.cloud_trainer.baselines.happo import load_happo

        return ActorPolicy("happo", load_happo(checkpoint)[0], "joint")
    raise ValueError(f"unknown learned method {method!r}")


def make_policy(method: str, scenario: Scenario, checkpoints: dict[str, str | Path] | None = None, seed: int = 0):
    if method in HEURISTIC_POLICIES:
        return HEURISTIC_POLICIES[method](scenario.radio.num_channels, seed=seed)
    if method == "exhaustive":
        from edgepilot.cloud_trainer.baselines.exhaustive import ExhaustivePolicy

        return ExhaustivePolicy(scenario.network_params, scenario.radio.num_channels)
    if not checkpoints or method not in checkpoints:
        raise ValueError(f"method {method!r} needs a checkpoint")
    return load_policy(method, checkpoints[method])


# ---------------------------------------------------------------------------


def relative_change(transferred, trained_there):
    """Fig. 11's change of the transferred DTAC against the one trained there (floats or arrays)."""
    return (transferred - trained_there) / abs(trained_there)


def generalization_entry(trained_on: str, tested_on: str, trained_there: dict, transferred: dict) -> dict:
    """Fig. 11 from two evaluations on ``tested_on``: the DTAC trained there and the one
    trained on ``trained_on``; the form :func:`target_checks` and the page read."""
    change = relative_change(transferred["weighted_reward"], trained_there["weighted_reward"])
    return {"trained_on": trained_on, "tested_on": tested_on, "dtac_trained_there": trained_there, "dtac_transferred": transferred,
            "relative_change": change}


def offload_kl(reference: ActorPolicy, other: ActorPolicy, scenario: Scenario, rounds: int = 20, envs: int = 16, seed: int = 2000) -> float:
    """Table III: mean KL(p_x^TAC || p_x^method) over the real UEs of rounds played by
    the reference (TAC)."""
    sim = BatchSimulator(scenario, batch_size=envs, seed=seed)
    obs = sim.reset()
    kls = []
    for _ in range(rounds):
        p = reference.actions(obs)
        q = other.actions(obs)
        px, qx = p[0].clamp_min(1e-8), q[0].clamp_min(1e-8)
        kl = (px * (px.log() - qx.log())).sum(-1)
        kls.append(kl[torch.as_tensor(obs.ue_mask)].numpy())
        step = sim.step(decision_from_actions(*p))
        obs = sim.reset() if step.episode_done else step.observation
    return float(np.concatenate(kls).mean())


def complexity(checkpoints: dict[str, str | Path], num_ues: int = 30) -> dict:
    """Table IV: parameters and forward FLOPs per UE of the actors (and TAC critic)."""
    from torch.utils.flop_counter import FlopCounterMode

    from edgepilot.cloud_trainer.models import count_parameters

    out = {}

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                fn()
        return int(counter.get_total_flops())

    s = torch.rand(1, num_ues, 6) + 0.1
    e = torch.zeros(1, num_ues, dtype=torch.int64)
    m = torch.ones(1, num_ues, dtype=torch.bool)
    for method, path in checkpoints.items():
        pol = load_policy(method, path)
        actor = pol.actor
        if pol.kind == "local":
            f = flops(lambda actor=actor: actor(s[0]))
        else:
            f = flops(lambda actor=actor: actor(s, e, m))
        out[method] = {"actor_parameters": count_parameters(actor), "actor_flops_per_ue": f / num_ues}
        if method == "tac":
            from edgepilot.cloud_trainer.tac import load_tac

            _, critic, _, _ = load_tac(path)
            acts = actor(s, e, m)
            out[method]["critic_parameters"] = count_parameters(critic)
            out[method]["critic_flops_per_ue"] = flops(lambda critic=critic, acts=acts: critic(s, e, *acts, m)) / num_ues
        if method == "happo":
            from edgepilot.cloud_trainer.checkpoint import load_checkpoint
            from edgepilot.cloud_trainer.models import GlobalMLPCritic, MLPConfig

            ck = load_checkpoint(path)
            critic = GlobalMLPCritic(MLPConfig(**ck["model_config"]), ck["train_config"]["critic_hidden"])
            critic.load_state_dict(ck["critic"])
            se = torch.rand(1, critic.cfg.max_ues, 6)
            ee = torch.zeros(1, critic.cfg.max_ues, dtype=torch.int64)
            me = torch.ones(1, critic.cfg.max_ues, dtype=torch.bool)
            out[method]["critic_parameters"] = count_parameters(critic)
            out[method]["critic_flops_per_ue"] = flops(lambda critic=critic, se=se, ee=ee, me=me: critic(se, ee, me)) / critic.cfg.max_ues
    return out


def rounds_to_fraction(history: list[dict], fraction: float = 0.95, smooth: int = 3) -> dict | None:
    """First logged point whose (smoothed) reward covers ``fraction`` of the way from
    the first to the final reward: ``(r - r_0) / (r_final - r_0) >= fraction``."""
    if len(history) < 2:
        return None
    r = np.array([h["weighted_reward"] for h in history], dtype=float)
    r = np.maximum(r, np.percentile(r, 1))  # one catastrophic log point must not set r_0
    k = max(1, smooth)
    sm = np.convolve(r, np.ones(k) / k, mode="valid")
    r0, rf = sm[0], sm[-1]
    if rf <= r0:
        return {"reached_index": len(history) - 1, "episode": history[-1]["episode"], "wall_s": history[-1]["wall_s"], "improved": False}
    idx = int(np.argmax((sm - r0) / (rf - r0) >= fraction)) + k - 1
    return {"reached_index": idx, "episode": history[idx]["episode"], "round": history[idx]["round"], "wall_s": history[idx]["wall_s"], "improved": True}


# ---------------------------------------------------------------------------
@dataclass
class EvalSpec:
    scenarios: tuple[str, ...] = ("fig5", "fig6", "fig7")
    rounds: int = 50
    envs: int = 32
    seed: int = 1000
    methods: tuple[str, ...] = METHOD_ORDER
    command: str = "edgepilot evaluate"  # what the results page says it was generated by


def discover_checkpoints(runs_dir: Path, scenario_name: str) -> dict[str, Path]:
    found = {}
    for method in ("tac", "dtac", "happo", "tl", "tl_transformer"):
        p = runs_dir / scenario_name / f"{method}.pt"
        if p.exists():
            found[method] = p
    return found


def run_evaluation(runs_dir: str | Path, out_dir: str | Path, spec: EvalSpec, log: Callable[[str], None] = print,
                   generalization: tuple[str, str] | None = ("fig6", "fig7"), similarity: tuple[str, ...] = ("fig6", "fig7")) -> dict:
    """Evaluate every available method on every scenario; writes ``results.json``."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()}, "scenarios": {}}
    for name in spec.scenarios:
        scenario = load_scenario(name)
        ckpts = discover_checkpoints(runs_dir, name)
        entry = {"scenario_hash": scenario.scenario_hash(), "checkpoints": {k: str(v) for k, v in ckpts.items()}, "methods": {}}
        for method in spec.methods:
            if method not in HEURISTIC_POLICIES and method not in ckpts:
                log(f"[{name}] {method}: no checkpoint under {runs_dir / name}, skipped")
                continue
            pol = make_policy(method, scenario, ckpts, seed=spec.seed)
            entry["methods"][method] = evaluate_policy(pol, scenario, spec.rounds, spec.envs, spec.seed)
            log(f"[{name}] {method:15s} weighted reward {entry['methods'][method]['weighted_reward']:12.2f}")
        for method in ("tac", "happo", "dtac", "tl", "tl_transformer"):
            if method in ckpts:
                from edgepilot.cloud_trainer.checkpoint import load_checkpoint

                ck = load_checkpoint(ckpts[method])
                hist = ck["progress"].get("history", [])
                entry.setdefault("training", {})[method] = {
                    "wall_s": ck["progress"].get("wall_s"), "to_95pct": rounds_to_fraction(hist),
                    "schedule": training_schedule(method, ck),
                    "final_logged_reward": hist[-1]["weighted_reward"] if hist else None, "history": hist,
                }
        results["scenarios"][name] = entry
    # Table III
    sim_table = {}
    for name in similarity:
        ckpts = discover_checkpoints(runs_dir, name)
        if "tac" not in ckpts:
            continue
        tac = load_policy("tac", ckpts["tac"])
        sim_table[name] = {m: offload_kl(tac, load_policy(m, ckpts[m]), load_scenario(name)) for m in ("dtac", "tl_transformer", "tl") if m in ckpts}
        log(f"[{name}] KL to TAC: {sim_table[name]}")
    results["action_similarity_kl"] = sim_table
    # Fig. 11
    if generalization:
        src, dst = generalization
        a, b = discover_checkpoints(runs_dir, src), discover_checkpoints(runs_dir, dst)
        if "dtac" in a and "dtac" in b:
            scen = load_scenario(dst)
            trained_here = results["scenarios"].get(dst, {}).get("methods", {}).get("dtac") or evaluate_policy(load_policy("dtac", b["dtac"]), scen, spec.rounds, spec.envs, spec.seed)
            transferred = evaluate_policy(load_policy("dtac", a["dtac"]), scen, spec.rounds, spec.envs, spec.seed)
            results["generalization"] = generalization_entry(src, dst, trained_here, transferred)
            log(f"[generalization {src}->{dst}] trained there {trained_here['weighted_reward']:.2f}, transferred {transferred['weighted_reward']:.2f}")
    # Table IV
    for name in spec.scenarios:
        ckpts = discover_checkpoints(runs_dir, name)
        if ckpts:
            results.setdefault("complexity", {})[name] = complexity(ckpts, num_ues=load_scenario(name).max_ues)
    return results


def training_schedule(method: str, ckpt: dict) -> dict:
    """How a checkpoint was trained (from its stored config): seed and schedule."""
    cfg, prog = ckpt.get("train_config", {}), ckpt.get("progress", {})
    if method == "tac":
        rpe = cfg.get("rounds_per_episode") or ckpt.get("scenario", {}).get("episode", {}).get("rounds")
        return {"seed": cfg.get("seed"), "text": f"{prog.get('round')} rounds x {cfg.get('envs')} envs ({cfg.get('episodes')} episodes of {rpe}), "
                f"U={cfg.get('updates_per_round')}, lr {cfg.get('actor_lr')}/{cfg.get('critic_lr')}, reward floor {cfg.get('reward_clip')}"}
    if method == "happo":
        return {"seed": cfg.get("seed"), "text": f"{prog.get('iteration')} iterations x {cfg.get('rollout')} rounds x {cfg.get('envs')} envs, "
                f"{cfg.get('ppo_epochs')} PPO epochs, lr {cfg.get('actor_lr')}/{cfg.get('critic_lr')}"}
    return {"seed": cfg.get("seed"), "text": f"{prog.get('step')} steps x batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, from {ckpt.get('tac_checkpoint')}"}
