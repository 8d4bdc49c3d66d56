"""The results page: the issue's targets checked on the evaluation JSON and the benchmark
scripts' JSON beside it, and ``docs/results-dtac.md`` written from them (generated, do
not edit). ``edgepilot evaluate`` evaluates (:mod:`.evaluate`), then comes here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepilot.cloud_trainer.environment import describe as describe_environment
from edgepilot.cloud_trainer.evaluate import LABELS, METHOD_ORDER, relative_change
def seed_check_label(check: dict, checks: list[dict]) -> str:
    """"1", and where the same seed was checked on two machines (a seed names one run
    only on one machine, docs/training.md) also which machine: "1 on <CPU>", with its
    vector extension where recorded ("1 on AMD EPYC (avx512)": one model name has run
    on hosts that trained different runs)."""
    label = str(check["training_seed"])
    if sum(c["training_seed"] == check["training_seed"] for c in checks) > 1:
        machine = check.get("machine") or {}
        label += f" on {machine.get('cpu_model') or 'an earlier, unrecorded machine'}"
        label += f" ({machine['vector_isa']})" if machine.get("vector_isa") else ""
    return label


def refresh_benchmarks(results: dict, out_dir: Path) -> dict:
    """Take in the benchmark scripts' JSON found in ``out_dir`` (benchmarks/dtac_exhaustive_n4.py,
    dtac_training_cost.py, ...), recheck the issue's targets and write ``results.json``."""
    out_dir = Path(out_dir)
    for key, fname in BENCHMARK_FILES.items():
        if (out_dir / fname).exists():
            results.setdefault("benchmarks", {})[key] = json.loads((out_dir / fname).read_text())
    seeds = [json.loads(f.read_text()) for f in sorted(out_dir.glob("seed_check_*.json"))]  # benchmarks/dtac_seed_check.py
    if seeds:
        results.setdefault("benchmarks", {})["seed_checks"] = sorted(seeds, key=lambda s: s["training_seed"])
    results["targets"] = target_checks(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


BENCHMARK_FILES = {"n4_exhaustive": "n4_exhaustive.json", "n4_exhaustive_2edge": "n4_exhaustive_2edge.json", "training_cost": "training_cost.json", "reward_floor": "reward_floor_fig5.json"}


# the N = 4 benchmark's two topologies (benchmarks/dtac_exhaustive_n4.py --edge-servers 1 | 2)
N4_BENCHMARKS = {"n4_exhaustive": "one edge server", "n4_exhaustive_2edge": "two edge servers"}


def target_checks(results: dict, scenario: str = "fig6") -> list[dict]:
    """The issue's benchmark targets, each with the measured figure and met / missed."""
    out = []
    methods = results.get("scenarios", {}).get(scenario, {}).get("methods", {})
    if "dtac" in methods and "tac" in methods:
        d, t = methods["dtac"]["weighted_reward"], methods["tac"]["weighted_reward"]
        gap = (t - d) / abs(t)  # > 0: DTAC below TAC
        note = "; DTAC above TAC by more than 10%: the centralized TAC is not converged, so this is no ceiling" if gap < -0.10 else ""
        out.append({"target": f"{scenario}: DTAC weighted reward within 10% of TAC", "value": f"DTAC {d:.2f} vs TAC {t:.2f} (DTAC {100 * -gap:+.1f}%{note})",
                    "met": gap <= 0.10})
    if "dtac" in methods:
        d = methods["dtac"]["weighted_reward"]
        others = [m for m in ("happo", "tl", "tl_transformer", "greedy", "local", "random") if m in methods]
        beaten = [m for m in others if d > methods[m]["weighted_reward"]]
        lost = [LABELS[m] for m in others if m not in beaten]
        out.append({"target": f"{scenario}: DTAC better than " + ", ".join(LABELS[m] for m in others),
                    "value": "beats all" if not lost else "not better than " + ", ".join(lost), "met": not lost and len(others) == 6})
    gen = results.get("generalization")
    if gen:
        weak = (f" (the DTAC trained on {gen['tested_on']} is the weaker one by more than 10%, so this run says little about "
                "generalization)") if gen["relative_change"] > 0.10 else ""
        out.append({"target": f"generalization: DTAC trained on {gen['trained_on']} loses at most 10% on {gen['tested_on']}",
                    "value": f"{100 * gen['relative_change']:+.1f}%{weak}", "met": gen["relative_change"] >= -0.10})
    for key, cells in N4_BENCHMARKS.items():
        n4 = results.get("benchmarks", {}).get(key)
        if n4:
            # met by TAC's own decisions; the critic's decision-time search (ours) is shown beside it
            refined = f"; TAC + the critic's search {100 * n4['refine']['gap_to_optimum']:.1f}%" if n4.get("refine") else ""
            out.append({"target": f"N=4 ({cells}): TAC within 5% of the exhaustive optimum",
                        "value": f"TAC {100 * n4['tac_gap_to_optimum']:.1f}% below the optimum's reward{refined}", "met": n4["tac_gap_to_optimum"] <= 0.05})
    cost = results.get("benchmarks", {}).get("training_cost")
    if cost and "tac_plus_dtac_wall_s" in cost:
        out.append({"target": f"{cost['scenario']}: full TAC + DTAC training under 30 min", "value": f"{cost['tac_plus_dtac_wall_s'] / 60:.1f} min",
                    "met": cost["tac_plus_dtac_wall_s"] < 1800})
    # other training seeds (benchmarks/dtac_seed_check.py): met only if met for every seed;
    # generalization, from GENERALIZATION_MIN_RUNS runs on, by its expected change over them
    checks = results.get("benchmarks", {}).get("seed_checks", [])
    for row in out:
        row["runs"] = [row["met"]]  # this run's verdict, then each seed check's
    for check in checks:
        again = {c["target"]: c for c in check["targets"]}
        for row in out:
            if row["target"] in again:
                other = again[row["target"]]
                row.setdefault("seeds", []).append({"seed": seed_check_label(check, checks), "value": other["value"], "met": other["met"]})
                row["runs"].append(other["met"])
                row["met"] = row["met"] and other["met"]
    across = generalization_across_runs(results)
    for row in (r for r in out if across and r["target"].startswith("generalization:")):
        row["across_runs"] = across
        row["across_runs_sentence"] = across_runs_sentence(across, results["generalization"]["tested_on"])
        row["met"] = across["ci95"][0] >= -0.10
    return out


# The generalization verdict over several training runs (ours): each run's fig6 and fig7
# DTACs are two trainings, and the fig7-trained one alone spreads by more than the 10%
# margin across training seeds (docs/training.md, "Findings worth knowing"),
# so one run's ratio says as much about which fig7 DTAC the seed drew as about the
# transfer. From GENERALIZATION_MIN_RUNS runs on, the target is the expected change: the
# mean transferred reward against the mean trained-there reward, met when the lower end
# of its 95% interval (a paired bootstrap over the runs) is above -10%; each run's own
# change stays in the row and in the count beside the verdict.
GENERALIZATION_MIN_RUNS = 5
GENERALIZATION_BOOTSTRAP = 10_000


def generalization_across_runs(results: dict) -> dict | None:
    """The expected fig6 -> fig7 change over the page's run and every seed check that
    carries both DTACs' rewards; None with fewer than GENERALIZATION_MIN_RUNS of them."""
    checks = results.get("benchmarks", {}).get("seed_checks", [])
    gens = [results.get("generalization")] + [c.get("generalization") for c in checks]
    pairs = [(g["dtac_transferred"]["weighted_reward"], g["dtac_trained_there"]["weighted_reward"])
             for g in gens if g and "dtac_transferred" in g and "dtac_trained_there" in g]
    if len(pairs) < GENERALIZATION_MIN_RUNS:
        return None
    a, b = np.array(pairs, dtype=float).T
    idx = np.random.default_rng(0).integers(0, len(a), size=(GENERALIZATION_BOOTSTRAP, len(a)))  # fixed: the page is reproducible
    lo, hi = np.quantile(relative_change(a[idx].mean(1), b[idx].mean(1)), [0.025, 0.975])
    each = relative_change(a, b)
    return {"runs": len(a), "mean_transferred": float(a.mean()), "mean_trained_there": float(b.mean()),
            "relative_change": float(relative_change(a.mean(), b.mean())), "ci95": [float(lo), float(hi)], "bootstrap_resamples": GENERALIZATION_BOOTSTRAP,
            "runs_within_10pct": int((each >= -0.10).sum()), "trained_there_spread": float((b.max() - b.min()) / abs(b.mean())), "worst_run_change": float(each.min()),
            "correlation": float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None}


def across_runs_sentence(ac: dict, tested_on: str) -> str:
    lo, hi = ac["ci95"]
    return (f"over the {ac['runs']} training runs: transferred {ac['mean_transferred']:.2f} vs trained on {tested_on} "
            f"{ac['mean_trained_there']:.2f} on average, expected change {100 * ac['relative_change']:+.1f}% "
            f"(95% interval {100 * lo:+.1f}% to {100 * hi:+.1f}%, paired bootstrap over the runs); "
            f"{ac['runs_within_10pct']} of {ac['runs']} runs within 10% alone, the worst {100 * ac['worst_run_change']:+.1f}%")


def runs_met_label(row: dict) -> str:
    """The results page's "met" cell: yes / **no**, and where other training runs were
    checked, on how many of them the target holds ("**no** (7 of 10 runs)")."""
    runs = row.get("runs", [])
    verdict = "yes" if row["met"] else "**no**"
    if row.get("across_runs"):
        ac = row["across_runs"]
        return (f"{verdict} (expected change over {ac['runs']} runs {100 * ac['relative_change']:+.1f}%, 95% interval from "
                f"{100 * ac['ci95'][0]:+.1f}%; {sum(runs)} of {len(runs)} runs alone)")
    return f"{verdict} ({sum(runs)} of {len(runs)} runs)" if len(runs) > 1 else verdict


def short_value(value: str) -> str:
    """A target's measured figure without its explanation ("DTAC -25.34 vs TAC -50.45")."""
    return value.split(" (")[0]


def seed_table(targets: list[dict]) -> list[str]:
    """The results page's per-training-seed detail of the targets other runs were checked
    on: one row per seed, one short cell per target (figure, then met / **missed**)."""
    rows = [t for t in targets if t.get("seeds")]
    if not rows:
        return []
    seeds = list(dict.fromkeys(s["seed"] for t in rows for s in t["seeds"]))
    lines = ["| training seed | " + " | ".join(t["target"].split(":")[0] + ": " + t["target"].split(": ", 1)[-1] for t in rows) + " |",
             "| --- |" + " --- |" * len(rows)]
    for seed in seeds:
        cells = []
        for t in rows:
            got = next((s for s in t["seeds"] if s["seed"] == seed), None)
            cells.append("-" if got is None else f"{short_value(got['value'])} {'met' if got['met'] else '**missed**'}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


DEVIATIONS = (
    "Learning rates 3e-4 (actor) / 1e-3 (critic) instead of Table II's 2e-5, and far fewer episodes than the paper: the budget is a shared 2-core CPU.",
    "The TAC critic regresses max(r, -100) / 10 per UE and component (a floor on catastrophic deep-fade rounds); "
    "the evaluation's weighted reward is not floored, so a few deep-fade rounds can dominate a method's mean - the median is shown beside it.",
    "HAPPO uses MLP agents (one per UE slot) instead of the paper's RNN agents, gamma = 0, team reward floored at -1000 and divided by 100.",
    "TAC schedule: the default 7 noise-decay episodes of 600 rounds x 16 envs on every scenario, each in one `edgepilot train tac` run "
    "(two scenarios at a time on the 2 cores); the training-cost comparison with HAPPO is its own timed run (benchmarks/dtac_training_cost.py). "
    "That is still far fewer rounds than the paper's training.",
    "DTAC transfer (ours, eight changes to Algorithm 1 lines 13-19, each switchable back in TransferConfig): the identity copy is first "
    "aligned to the TAC's actions by the MSE (26) for 500 steps; during (22) the centralized critic keeps being fitted by (18) on the "
    "student's own rounds instead of staying frozen, with four copies of each round in which a random subset of UEs computes locally at "
    "a random b, scored by the system model; (22) gets a second term, weight 3, that scores the student's b with such a subset switched "
    "to local (b matters only to a local UE, so a student that offloads nearly everything leaves it untrained otherwise); the student "
    "kept is the best of the logged ones (the copy included) on one fixed "
    "validation set of training-scenario rounds (20 rounds x 32 envs, its own simulator seed, never the evaluation seed). The DTAC's "
    "heads: b = min(1, T1* / R) for a local UE, with one round time R per model fitted on those validation rounds with the system "
    "model (the paper's learned b is tuned to the training scenario's round), and an offload option whose lower-bound time in the "
    "local state exceeds the UE's full-speed local time gets probability 0. A transfer in which no student beats the copy runs once "
    "more, the refit critic's pool then also holding four copies of each round with a random subset of UEs on another offload "
    "decision, and keeps that run's best. With the paper's "
    "frozen critic the fig6 result held for one training seed of three; without the local terms the generalization held for four of "
    "five; with the paper's heads it held for seven of ten, without the retry for nine of ten (docs/training.md).",
    "Training curves are CSV + PNG, and TensorBoard events beside them (runs/<scenario>/tensorboard/; the page's runs predate them).",
    "Training curves are the noisy exploration rewards of the training rounds, not deterministic evaluations.",
)


def _fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def _method_table_head(first: str, median: str = "median") -> list[str]:
    """Header and rule of a :func:`_method_row` table."""
    return [f"| {first} | weighted reward (27) | {median} | avg T_t (s) | energy / task (J) | local / edge / cloud |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]


def _method_row(label: str, r: dict, nd: int = 2) -> str:
    """One method's :func:`headline` figures as a results-page table row."""
    mix = r.get("offload_preference") or {}
    mix_s = " / ".join(f"{mix[k]:.2f}" for k in ("local", "edge", "cloud")) if mix else ""
    return (f"| {label} | {_fmt(r['weighted_reward'], nd)} | {_fmt(r.get('weighted_reward_median'), nd)} | "
            f"{_fmt(r['avg_round_time_s'], nd)} | {_fmt(r['avg_energy_per_task_j'], nd)} | {mix_s} |")


def split_analysis_sentence(sa: dict) -> str:
    """One sentence on ``benchmarks/dtac_exhaustive_n4.py --split-analysis``'s figures (the
    results page and the benchmark's own print)."""
    counts = ", ".join(f"{k} in {c}" for k, c in enumerate(sa["best_assignment_edge_count"]) if c)
    own = ""
    if sa["policy_assignment_excess_mean"] is not None:  # None: TAC kept a UE local in every round
        own = (f"; TAC's own assignment is {100 * sa['policy_assignment_excess_mean']:.1f}% worse on average (median "
               f"{100 * sa['policy_assignment_excess_median']:.1f}%) and the best one in {100 * sa['policy_picks_best_share']:.0f}% "
               "of the rounds where it offloads every UE")
    return (f"Every edge / cloud assignment of the {sa['rounds']} evaluation rounds scored (`--split-analysis`; a = b = 1, "
            f"distinct channels): the best one puts this many UEs on the edge: {counts} rounds; the best two-edge / two-cloud "
            f"split is {100 * sa['best_half_split_excess_mean']:.1f}% worse than the best on average and the runner-up "
            f"{100 * sa['runner_up_excess_median']:.1f}% (median){own}; it keeps a UE local in "
            f"{sa['policy_rounds_with_a_local_ue']} rounds.")


def local_round_analysis(tac: dict, opt: dict) -> dict:
    """From two ``evaluate_policy(..., keep_rounds=True)`` results on the same seed: the
    rounds where the optimum keeps a UE local, the share of TAC's excess objective they
    carry, TAC's gap over the other rounds and how often TAC kept a UE local in them.
    (Both play the same tasks and channels; the edge caches follow each one's offloads.)"""
    t, o = tac["round_objective"], opt["round_objective"]
    local = opt["round_local_ues"] > 0
    excess = t - o
    return {
        "rounds": len(o), "optimum_local_rounds": int(local.sum()),
        "tac_local_in_those_rounds": int((tac["round_local_ues"][local] > 0).sum()),
        "excess_share_of_those_rounds": float(excess[local].sum() / excess.sum()) if excess.sum() > 0 else None,
        "tac_gap_without_those_rounds": float(t[~local].mean() / o[~local].mean() - 1),
    }


def local_round_sentence(la: dict) -> str:
    """One sentence on the N = 4 benchmark's ``local_rounds`` figures (page and print)."""
    share = la["excess_share_of_those_rounds"]
    return (f"The optimum keeps a UE local in {la['optimum_local_rounds']} of the {la['rounds']} rounds (TAC in "
            f"{la['tac_local_in_those_rounds']} of them); they carry "
            f"{'-' if share is None else f'{100 * share:.0f}%'} of TAC's excess objective; over the other rounds TAC is "
            f"{100 * la['tac_gap_without_those_rounds']:.1f}% above the optimum.")


def write_results_page(results: dict, figures: list[Path], page: Path, command: str) -> Path:
    """``docs/results-dtac.md`` from the evaluation JSON (generated, do not edit)."""
    page.parent.mkdir(parents=True, exist_ok=True)
    rel = lambda p: Path(p).resolve().relative_to(page.parent.resolve()).as_posix() if Path(p).resolve().is_relative_to(page.parent.resolve()) else str(p)  # noqa: E731
    lines = ["# DTAC results (generated)", "", f"Generated by `{command}`; do not edit by hand.", "",
             f"Evaluation: {results['spec']['rounds']} rounds x {results['spec']['envs']} parallel episodes per method and scenario, "
             f"simulator seed {results['spec']['seed']}. Weighted reward is eq. (27) (higher is better); time is the mean round "
             "duration T_t; energy is per task. Learned methods act deterministically (argmax).", ""]
    if results.get("targets"):
        lines += ["## The issue's targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        lines += [f"| {t['target']} | {t['value']} | {runs_met_label(t)} |" for t in results["targets"]]
        lines.append("")
        lines += [t["across_runs_sentence"][0].upper() + t["across_runs_sentence"][1:] + "." for t in results["targets"] if t.get("across_runs_sentence")]
        detail = seed_table(results["targets"])
        if detail:
            lines += ["", "The same targets for each other training seed checked (`benchmarks/dtac_seed_check.py`; the row "
                      "above is training seed 0):", "", *detail]
        lines.append("")
    for name, entry in results["scenarios"].items():
        lines += [f"## {name}", "", *_method_table_head("method", "median round reward")]
        lines += [_method_row(LABELS[m], entry["methods"][m]) for m in METHOD_ORDER if m in entry["methods"]]
        tr = entry.get("training", {})
        if tr:
            lines += ["", "Training (this machine; schedule and seed from each checkpoint's stored config):", "",
                      "| method | seed | schedule | wall (s) | reached 95% of final at (episode, wall s) |", "| --- | ---: | --- | ---: | --- |"]
            for m, t in tr.items():
                r95 = t.get("to_95pct") or {}
                sch = t.get("schedule") or {}
                lines.append(f"| {LABELS[m]} | {sch.get('seed', '-')} | {sch.get('text', '-')} | {_fmt(t.get('wall_s'), 0)} | "
                             f"{_fmt(r95.get('episode'))}, {_fmt(r95.get('wall_s'), 0)} |")
        lines.append("")
    if results.get("action_similarity_kl"):
        lines += ["## Action similarity (Table III): KL(p_x TAC || p_x method)", "", "| scenario | " + " | ".join(LABELS[m] for m in ("tl_transformer", "dtac", "tl")) + " |", "| --- | ---: | ---: | ---: |"]
        for name, kl in results["action_similarity_kl"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(kl.get(m), 3) for m in ("tl_transformer", "dtac", "tl")) + " |")
        lines.append("")
    gen = results.get("generalization")
    if gen:
        lines += ["## Generalization (Fig. 11)", "",
                  f"DTAC trained on {gen['tested_on']}: {_fmt(gen['dtac_trained_there']['weighted_reward'])}; "
                  f"DTAC trained on {gen['trained_on']} and tested on {gen['tested_on']}: {_fmt(gen['dtac_transferred']['weighted_reward'])} "
                  f"(relative change {100 * gen['relative_change']:+.1f}%).", ""]
        across = next((t["across_runs"] for t in results.get("targets", []) if t.get("across_runs")), None)
        if across:
            checks = results.get("benchmarks", {}).get("seed_checks", [])
            page_seed = results.get("scenarios", {}).get(gen["trained_on"], {}).get("training", {}).get("dtac", {}).get("schedule", {}).get("seed")
            page_label = "this page" if page_seed is None else f"{page_seed} (this page)"
            lines += [f"Every training run (this page's and the seed checks below), each DTAC on {gen['tested_on']}:", "",
                      f"| training seed | trained on {gen['trained_on']} | trained on {gen['tested_on']} | change |", "| --- | ---: | ---: | ---: |"]
            for label, g in [(page_label, gen)] + [(seed_check_label(c, checks), c["generalization"]) for c in checks]:
                if "dtac_transferred" in g:
                    lines.append(f"| {label} | {_fmt(g['dtac_transferred']['weighted_reward'])} | {_fmt(g['dtac_trained_there']['weighted_reward'])} | "
                                 f"{100 * g['relative_change']:+.1f}% |")
            corr = f" The two columns correlate by {across['correlation']:.2f} over the seeds." if across.get("correlation") is not None else ""
            lines += ["", f"The target is judged {across_runs_sentence(across, gen['tested_on'])}. A single run's change also measures which "
                      f"{gen['tested_on']} DTAC its seed drew: the right column alone spans {100 * across['trained_there_spread']:.0f}% of its mean "
                      f"(best to worst), against the target's 10%.{corr}", ""]
    bench = results.get("benchmarks", {})
    for key, cells in N4_BENCHMARKS.items():
        if not bench.get(key):
            continue
        n4 = bench[key]
        ev, tc = n4.get("eval", {}), n4.get("tac_config", {})
        sched = f"{tc['episodes']} x {tc['rounds_per_episode']} rounds x {tc['envs']} envs, " if tc.get("rounds_per_episode") else ""
        flag = "" if key == "n4_exhaustive" else " --edge-servers 2"
        rounds = tc.get("episodes", 0) * (tc.get("rounds_per_episode") or 0)
        kept = (f", the actor of round {n4['tac_selected_round']:,}{f' of {rounds:,}' if rounds else ''}, the best on its validation rounds"
                if n4.get("tac_selected_round") else "")
        if n4.get("tac_restarts"):  # K runs (seed + k * 100003), the best-validated kept; the wall time is theirs together
            rs = n4["tac_restarts"]
            kept += (f", from restart {rs['selected']} (seed {rs['seeds'][rs['selected']]:,}) of {len(rs['seeds'])} independent runs, the best on "
                     f"those rounds ({' / '.join(_fmt(v, 3) for v in rs['validation_rewards'])}; the wall time is all runs' together)")
        lines += [f"## N = 4 against the exhaustive optimum, {cells}", "", f"From `benchmarks/dtac_exhaustive_n4.py{flag}` ({cells}, 4 UEs, Fig. 5 radio / compute; "
                  f"TAC {sched}trained {_fmt(n4.get('tac_train_wall_s'), 0)} s with the benchmark's own settings{kept}; evaluation "
                  f"{ev.get('rounds', '?')} rounds x {ev.get('envs', '?')} envs, seed {ev.get('seed', 4242)}, the same for every method; "
                  "exhaustive a, b on a 3-point grid). Settings: [training.md](training.md#n--4-against-the-exhaustive-optimum); what the trial options behind these figures gave: [decisions.md](decisions.md).", "",
                  *_method_table_head("method")]
        n4_labels = {"exhaustive": "Exhaustive (a, b on {1/3, 2/3, 1})", "exhaustive_fine": "Exhaustive, finer a, b grid",
                     "tac_refined": "TAC + the critic's search (ours)"}
        lines += [_method_row(n4_labels.get(m, LABELS.get(m, m)), r, 3) for m, r in n4["methods"].items()]
        gap = n4["tac_gap_to_optimum"]
        lines += ["", f"TAC is {100 * gap:.1f}% below the optimum (target: within 5%: **{'met' if gap <= 0.05 else 'missed'}**)"
                  + (f"; against the finer grid {100 * n4['tac_gap_to_fine_optimum']:.1f}%." if "tac_gap_to_fine_optimum" in n4 else "."), ""]
        if n4.get("local_rounds"):
            lines += [local_round_sentence(n4["local_rounds"]), ""]
        if n4.get("refine"):
            ref = n4["refine"]
            who = "UE" if ref["group"] == 1 else f"group of {ref['group']} UEs"
            lines += [f"TAC + the critic's search: the deterministic actor's choices, then {ref['sweeps']} sweeps in which each "
                      f"{who} in turn takes the offload / channel choice the "
                      "trained centralized critic scores best (`refine_with_critic`, ours; decision-time only, the same actor and critic): "
                      f"{100 * ref['gap_to_optimum']:.1f}% below the optimum. " + local_round_sentence(ref["local_rounds"]), ""]
        if n4.get("split_analysis"):
            lines += [split_analysis_sentence(n4["split_analysis"]), ""]
    for check in bench.get("seed_checks", []):
        g, ev = check["generalization"], check["eval"]
        lines += [f"## Another training seed: {seed_check_label(check, bench['seed_checks'])} (fig6, generalization)", "",
                  f"From `benchmarks/dtac_seed_check.py --seed {check['training_seed']}`: the same default schedules trained with seed "
                  f"{check['training_seed']}, evaluated like the tables above ({ev['rounds']} rounds x {ev['envs']} envs, seed {ev['seed']}). "
                  "The targets table counts a target as met only if it is met for every training seed (generalization: by its "
                  "expected change over the runs, see Generalization). "
                  f"Run on: {describe_environment(check.get('machine'))}.", "",
                  *_method_table_head("method (fig6)")]
        lines += [_method_row(LABELS[m], r) for m, r in check["fig6"].items()]
        lines += ["", f"Generalization: DTAC trained on fig7 {_fmt(g['dtac_trained_there']['weighted_reward'])}, trained on fig6 and tested on fig7 "
                  f"{_fmt(g['dtac_transferred']['weighted_reward'])} ({100 * g['relative_change']:+.1f}%); TAC trained on fig7: "
                  f"{_fmt(check['fig7_tac']['weighted_reward'])}.", ""]
    if bench.get("training_cost"):
        c = bench["training_cost"]
        lines += ["## Training cost, TAC vs HAPPO (one run)", "", f"From `benchmarks/dtac_training_cost.py --scenario {c['scenario']}` (seed {c['seed']}, "
                  f"{c['machine']['cpus']} CPUs, torch single-threaded, other jobs sharing the machine). 95% point: first logged point of the smoothed "
                  "noisy training reward covering 95% of the way from the first to the final logged value.", "",
                  "| method | wall (s) | 95% of final at: episode (600 rounds) | env rounds | wall (s) |", "| --- | ---: | ---: | ---: | ---: |"]
        for m in ("tac", "happo"):
            if m in c:
                r = c[m]["to_95pct"] or {}
                lines.append(f"| {LABELS[m]} | {_fmt(c[m]['wall_s'], 0)} | {_fmt(r.get('episode'))} | {r.get('env_rounds', '-')} | {_fmt(r.get('wall_s'), 0)} |")
        lines += ["", f"TAC + DTAC wall time: {_fmt(c['tac_plus_dtac_wall_s'], 0)} s ({c['tac_plus_dtac_wall_s'] / 60:.1f} min).", ""]
    if bench.get("reward_floor"):
        f = bench["reward_floor"]
        lines += [f"## Trial: TAC critic reward floor {f['floor']:g} vs 100 ({f['scenario']})", "",
                  f"From `benchmarks/dtac_reward_floor.py --scenario {f['scenario']} --floor {f['floor']:g}`: TAC (same seed {f['seed']} and schedule) "
                  f"and its DTAC, evaluated {f['eval']['rounds']} rounds x {f['eval']['envs']} envs, seed {f['eval']['seed']}, beside the default-floor "
                  "checkpoints as they were when the trial ran.", "",
                  "| model | weighted reward (27) | median | avg T_t (s) | energy / task (J) |", "| --- | ---: | ---: | ---: | ---: |"]
        for k, r in f["results"].items():
            lines.append(f"| {k} | {_fmt(r['weighted_reward'])} | {_fmt(r['weighted_reward_median'])} | {_fmt(r['avg_round_time_s'])} | {_fmt(r['avg_energy_per_task_j'])} |")
        lines.append("")
    if results.get("complexity"):
        lines += ["## Model complexity (Table IV)", "", "| scenario | model | actor params | actor FLOPs / UE | critic params | critic FLOPs / UE |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for name, c in results["complexity"].items():
            for m, v in c.items():
                lines.append(f"| {name} | {LABELS[m]} | {v['actor_parameters']} | {v['actor_flops_per_ue']:.0f} | {v.get('critic_parameters', '-')} | "
                             f"{_fmt(v.get('critic_flops_per_ue'), 0)} |")
        lines.append("")
    lines += ["## Deviations from the paper", ""] + [f"* {d}" for d in DEVIATIONS] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({rel(f)})" for f in figures] + [""]
    page.write_text("\n".join(lines))
    return page
