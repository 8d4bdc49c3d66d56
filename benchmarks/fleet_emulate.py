"""Fleet benchmark: N UE agents x R rounds on this machine, DTAC vs a centralized policy.

    .venv/bin/python benchmarks/fleet_emulate.py [--ues 100] [--edges 5] [--rounds 50]

Runs ``edgepilot emulate`` twice on a real Mosquitto: ``--policy dtac`` (the shipped
DTAC, exported and signed as ``make demo`` does) with a broker restart in the middle
of round R/2, and ``--policy centralized`` (every UE sends its local state, the
controller decides and commands each UE). Prints and writes (results/fleet_emulate.json)
lost decisions, decision latency p50 / p99 (task received -> decision published), round
time measured vs the simulator's prediction, and MQTT messages and bytes per round.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_json  # noqa: E402
from edgepilot.emulation.coordinator import EmulateConfig, format_table, run_emulation  # noqa: E402
from edgepilot.emulation.policy import signed_shipped_bundle  # noqa: E402

KEYS = ("lost_decisions", "decision_messages_missing", "decision_duplicates", "late_decisions", "decision_window_s", "telemetry_out_of_order", "fallbacks", "decision_latency_p50_s",
        "decision_latency_p99_s", "end_to_end_decision_p50_s", "end_to_end_decision_p99_s", "mean_measured_round_time_s",
        "mean_predicted_round_time_s", "round_time_rel_error_mean", "round_time_rel_error_max", "rounds_within_10pct",
        "mean_measured_energy_j", "mean_predicted_energy_j", "offload_mix", "messages_per_round", "bytes_per_round",
        "messages_by_topic_per_round", "bytes_by_topic_per_round", "wall_seconds_per_round", "resent_tasks")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ues", type=int, default=100)
    ap.add_argument("--edges", type=int, default=20)  # 5 UEs per edge server, as in Fig. 5 (4-6)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--time-scale", type=float, default=0.1)
    ap.add_argument("--wire-scale", type=float, default=1.0)
    ap.add_argument("--agent-procs", type=int, default=2)
    ap.add_argument("--no-restart", action="store_true")
    ap.add_argument("--deadline-factor", type=float, default=EmulateConfig.model_fields["deadline_factor"].default,
                    help="task deadline = factor x the UE's local time T1*(0); 0: none")
    ap.add_argument("--only", choices=("dtac", "centralized"), default=None)
    ap.add_argument("--out", type=Path, default=Path("results/fleet_emulate.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    bundle, pub = signed_shipped_bundle(Path("runs/demo"))
    results = {}
    for policy in ("dtac", "centralized"):
        if a.only and policy != a.only:
            continue
        dtac = policy == "dtac"
        cfg = EmulateConfig(ues=a.ues, edges=a.edges, rounds=a.rounds, policy=policy,
                            bundle=str(bundle) if dtac else None, trusted_keys=[str(pub)] if dtac else [],
                            time_scale=a.time_scale, wire_scale=a.wire_scale, broker_kind="mosquitto",
                            agent_procs=a.agent_procs, out=f"runs/bench-fleet/{policy}", deadline_factor=a.deadline_factor,
                            restart_broker_at=None if (a.no_restart or not dtac) else a.rounds // 2)
        start = time.time()
        s = run_emulation(cfg, progress=lambda m, policy=policy: print(f"[{policy}] {m}", flush=True))
        print(f"\n== {policy}: {a.ues} UEs x {a.rounds} rounds ({time.time() - start:.0f} s wall)")
        print(format_table(s))
        results[policy] = {k: s[k] for k in KEYS} | {"broker_restart_at_round": cfg.restart_broker_at}
    if len(results) == 2:
        d, c = results["dtac"], results["centralized"]
        print(f"\nsignalling per round: DTAC {d['messages_per_round']:.0f} msgs / {d['bytes_per_round'] / 1e3:.1f} kB, "
              f"centralized {c['messages_per_round']:.0f} msgs / {c['bytes_per_round'] / 1e3:.1f} kB")
    write_json(a.out, {"ues": a.ues, "edges": a.edges, "rounds": a.rounds, "time_scale": a.time_scale, "deadline_factor": a.deadline_factor,
                       "wire_scale": a.wire_scale, "broker": "mosquitto", "results": results})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
