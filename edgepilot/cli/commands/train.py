"""``edgepilot train tac|dtac|happo|tl|tl_transformer|<heuristic>``: DTAC paper
Algorithm 1 and its baselines (issue 3). torch is imported inside the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

METHODS = ("tac", "dtac", "happo", "tl", "tl_transformer", "random", "local", "all_edge", "greedy")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def train_cmd(
    method: str = typer.Argument(..., help=f"One of: {', '.join(METHODS)}."),
    scenario: str = typer.Option("fig5", help="Scenario preset (fig5, fig6, fig7, table1) or YAML file."),
    out: Path = typer.Option(Path("runs"), help="Output root; files go to OUT/<scenario name>/."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes that finish in well under a minute (tests, smoke runs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/<scenario>/<method>_last.pt."),
    seed: int = typer.Option(0, help="Seed of the networks, exploration and simulator."),
    episodes: Optional[int] = typer.Option(None, help="tac: noise-decay episodes; happo: iterations; dtac/tl*: gradient steps."),
    rounds_per_episode: Optional[int] = typer.Option(None, help="tac: collection rounds per episode (default: scenario, Table II 600)."),
    tac_checkpoint: Optional[Path] = typer.Option(None, help="dtac/tl/tl_transformer: the converged TAC (default OUT/<scenario>/tac.pt)."),
    threads: int = typer.Option(1, min=1, help="torch threads."),
    config: Optional[Path] = typer.Option(None, help="JSON file of trainer config overrides (field -> value)."),
) -> None:
    """Train a method on a scenario, with a progress bar, periodic checkpoints, a CSV curve and a PNG."""
    if method not in METHODS:
        _fail(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from edgepilot.cloud_trainer.scenario import ScenarioError, load_scenario

    try:
        scen = load_scenario(scenario)
    except ScenarioError as err:
        _fail(str(err))
    out_dir = out / scen.name
    overrides = json.loads(config.read_text()) if config else {}

    if method in ("random", "local", "all_edge", "greedy"):
        from edgepilot.cloud_trainer.evaluate import evaluate_policy, make_policy

        res = evaluate_policy(make_policy(method, scen, seed=seed), scen, rounds=5 if quick else 50, envs=4 if quick else 32, seed=seed + 1000)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{method}.json").write_text(json.dumps(res, indent=1))
        typer.echo(f"{method} has nothing to train; evaluated: weighted reward {res['weighted_reward']:.3f} -> {out_dir / (method + '.json')}")
        return

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("weighted reward {task.fields[reward]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(f"{method} on {scen.name}", total=None, reward="-")

        def progress(p: dict) -> None:
            r = p["weighted_reward"]
            bar.update(task, completed=p["round"], total=p["total"], reward=f"{r:.2f}" if r == r else "-")

        if method == "tac":
            from edgepilot.cloud_trainer.tac import QUICK_OVERRIDES, TACConfig, train_tac

            fields = {**(QUICK_OVERRIDES if quick else {}), **overrides, "seed": seed, "threads": threads}
            if episodes:
                fields["episodes"] = episodes
            if rounds_per_episode:
                fields["rounds_per_episode"] = rounds_per_episode
            try:
                cfg = TACConfig.from_dict(fields)
            except (TypeError, ValueError) as err:  # an unknown field, restarts without validation rounds, ...
                _fail(f"bad tac config: {err}")
            result = train_tac(scen, cfg, out_dir, resume=resume, progress=progress)
        elif method == "happo":
            from edgepilot.cloud_trainer.baselines.happo import HAPPO_QUICK_OVERRIDES, HAPPOConfig, train_happo

            fields = {**(HAPPO_QUICK_OVERRIDES if quick else {}), **overrides, "seed": seed, "threads": threads}
            if episodes:
                fields["iterations"] = episodes
            try:
                cfg = HAPPOConfig(**fields)
            except (TypeError, ValueError) as err:  # an unknown field, ...
                _fail(f"bad happo config: {err}")
            result = train_happo(scen, cfg, out_dir, resume=resume, progress=progress)
        else:
            from edgepilot.cloud_trainer.dtac import TRANSFER_QUICK_OVERRIDES, TransferConfig, train_transfer

            tac_path = tac_checkpoint or out_dir / "tac.pt"
            if not Path(tac_path).exists():
                _fail(f"{method} transfers a converged TAC: {tac_path} not found (run `edgepilot train tac --scenario {scenario}` first or pass --tac-checkpoint)")
            fields = {**(TRANSFER_QUICK_OVERRIDES if quick else {}), **overrides, "seed": seed, "threads": threads}
            if episodes:
                fields["steps"] = episodes
            try:
                cfg = TransferConfig(**fields)
            except (TypeError, ValueError) as err:  # an unknown field, an unknown cpu_ratio_head, ...
                _fail(f"bad {method} config: {err}")
            result = train_transfer(scen, tac_path, cfg, out_dir, method=method, resume=resume, progress=progress)

    from edgepilot.cloud_trainer.plots import plot_curve

    png = plot_curve([out_dir / f"curve_{method}.csv"], out_dir / f"curve_{method}.png", title=f"{method} on {scen.name}")
    summary = {"method": method, "scenario": scen.name, "scenario_hash": scen.scenario_hash(), "checkpoint": str(result.checkpoint),
               "wall_s": result.wall_s, "final_logged_weighted_reward": result.history[-1]["weighted_reward"] if result.history else None,
               # the kept DTAC student, its round time R (round_budget b) and, after a retry, the first attempt's;
               # the kept TAC actor (validation rounds) and restart
               **{k: v for k, v in result.metrics.items() if k in ("selected_step", "selected_round", "selected_weighted_reward",
                                                                  "round_budget_s", "selected_local_share", "first_attempt",
                                                                  "retry_offload_counterfactuals", "kept_attempt", "retry_attempt",
                                                                  "selected_restart", "restart_validation_rewards")}}
    (out_dir / f"train_{method}.json").write_text(json.dumps(summary, indent=1))
    typer.echo(json.dumps(summary))
    from edgepilot.cloud_trainer.tac import tensorboard_dir

    tb = tensorboard_dir(out_dir, method)
    typer.echo(f"curve: {out_dir / f'curve_{method}.csv'}, {png}" + (f"; tensorboard --logdir {tb.parent}" if tb.is_dir() else ""))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
