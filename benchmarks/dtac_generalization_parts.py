"""Benchmark: which part of a fig6-trained DTAC's decision loses on fig7 (Fig. 11).

Plays the fig6-trained DTAC, the fig7-trained DTAC, and the fig6 one with one part of
its decision taken from the fig7 one (the CPU frequency ratio b of its local UEs; its
offload decisions), on both scenarios, with the evaluation's rounds. Prints the
figures and writes JSON.

    .venv/bin/python benchmarks/dtac_generalization_parts.py --runs /tmp/exp/seed1 --out results/generalization_parts_seed1.json

``--runs`` holds ``fig6/dtac.pt`` and ``fig7/dtac.pt`` (a seed check's layout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from cloud_trainer.envs.simulator import BatchSimulator  # noqa: E402
from cloud_trainer.evaluate import evaluate_policy, headline, load_policy  # noqa: E402
from cloud_trainer.scenario import load_scenario  # noqa: E402
from edge_agent.system_model import LOCAL, Decision  # noqa: E402


class Swapped:
    """The fig6 DTAC's decision with one part replaced by the fig7 DTAC's."""

    def __init__(self, own, other, part: str) -> None:
        self.own, self.other, self.part = own, other, part

    def act(self, obs) -> Decision:
        d, o = self.own.act(obs), self.other.act(obs)
        if self.part == "local_cpu_ratio":
            b = np.where(d.offload == LOCAL, o.cpu_freq_ratio, d.cpu_freq_ratio)
            return Decision(d.offload, d.channel, d.transmit_power_ratio, b)
        return Decision(o.offload, d.channel, d.transmit_power_ratio, d.cpu_freq_ratio)


def local_cpu_ratio(policy, scenario, rounds: int, envs: int, seed: int) -> float:
    """Mean b of the UEs the policy keeps local, on the first rounds of the evaluation."""
    sim = BatchSimulator(scenario, batch_size=envs, seed=seed)
    obs, values = sim.reset(), []
    for _ in range(rounds):
        d = policy.act(obs)
        values.append(d.cpu_freq_ratio[(d.offload == LOCAL) & obs.ue_mask])
        step = sim.step(d)
        obs = sim.reset() if step.episode_done else step.observation
    values = np.concatenate(values)
    return float(values.mean()) if values.size else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True, help="directory with fig6/dtac.pt and fig7/dtac.pt")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--envs", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", default="results/generalization_parts.json")
    args = ap.parse_args()
    for sc in ("fig6", "fig7"):
        if not (args.runs / sc / "dtac.pt").is_file():
            ap.error(f"{args.runs / sc / 'dtac.pt'} not found (train it with: edgepilot train dtac --scenario {sc})")
    d6, d7 = (load_policy("dtac", args.runs / sc / "dtac.pt") for sc in ("fig6", "fig7"))
    policies = {"dtac_fig6": d6, "dtac_fig7": d7,
                "fig6_with_fig7_local_cpu_ratio": Swapped(d6, d7, "local_cpu_ratio"),
                "fig6_with_fig7_offload": Swapped(d6, d7, "offload")}
    out = {"runs": str(args.runs), "eval": {"rounds": args.rounds, "envs": args.envs, "seed": args.seed}, "scenarios": {}}
    for sc in ("fig6", "fig7"):
        scen = load_scenario(sc)
        rows = out["scenarios"][sc] = {}
        for name, pol in policies.items():
            r = headline(evaluate_policy(pol, scen, rounds=args.rounds, envs=args.envs, seed=args.seed))
            if name.startswith("dtac"):
                r["local_cpu_ratio_mean"] = local_cpu_ratio(pol, scen, min(10, args.rounds), args.envs, args.seed)
            rows[name] = r
            pref = r["offload_preference"]
            extra = f"  local b {r['local_cpu_ratio_mean']:.2f}" if "local_cpu_ratio_mean" in r else ""
            print(f"{sc} {name:32s} weighted reward {r['weighted_reward']:9.2f}  T {r['avg_round_time_s']:6.2f} s  "
                  f"E/task {r['avg_energy_per_task_j']:6.2f} J  local/edge/cloud {pref['local']:.2f}/{pref['edge']:.2f}/{pref['cloud']:.2f}{extra}")
    write_json(args.out, out)


if __name__ == "__main__":
    main()
