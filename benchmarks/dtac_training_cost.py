"""Benchmark: training cost of TAC (+ its DTAC transfer) vs HAPPO, measured in one run.

Trains, one after the other in this process (torch single-threaded), on one scenario
(default Fig. 5) with the trainers' default configurations:

1. TAC, Algorithm 1 lines 1-12 (all episodes, from scratch) -> RUNS/<scenario>/tac.pt
2. DTAC, lines 13-19, from that TAC                          -> RUNS/<scenario>/dtac.pt
3. HAPPO                                                     -> RUNS/<scenario>/happo.pt

and reports for TAC and HAPPO the wall time and the point of their training curve
where the (smoothed, noisy-exploration) weighted reward first covers 95% of the way
from the first to the final logged value (``edgepilot.cloud_trainer.evaluate.rounds_to_fraction``),
in the method's episodes (600 rounds, Table II), in simulator rounds per parallel
episode and in environment rounds (x the number of parallel episodes), and the TAC + DTAC
wall time against the 30-minute target. Prints the figures and writes JSON.

    .venv/bin/python benchmarks/dtac_training_cost.py --scenario fig5 \
        --out docs/figures/dtac/training_cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgepilot.cloud_trainer.baselines.happo import HAPPOConfig, train_happo
from edgepilot.cloud_trainer.dtac import TransferConfig, train_transfer
from edgepilot.cloud_trainer.environment import run_environment
from edgepilot.cloud_trainer.evaluate import rounds_to_fraction
from edgepilot.cloud_trainer.scenario import load_scenario
from edgepilot.cloud_trainer.tac import TACConfig, train_tac

TARGET_TAC_DTAC_S = 30 * 60


def _cost(name: str, history: list[dict], wall_s: float, envs: int) -> dict:
    r95 = rounds_to_fraction(history) or {}
    out = {"wall_s": wall_s, "final_logged_weighted_reward": history[-1]["weighted_reward"] if history else None,
           "logged_points": len(history), "envs": envs, "to_95pct": r95}
    if r95:
        rnd = history[r95["reached_index"]]["round"]
        out["to_95pct"] = {**r95, "rounds_per_env": rnd, "env_rounds": rnd * envs}
    print(f"{name:6s} wall {wall_s:8.1f} s  final logged reward {out['final_logged_weighted_reward']:10.2f}  "
          f"95% of final at episode {r95.get('episode', float('nan')):.2f} "
          f"({out['to_95pct'].get('env_rounds', 0)} env rounds, {r95.get('wall_s', float('nan')):.0f} s)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="fig5")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="docs/figures/dtac/training_cost.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-happo", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    scen = load_scenario(args.scenario)
    run_dir = Path(args.runs) / scen.name
    out = {"scenario": scen.name, "scenario_hash": scen.scenario_hash(), "seed": args.seed,
           "machine": {**run_environment(), "torch_threads": 1},
           "note": "wall times on a shared 2-core machine (other jobs running); curves are the noisy training rewards"}

    tac_cfg = TACConfig(seed=args.seed)
    t0 = time.perf_counter()
    tac = train_tac(scen, tac_cfg, run_dir)
    tac_wall = time.perf_counter() - t0
    out["tac"] = {**_cost("TAC", tac.history, tac_wall, tac_cfg.envs), "config": tac_cfg.to_dict()}

    tr_cfg = TransferConfig(seed=args.seed)
    t0 = time.perf_counter()
    dtac = train_transfer(scen, tac.checkpoint, tr_cfg, run_dir, method="dtac")
    dtac_wall = time.perf_counter() - t0
    out["dtac"] = {"wall_s": dtac_wall, "final_logged_weighted_reward": dtac.history[-1]["weighted_reward"] if dtac.history else None,
                   "config": tr_cfg.to_dict()}
    total = tac_wall + dtac_wall
    out["tac_plus_dtac_wall_s"] = total
    out["tac_plus_dtac_under_30_min"] = total < TARGET_TAC_DTAC_S
    print(f"TAC + DTAC wall {total:.1f} s ({total / 60:.1f} min; target < 30 min: {'met' if total < TARGET_TAC_DTAC_S else 'MISSED'})")

    if not args.skip_happo:
        h_cfg = HAPPOConfig(seed=args.seed)
        t0 = time.perf_counter()
        happo = train_happo(scen, h_cfg, run_dir)
        out["happo"] = {**_cost("HAPPO", happo.history, time.perf_counter() - t0, h_cfg.envs), "config": h_cfg.to_dict()}
    from edgepilot.cloud_trainer.plots import plot_curve

    for m in ("tac", "dtac", "happo"):
        if (run_dir / f"curve_{m}.csv").exists() and m in out:
            plot_curve([run_dir / f"curve_{m}.csv"], run_dir / f"curve_{m}.png", title=f"{m} on {scen.name}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
