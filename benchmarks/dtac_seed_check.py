"""Do the fig6 and generalization results hold for another training seed?

The results page (``edgepilot evaluate``) is one training run per method (seed 0). This
script trains, with another seed and the default schedules, everything the fig6 and
generalization targets compare: on fig6 TAC, DTAC, TL-transformer, TL and HAPPO, on
fig7 TAC and DTAC, into ``RUNS/<scenario>/`` (a checkpoint already there is reused, so
an interrupted run continues where it stopped). It then evaluates them with the
results page's settings (50 rounds x 32 envs, simulator seed 1000; the heuristics do
not depend on the training seed and are evaluated the same way), checks the same
targets, prints them and writes JSON. ``edgepilot evaluate`` takes the JSON in
(``docs/figures/dtac/seed_check_<seed>.json``): a target counts as met only if it is
met for every training seed checked, except generalization, which from five runs on is
judged by its expected change over all of them (``evaluate.generalization_across_runs``).

    .venv/bin/python benchmarks/dtac_seed_check.py --seed 1 --runs runs/seed1 \
        --out docs/figures/dtac/seed_check_1.json

About 25 minutes of one core for the training (TAC ~8.5 min per scenario). ``--tac-config
FILE`` trains both TACs with a candidate setting (YAML of TACConfig fields, stored in the
result as ``tac_overrides``), ``--dtac-config FILE`` both DTACs (TransferConfig fields,
``dtac_overrides``); write such results to experiments/dtac/candidates/, not docs/figures/dtac, whose checks are the
defaults'. ``--reuse-from DIR`` copies from a default run's RUNS (same seed) every
checkpoint the candidate does not change, so a DTAC candidate retrains the two DTACs only
(~4 min) and a TAC candidate everything but HAPPO.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from edgepilot.cloud_trainer.baselines.happo import HAPPOConfig, train_happo  # noqa: E402
from edgepilot.cloud_trainer.dtac import TransferConfig, train_transfer  # noqa: E402
from edgepilot.cloud_trainer.evaluate import discover_checkpoints, generalization_entry, make_policy
from edgepilot.cloud_trainer.results_page import target_checks
from edgepilot.cloud_trainer.play import evaluate_policy, headline
from edgepilot.cloud_trainer.scenario import load_scenario  # noqa: E402
from edgepilot.cloud_trainer.tac import TACConfig, train_tac  # noqa: E402
from edgepilot.config import ConfigError, read_config_file  # noqa: E402

TRAIN = {"fig6": ("tac", "dtac", "tl_transformer", "tl", "happo"), "fig7": ("tac", "dtac")}
HEURISTICS = ("greedy", "local", "random")


def reusable(tac_overrides: dict | None, dtac_overrides: dict | None) -> dict[str, tuple[str, ...]]:
    """Which checkpoints a candidate setting leaves as the default run trained them: a TAC
    setting changes every method that reads the TAC (DTAC, TL, TL-transformer), so only
    HAPPO stays; a DTAC setting changes the two DTACs only."""
    if tac_overrides:
        return {"fig6": ("happo",), "fig7": ()}
    drop = ("dtac",) if dtac_overrides else ()
    return {name: tuple(m for m in methods if m not in drop) for name, methods in TRAIN.items()}


def reuse_checkpoints(source: Path, runs: Path, tac_overrides: dict | None, dtac_overrides: dict | None, log) -> list[str]:
    """Copy into RUNS the checkpoints of SOURCE (a default run's RUNS) that the candidate
    setting does not change and RUNS does not have yet, so that only the candidate's part
    is retrained. Returns the copied ones as "<scenario>/<method>"."""
    copied = []
    for name, methods in reusable(tac_overrides, dtac_overrides).items():
        for method in methods:
            src, dst = source / name / f"{method}.pt", runs / name / f"{method}.pt"
            if dst.exists():
                continue
            if not src.exists():
                raise SystemExit(f"error: --reuse-from {source}: {src} is missing (train the default run there first)")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(f"{name}/{method}")
            log(f"[{name}] {method}: copied from {src}")
    return copied


def train_missing(runs: Path, seed: int, log, tac_overrides: dict | None = None, dtac_overrides: dict | None = None) -> dict:
    walls = {}
    for name, methods in TRAIN.items():
        scen, out = load_scenario(name), runs / name
        for method in methods:
            if (out / f"{method}.pt").exists():
                log(f"[{name}] {method}: {out / f'{method}.pt'} exists, reused")
                continue
            log(f"[{name}] training {method} (seed {seed})")
            t0 = time.perf_counter()
            if method == "tac":
                train_tac(scen, TACConfig.from_dict({**(tac_overrides or {}), "seed": seed}), out)
            elif method == "happo":
                train_happo(scen, HAPPOConfig(seed=seed), out)
            else:
                extra = (dtac_overrides or {}) if method == "dtac" else {}
                train_transfer(scen, out / "tac.pt", TransferConfig.model_validate({**extra, "seed": seed}), out, method=method)
            walls[f"{name}/{method}"] = time.perf_counter() - t0
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="training seed (the results page is seed 0)")
    ap.add_argument("--runs", type=Path, default=None, help="training output root (default runs/seed<SEED>)")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default docs/figures/dtac/seed_check_<SEED>.json)")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--envs", type=int, default=32)
    ap.add_argument("--eval-seed", type=int, default=1000)
    ap.add_argument("--tac-config", type=Path, default=None,
                    help="YAML of TACConfig fields for both TACs (a candidate setting; the page's checks use the defaults, "
                         "so write such a run's JSON to experiments/dtac/candidates/)")
    ap.add_argument("--dtac-config", type=Path, default=None,
                    help="YAML of TransferConfig fields for both DTACs (a candidate setting, as --tac-config; the other "
                         "checkpoints of RUNS are reused; --reuse-from fills RUNS from a default run so the DTACs alone are compared)")
    ap.add_argument("--reuse-from", type=Path, default=None, metavar="DIR",
                    help="a default run's RUNS (same seed): copy from it every checkpoint the candidate setting does not "
                         "change (with --dtac-config all but the DTACs, with --tac-config HAPPO only), so only the "
                         "candidate's part is retrained")
    args = ap.parse_args()
    try:  # checked before any training starts
        tac_overrides = read_config_file(args.tac_config) if args.tac_config else {}
        dtac_overrides = read_config_file(args.dtac_config) if args.dtac_config else {}
        TACConfig.model_validate({**tac_overrides, "seed": args.seed})
        TransferConfig.model_validate({**dtac_overrides, "seed": args.seed})
    except (ConfigError, ValueError) as err:
        ap.error(str(err))
    runs = args.runs or Path("runs") / f"seed{args.seed}"
    out = args.out or Path("docs/figures/dtac") / f"seed_check_{args.seed}.json"
    torch.set_num_threads(1)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    reused = reuse_checkpoints(args.reuse_from, runs, tac_overrides, dtac_overrides, log) if args.reuse_from else []
    walls = train_missing(runs, args.seed, log, tac_overrides, dtac_overrides)
    fig6, fig7 = load_scenario("fig6"), load_scenario("fig7")
    ck6, ck7 = discover_checkpoints(runs, "fig6"), discover_checkpoints(runs, "fig7")

    def ev(pol, scen) -> dict:
        return headline(evaluate_policy(pol, scen, args.rounds, args.envs, args.eval_seed))

    methods = {}
    for m in (*TRAIN["fig6"], *HEURISTICS):
        methods[m] = ev(make_policy(m, fig6, ck6, seed=args.eval_seed), fig6)
        log(f"[fig6] {m:15s} weighted reward {methods[m]['weighted_reward']:10.2f}")
    there = ev(make_policy("dtac", fig7, ck7), fig7)
    moved = ev(make_policy("dtac", fig7, ck6), fig7)
    gen = generalization_entry("fig6", "fig7", there, moved)
    targets = target_checks({"scenarios": {"fig6": {"methods": methods}}, "generalization": gen})
    result = {"benchmark": "dtac_seed_check", "run_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "training_seed": args.seed,
              "runs": str(runs), "tac_overrides": tac_overrides, "dtac_overrides": dtac_overrides,
              "reused_from": str(args.reuse_from) if args.reuse_from else None, "reused": reused, "train_wall_s": walls, "eval": {"rounds": args.rounds, "envs": args.envs, "seed": args.eval_seed},
              "fig6": methods, "fig7_tac": ev(make_policy("tac", fig7, ck7), fig7), "generalization": gen, "targets": targets}
    print(f"\ntraining seed {args.seed}: fig6 weighted reward (27), {args.rounds} rounds x {args.envs} envs, seed {args.eval_seed}")
    for m, r in methods.items():
        print(f"  {m:15s} {r['weighted_reward']:10.2f}")
    print(f"  generalization: DTAC trained on fig7 {there['weighted_reward']:.2f}, trained on fig6 {moved['weighted_reward']:.2f} "
          f"({100 * gen['relative_change']:+.1f}%)")
    for t in targets:
        print(f"  {'met' if t['met'] else 'MISSED':6s} {t['target']}: {t['value']}")
    print(f"wrote {write_json(out, result)}")


if __name__ == "__main__":
    main()
