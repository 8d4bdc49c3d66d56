"""Throughput of the vectorized system model (eq. 2-13) on one core.

Measures UE-rounds per second of ``edgepilot.edge_agent.system_model.evaluate_round`` for a
batch of rounds with N UEs, and of the straightforward per-UE Python loop
(``edgepilot.edge_agent.system_model_reference``) on the same rounds in the same run.
Prints the medians and their ratio, and writes them to JSON.

    python benchmarks/simulator_throughput.py [--ues 30] [--batch 256] [--out results/simulator_throughput.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, pin_one_core, repeat_timed, write_json  # noqa: E402

pin_one_core()

import numpy as np  # noqa: E402

from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, random_decision  # noqa: E402
from edgepilot.cloud_trainer.scenario import scenario_from_dict  # noqa: E402
from edgepilot.edge_agent.system_model import evaluate_round, retain_freed_heap  # noqa: E402
from edgepilot.edge_agent.system_model_reference import evaluate_round_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ues", type=int, default=30, help="UEs per round (N)")
    ap.add_argument("--batch", type=int, default=256, help="rounds evaluated per call")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--loop-rounds", type=int, default=16, help="rounds timed for the per-UE loop baseline")
    ap.add_argument("--out", default="results/simulator_throughput.json")
    ap.add_argument("--glibc-default-trim", action="store_true", help="leave glibc's 128 kB trim threshold (what a plain numpy script gets)")
    args = ap.parse_args()
    if not args.glibc_default_trim:
        retain_freed_heap()  # as the simulator does (see edgepilot.edge_agent.system_model.retain_freed_heap)

    # Fig. 5 topology with exactly N UEs: 5 edge servers, N / 5 UEs each.
    per_edge = max(1, args.ues // 5)
    scen = scenario_from_dict({"name": "bench", "topology": {"num_edge_servers": 5, "ues_per_edge_min": per_edge, "ues_per_edge_max": per_edge}})
    sim = BatchSimulator(scen, batch_size=args.batch, seed=0)
    obs = sim.reset()
    n = obs.edge_id.shape[1]
    decision = random_decision(np.random.default_rng(1), obs.edge_id.shape, scen.radio.num_channels)
    params, tasks = scen.network_params, obs.tasks

    rounds = []
    for b in range(min(args.loop_rounds, args.batch)):
        ues = [
            dict(
                edge=int(tasks.edge[b, i]), gain=float(tasks.gain[b, i]), input_bits=float(tasks.input_bits[b, i]),
                output_bits=float(tasks.output_bits[b, i]), cycles_per_bit=float(tasks.cycles_per_bit[b, i]),
                cached=float(tasks.cached[b, i]), offload=int(decision.offload[b, i]), channel=int(decision.channel[b, i]),
                power_ratio=float(decision.transmit_power_ratio[b, i]), cpu_ratio=float(decision.cpu_freq_ratio[b, i]),
            )
            for i in range(n)
        ]
        rounds.append((ues, tasks.edge_cloud_gain[b].tolist()))

    # Interleave the two so a change of machine load hits both alike.
    vec_times, loop_times = [], []
    for _ in range(args.repeats):
        vec_times += repeat_timed(lambda: evaluate_round(params, tasks, decision), 1, warmup=0)
        loop_times += repeat_timed(lambda: [evaluate_round_loop(params, u, g) for u, g in rounds], 1, warmup=0)
    vec_rate = args.batch * n / median(vec_times)
    loop_rate = len(rounds) * n / median(loop_times)

    # the two agree on the rounds timed
    vec = evaluate_round(params, tasks, decision)
    ref = [evaluate_round_loop(params, u, g)["objective"] for u, g in rounds]
    max_rel_err = float(np.max(np.abs(vec.objective[: len(rounds)] - ref) / np.abs(ref)))

    result = {
        "benchmark": "simulator_throughput",
        "ues": n,
        "glibc_trim_threshold": "default 128 kB" if args.glibc_default_trim else "64 MB (retain_freed_heap)",
        "batch": args.batch,
        "vectorized_ue_rounds_per_s_median": vec_rate,
        "vectorized_call_s_median": median(vec_times),
        "per_ue_loop_ue_rounds_per_s_median": loop_rate,
        "speedup_vs_loop": vec_rate / loop_rate,
        "max_relative_objective_difference": max_rel_err,
        "target": {"ue_rounds_per_s": 1_000_000, "speedup_vs_loop": 50},
    }
    result["meets_target"] = vec_rate >= 1e6 and vec_rate / loop_rate >= 50
    path = write_json(args.out, result)
    trim = "glibc default trim threshold" if args.glibc_default_trim else "freed heap retained (retain_freed_heap)"
    print(f"system model, N={n} UEs, batch {args.batch}, one core, {trim}")
    print(f"  vectorized      : {vec_rate:,.0f} UE-rounds/s (median of {args.repeats} calls, {median(vec_times) * 1e3:.2f} ms per call)")
    print(f"  per-UE loop     : {loop_rate:,.0f} UE-rounds/s (same rounds, same run)")
    print(f"  speed-up        : {vec_rate / loop_rate:.0f}x   (targets: >= 1,000,000 UE-rounds/s and >= 50x)")
    print(f"  agreement       : max relative objective difference {max_rel_err:.1e}")
    print(f"  wrote {path}")


if __name__ == "__main__":
    main()
