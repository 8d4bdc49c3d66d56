"""Benchmark: TAC vs the exhaustive per-round optimum on N = 4 UEs (one edge server).

Trains a TAC on a 1-edge-server, 4-UE variant of the Fig. 5 radio/compute setting,
then plays TAC, the exhaustive optimum (a, b on a 3-point grid), Local-only and
Greedy on the same simulator seed. Prints the figures and writes JSON.

    .venv/bin/python benchmarks/dtac_exhaustive_n4.py --out docs/figures/dtac/n4_exhaustive.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cloud_trainer.baselines.exhaustive import ExhaustivePolicy
from cloud_trainer.evaluate import evaluate_policy, load_policy, make_policy
from cloud_trainer.scenario import load_scenario, scenario_from_dict
from cloud_trainer.tac import TACConfig, train_tac


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/figures/dtac/n4_exhaustive.json")
    ap.add_argument("--runs", default="runs/n4")
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--rounds-per-episode", type=int, default=300)
    ap.add_argument("--eval-rounds", type=int, default=8)
    ap.add_argument("--eval-envs", type=int, default=4)
    args = ap.parse_args()
    base = load_scenario("fig5").model_dump(mode="json")
    base["name"], base["description"] = "n4", "Fig. 5 settings, 1 edge server with 4 UEs"
    base["topology"].update(num_edge_servers=1, ues_per_edge_min=4, ues_per_edge_max=4)
    scen = scenario_from_dict(base)
    t0 = time.perf_counter()
    res = train_tac(scen, TACConfig(episodes=args.episodes, rounds_per_episode=args.rounds_per_episode, envs=16), args.runs)
    train_s = time.perf_counter() - t0
    grid = (1 / 3, 2 / 3, 1.0)
    out = {"scenario": base, "tac_train_wall_s": train_s, "methods": {}}
    for name, pol in (("tac", load_policy("tac", res.checkpoint)),
                      ("exhaustive", ExhaustivePolicy(scen.network_params, scen.radio.num_channels, grid, grid)),
                      ("local", make_policy("local", scen)), ("greedy", make_policy("greedy", scen))):
        r = evaluate_policy(pol, scen, rounds=args.eval_rounds, envs=args.eval_envs, seed=4242)
        out["methods"][name] = {k: r[k] for k in ("weighted_reward", "avg_round_time_s", "avg_energy_per_task_j", "offload_preference")}
        print(f"{name:11s} weighted reward {r['weighted_reward']:10.3f}  T {r['avg_round_time_s']:8.3f} s  E/task {r['avg_energy_per_task_j']:7.3f} J")
    tac, opt = out["methods"]["tac"]["weighted_reward"], out["methods"]["exhaustive"]["weighted_reward"]
    out["tac_gap_to_optimum"] = (opt - tac) / abs(opt)
    print(f"TAC objective is {100 * out['tac_gap_to_optimum']:.1f}% above the exhaustive optimum (target: within 5%)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
