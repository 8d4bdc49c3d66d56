"""Experiment: the TAC critic's reward floor (``TACConfig.reward_clip``).

The critic regresses ``max(r, -floor) / 10``. With the default floor 100 an offload
into a deep fade (10^3-10^5 s) looks only ~5x worse to the critic than a normal local
round, while it dominates the evaluated mean reward (27). This script trains TAC (full
default schedule, same seed) and its DTAC with another floor into
``RUNS/exp_floor<F>/<scenario>/`` and evaluates them beside the default-floor
checkpoints of ``RUNS/<scenario>/`` with the evaluation's settings (50 rounds x 32
envs, seed 1000). Prints the figures and writes JSON.

    .venv/bin/python benchmarks/dtac_reward_floor.py --scenario fig5 --floor 1000 \
        --out docs/figures/dtac/reward_floor_fig5.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgepilot.cloud_trainer.dtac import TransferConfig, train_transfer
from edgepilot.cloud_trainer.evaluate import load_policy
from edgepilot.cloud_trainer.play import evaluate_policy, headline
from edgepilot.cloud_trainer.scenario import load_scenario
from edgepilot.cloud_trainer.tac import TACConfig, train_tac

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="fig5")
    ap.add_argument("--floor", type=float, default=1000.0)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="docs/figures/dtac/reward_floor_fig5.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-rounds", type=int, default=50)
    ap.add_argument("--eval-envs", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scen = load_scenario(args.scenario)
    exp_dir = Path(args.runs) / f"exp_floor{args.floor:g}" / scen.name
    t0 = time.perf_counter()
    tac = train_tac(scen, TACConfig(seed=args.seed, reward_clip=args.floor), exp_dir)
    tac_s = time.perf_counter() - t0
    dtac = train_transfer(scen, tac.checkpoint, TransferConfig(seed=args.seed), exp_dir, method="dtac")
    out = {"scenario": scen.name, "seed": args.seed, "floor": args.floor, "tac_wall_s": tac_s, "dtac_wall_s": dtac.wall_s,
           "eval": {"rounds": args.eval_rounds, "envs": args.eval_envs, "seed": 1000}, "results": {}}
    default_dir = Path(args.runs) / scen.name
    for label, d in ((f"floor {args.floor:g}", exp_dir), ("floor 100 (default)", default_dir)):
        for m in ("tac", "dtac"):
            if not (d / f"{m}.pt").exists():
                continue
            r = evaluate_policy(load_policy(m, d / f"{m}.pt"), scen, args.eval_rounds, args.eval_envs, 1000)
            out["results"][f"{m} / {label}"] = headline(r)
            print(f"{m:5s} {label:20s} weighted reward {r['weighted_reward']:10.2f}  median {r['weighted_reward_median']:9.2f}  "
                  f"T {r['avg_round_time_s']:9.2f} s  E/task {r['avg_energy_per_task_j']:6.2f} J")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
