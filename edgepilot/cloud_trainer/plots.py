"""PNG figures of training curves and of the evaluation (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from edgepilot.cloud_trainer.evaluate import LABELS, METHOD_ORDER  # noqa: E402


def curve_series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Label -> (wall s, weighted reward floored at -1000) of one training curve CSV: the
    training rounds, and the validation scores where the trainer logged them (dtac)."""
    if not rows:
        return {}
    x = [float(r["wall_s"]) for r in rows]
    series = {rows[0]["method"]: (x, [max(float(r["weighted_reward"]), -1000.0) for r in rows])}
    scored = [(xi, float(r["validation_reward"])) for xi, r in zip(x, rows) if r.get("validation_reward")]
    if scored:
        series[f"{rows[0]['method']} (validation set)"] = ([a for a, _ in scored], [max(b, -1000.0) for _, b in scored])
    return series


def plot_curve(csv_paths: list[Path], out: Path, title: str = "training") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for p in csv_paths:
        with open(p, newline="") as fh:
            for label, (x, y) in curve_series(list(csv.DictReader(fh))).items():
                ax.plot(x, y, label=label)
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("weighted reward (27), floored at -1000")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_evaluation(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, entry in results["scenarios"].items():
        methods = [m for m in METHOD_ORDER if m in entry["methods"]]
        # Fig. 5/6/7 (a)-(c) against N
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        for ax, key, ylabel in zip(axes, ("avg_round_time_s", "avg_energy_per_task_j", "weighted_reward"),
                                   ("avg task execution time T_t (s)", "avg energy per task (J)", "weighted reward (27)")):
            for m in methods:
                by_n = entry["methods"][m]["by_num_ues"]
                ns = sorted(int(n) for n in by_n)
                ax.plot(ns, [by_n[str(n)][key] for n in ns], marker="o", ms=3, label=LABELS[m])
            ax.set_xlabel("number of UEs N")
            ax.set_ylabel(ylabel)
            if key != "weighted_reward":
                ax.set_yscale("log")
            else:
                ax.set_yscale("symlog")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{name}: methods against N")
        fig.tight_layout()
        p = out_dir / f"{name}_vs_num_ues.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
        # Fig. 8/9 offload preference
        fig, ax = plt.subplots(figsize=(7, 3.5))
        bottom = [0.0] * len(methods)
        for k in ("local", "edge", "cloud"):
            vals = [entry["methods"][m]["offload_preference"][k] for m in methods]
            ax.bar([LABELS[m] for m in methods], vals, bottom=bottom, label=k)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylabel("fraction of tasks")
        ax.set_title(f"{name}: offload preference")
        ax.legend()
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
        fig.tight_layout()
        p = out_dir / f"{name}_offload_preference.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
        # training curves
        tr = entry.get("training", {})
        if tr:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for m, t in tr.items():
                h = t["history"]
                if h:
                    ax.plot([r["wall_s"] for r in h], [max(r["weighted_reward"], -1000.0) for r in h], label=LABELS[m])
            ax.set_xlabel("wall time (s)")
            ax.set_ylabel("training weighted reward (floored -1000)")
            ax.set_title(f"{name}: training curves")
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = out_dir / f"{name}_training.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            written.append(p)
    gen = results.get("generalization")
    if gen:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label, key in (("DTAC trained on " + gen["tested_on"], "dtac_trained_there"), ("DTAC trained on " + gen["trained_on"], "dtac_transferred")):
            by_n = gen[key]["by_num_ues"]
            ns = sorted(int(n) for n in by_n)
            ax.plot(ns, [by_n[str(n)]["weighted_reward"] for n in ns], marker="o", label=label)
        ax.set_xlabel("number of UEs N")
        ax.set_ylabel("weighted reward (27)")
        ax.set_title(f"Fig. 11 generalization, tested on {gen['tested_on']}")
        ax.legend()
        fig.tight_layout()
        p = out_dir / "generalization.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written
