"""Benchmark: which part of a fig6-trained DTAC's decision loses on fig7 (Fig. 11).

Plays the fig6-trained DTAC, the fig7-trained DTAC, and the fig6 one with one part of
its decision taken from the fig7 one (the CPU frequency ratio b of its local UEs; its
offload decisions), on both scenarios, with the evaluation's rounds. For the two DTACs
it also says how they set b on the UEs they keep local: the mean, its correlation with
the UE's full-speed local time T1*, and how many times faster than the round's pace
(b / (T1* / round time); 1 = the task ends with the round). Prints the figures and
writes JSON.

    .venv/bin/python benchmarks/dtac_generalization_parts.py --runs runs/seed1 --out experiments/dtac/generalization_parts/generalization_parts_seed1_xeon.json

``--runs`` holds ``fig6/dtac.pt`` and ``fig7/dtac.pt`` (a seed check's layout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from edgepilot.cloud_trainer.envs.simulator import BatchSimulator  # noqa: E402
from edgepilot.cloud_trainer.evaluate import load_policy  # noqa: E402
from edgepilot.cloud_trainer.play import evaluate_policy, headline  # noqa: E402
from edgepilot.cloud_trainer.models import LOCAL_TIME_FIELD  # noqa: E402
from edgepilot.cloud_trainer.scenario import load_scenario  # noqa: E402
from edgepilot.edge_agent.system_model import LOCAL, Decision  # noqa: E402


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


def local_cpu_ratio(policy, scenario, rounds: int, envs: int, seed: int) -> dict:
    """How the policy sets b on the UEs it keeps local, on the first rounds of the
    evaluation: the mean b; the correlation of b with the UE's full-speed local time T1*
    (1: b proportional to T1*); the median of b / (T1* / round time), how many times
    faster than "finish with the round" the UE runs (1: exactly with it)."""
    sim = BatchSimulator(scenario, batch_size=envs, seed=seed)
    obs, b, t1, speedup = sim.reset(), [], [], []
    for _ in range(rounds):
        d = policy.act(obs)
        local = (d.offload == LOCAL) & obs.ue_mask
        step = sim.step(d)
        t_local = obs.local_state[..., LOCAL_TIME_FIELD]
        b.append(d.cpu_freq_ratio[local])
        t1.append(t_local[local])
        speedup.append((d.cpu_freq_ratio * step.result.round_time_s[:, None] / np.maximum(t_local, 1e-12))[local])
        obs = sim.reset() if step.episode_done else step.observation
    b, t1, speedup = (np.concatenate(v) for v in (b, t1, speedup))
    if not b.size:
        return {"local_cpu_ratio_mean": float("nan"), "local_cpu_ratio_t1_corr": float("nan"), "local_speedup_median": float("nan")}
    corr = float(np.corrcoef(t1, b)[0, 1]) if b.size > 1 and b.std() > 0 and t1.std() > 0 else float("nan")
    return {"local_cpu_ratio_mean": float(b.mean()), "local_cpu_ratio_t1_corr": corr, "local_speedup_median": float(np.median(speedup))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True, help="directory with fig6/dtac.pt and fig7/dtac.pt")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--envs", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", default="experiments/dtac/generalization_parts/generalization_parts.json")
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
                r.update(local_cpu_ratio(pol, scen, min(10, args.rounds), args.envs, args.seed))
            rows[name] = r
            pref = r["offload_preference"]
            extra = (f"  local b {r['local_cpu_ratio_mean']:.2f} (corr. with T1* {r['local_cpu_ratio_t1_corr']:.2f}, "
                     f"{r['local_speedup_median']:.2f}x the round's pace)") if "local_cpu_ratio_mean" in r else ""
            print(f"{sc} {name:32s} weighted reward {r['weighted_reward']:9.2f}  T {r['avg_round_time_s']:6.2f} s  "
                  f"E/task {r['avg_energy_per_task_j']:6.2f} J  local/edge/cloud {pref['local']:.2f}/{pref['edge']:.2f}/{pref['cloud']:.2f}{extra}")
    write_json(args.out, out)


if __name__ == "__main__":
    main()
