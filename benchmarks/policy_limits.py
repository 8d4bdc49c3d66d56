"""Where the policies stand between the strong rules and the full-information optimizer.

For each scenario: the rules of ``cloud_trainer.baselines.rules`` fitted on training
rounds (simulator seed 0), then, on the results page's evaluation rounds (seed 1000,
``--rounds`` x 32 episodes), the weighted reward (27) of the optimizer, the rules, the
shipped DTAC and Local-only, the optimizer's lower bound on the same rounds, and each
method's gap to the optimizer. The optimizer costs about a second per round on 2 cores
(a HiGHS program and best-response sweeps), so the default is 10 rounds, not the page's 50.

    python benchmarks/policy_limits.py --scenarios fig5 fig6 fig7 --rounds 10

Prints a table and writes results/policy_limits.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from edgepilot.cloud_trainer.baselines import LocalPolicy  # noqa: E402
from edgepilot.cloud_trainer.baselines.optimizer import OptimizerPolicy, RoundOptimizer  # noqa: E402
from edgepilot.cloud_trainer.baselines.rules import RULES, RulePolicy, fit_rule  # noqa: E402
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator  # noqa: E402
from edgepilot.cloud_trainer.evaluate import load_policy  # noqa: E402
from edgepilot.cloud_trainer.play import evaluate_policy  # noqa: E402
from edgepilot.cloud_trainer.scenario import load_scenario  # noqa: E402
from edgepilot.models import SHIPPED_DTAC_CHECKPOINT  # noqa: E402

EVAL_SEED, ENVS = 1000, 32


def lower_bound(scenario, rounds: int) -> float:
    """Mean lower bound of the optimal objective over the evaluation rounds, played with
    the optimizer so the rounds (caches included) are the ones the optimizer saw."""
    sim = BatchSimulator(scenario, batch_size=ENVS, seed=EVAL_SEED)
    obs = sim.reset()
    opt = RoundOptimizer(scenario.network_params, scenario.radio.num_channels)
    bounds = []
    for _ in range(rounds):
        bounds.append(opt.lower_bound(obs.tasks, obs.local_state))
        step = sim.step(opt.solve(obs.tasks, obs.local_state).decision())
        obs = sim.reset() if step.episode_done else step.observation
    return float(np.concatenate(bounds).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=["fig5", "fig6", "fig7"])
    ap.add_argument("--rounds", type=int, default=10, help="evaluation rounds per episode (the page uses 50)")
    ap.add_argument("--bound", action="store_true", help="also compute the optimizer's lower bound (doubles the time)")
    ap.add_argument("--out", type=Path, default=Path("results/policy_limits.json"))
    args = ap.parse_args(argv)
    out = {"rounds": args.rounds, "envs": ENVS, "eval_seed": EVAL_SEED, "fit_seed": 0, "scenarios": {}}
    for name in args.scenarios:
        sc = load_scenario(name)
        row, fitted = {}, {}
        for rule in RULES:
            t = time.perf_counter()
            params, _ = fit_rule(rule, sc)
            fitted[rule] = {**params.__dict__, "fit_s": time.perf_counter() - t}
            row[rule] = evaluate_policy(RulePolicy(rule, params, sc.radio.num_channels), sc, rounds=args.rounds,
                                        envs=ENVS, seed=EVAL_SEED)["weighted_reward"]
        row["local"] = evaluate_policy(LocalPolicy(sc.radio.num_channels), sc, rounds=args.rounds, envs=ENVS,
                                       seed=EVAL_SEED)["weighted_reward"]
        row["dtac_shipped"] = evaluate_policy(load_policy("dtac", SHIPPED_DTAC_CHECKPOINT), sc, rounds=args.rounds,
                                              envs=ENVS, seed=EVAL_SEED)["weighted_reward"]
        t = time.perf_counter()
        row["optimizer"] = evaluate_policy(OptimizerPolicy(sc.network_params, sc.radio.num_channels), sc,
                                           rounds=args.rounds, envs=ENVS, seed=EVAL_SEED)["weighted_reward"]
        optimizer_s = time.perf_counter() - t
        entry = {"weighted_reward": row, "rule_params": fitted, "optimizer_seconds_per_round": optimizer_s / args.rounds,
                 "gap_to_optimizer_pct": {k: 100 * (v / row["optimizer"] - 1) for k, v in row.items()}}
        if args.bound:
            entry["lower_bound_objective"] = lower_bound(sc, args.rounds)
            entry["optimizer_gap_to_bound_pct"] = 100 * (-row["optimizer"] / entry["lower_bound_objective"] - 1)
        out["scenarios"][name] = entry
        print(f"{name} ({args.rounds} rounds x {ENVS}): " + ", ".join(f"{k} {v:.2f}" for k, v in row.items())
              + f"; optimizer {optimizer_s / args.rounds:.1f} s per round", flush=True)
        if args.bound:
            print(f"  lower bound of the objective {entry['lower_bound_objective']:.2f}"
                  f" (optimizer {entry['optimizer_gap_to_bound_pct']:.0f}% above it)", flush=True)
    print(f"wrote {write_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
