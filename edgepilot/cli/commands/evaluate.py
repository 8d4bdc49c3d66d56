"""``edgepilot evaluate``: the DTAC paper's comparisons (Fig. 5-9, 11, Tables III-IV)
for every trained method found under RUNS/<scenario>/, plus the heuristics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from edgepilot.cli.errors import usage_error


def evaluate_cmd(
    runs: Path = typer.Option(Path("runs"), help="Training output root (RUNS/<scenario>/<method>.pt)."),
    out: Path = typer.Option(Path("docs/figures/dtac"), "--out", "-o", help="Where results.json and the PNG figures go."),
    page: Path = typer.Option(Path("docs/results-dtac.md"), help="Results page generated from the JSON."),
    scenarios: str = typer.Option("fig5,fig6,fig7", help="Comma-separated scenario presets."),
    rounds: int = typer.Option(50, min=1, help="Rounds per method and scenario."),
    envs: int = typer.Option(32, min=1, help="Parallel episodes."),
    seed: int = typer.Option(1000, help="Simulator seed (the same for every method)."),
    quick: bool = typer.Option(False, "--quick", help="3 rounds x 4 episodes (tests)."),
    threads: int = typer.Option(1, min=1),
    page_only: bool = typer.Option(False, "--page-only", help="Evaluate nothing: take in the benchmark JSON beside "
                                   "OUT/results.json (e.g. after benchmarks/dtac_exhaustive_n4.py) and rewrite the page."),
) -> None:
    """Evaluate every method; write JSON, PNG figures and the results page."""
    import torch

    from edgepilot.cloud_trainer.evaluate import EvalSpec, run_evaluation
    from edgepilot.cloud_trainer.plots import plot_evaluation
    from edgepilot.cloud_trainer.results_page import refresh_benchmarks, write_results_page

    if page_only:
        src = out / "results.json"
        if not src.exists():
            usage_error(f"--page-only needs {src} from an earlier `edgepilot evaluate`")
        results = refresh_benchmarks(json.loads(src.read_text()), out)
    else:
        torch.set_num_threads(threads)
        names = tuple(s for s in scenarios.split(",") if s)
        cmd = ("edgepilot evaluate " + " ".join(sys.argv[2:])).strip() if len(sys.argv) > 1 else "edgepilot evaluate"
        spec = EvalSpec(scenarios=names, rounds=3 if quick else rounds, envs=4 if quick else envs, seed=seed, command=cmd)
        gen = ("fig6", "fig7") if {"fig6", "fig7"} <= set(names) else None
        results = refresh_benchmarks(run_evaluation(runs, out, spec, log=typer.echo, generalization=gen,
                                                    similarity=tuple(n for n in ("fig6", "fig7", "fig5") if n in names)), out)
    figures = plot_evaluation(results, out)
    write_results_page(results, figures, page, results.get("spec", {}).get("command") or "edgepilot evaluate")
    typer.echo(json.dumps({"results": str(out / "results.json"), "figures": [str(f) for f in figures], "page": str(page)}))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
