"""``edgepilot train tac|dtac|happo|tl|tl_transformer|<heuristic>``: DTAC paper
Algorithm 1 and its baselines (issue 3). torch is imported inside the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from edgepilot.cli.errors import usage_error

METHODS = ("tac", "dtac", "happo", "tl", "tl_transformer", "random", "local", "all_edge", "greedy")
HEURISTICS = ("random", "local", "all_edge", "greedy")
CONFIG_HELP = ("YAML file of trainer settings: TACConfig (tac), TransferConfig (dtac, tl, tl_transformer) or HAPPOConfig "
               "(happo); docs/training.md lists them.")
SET_HELP = ("One trainer setting, KEY=VALUE (repeatable; wins over --config). How long a run trains is a setting: "
            "tac episodes=N (noise-decay episodes; rounds_per_episode=R), happo iterations=N, dtac / tl / tl_transformer "
            "steps=N (gradient steps); model.d_model=32 reaches TAC's network sizes.")


def _trainer_config(method: str, quick: bool, config: Optional[Path], overrides: List[str]):
    """The method's config class, the --quick sizes, the file and the overrides, validated."""
    from edgepilot.config import ConfigError, load_config

    if method == "tac":
        from edgepilot.cloud_trainer.tac import QUICK_OVERRIDES as quick_sizes
        from edgepilot.cloud_trainer.tac import TACConfig as model
    elif method == "happo":
        from edgepilot.cloud_trainer.baselines.happo import (
            HAPPO_QUICK_OVERRIDES as quick_sizes,
        )
        from edgepilot.cloud_trainer.baselines.happo import HAPPOConfig as model
    else:
        from edgepilot.cloud_trainer.dtac import TRANSFER_QUICK_OVERRIDES as quick_sizes
        from edgepilot.cloud_trainer.dtac import TransferConfig as model
    try:
        return load_config(model, config, overrides, base=dict(quick_sizes) if quick else None)
    except ConfigError as err:
        usage_error(f"{method} config: {err}")


def train_cmd(
    method: str = typer.Argument(..., help=f"One of: {', '.join(METHODS)}."),
    scenario: str = typer.Option("fig5", "--scenario", help="Scenario preset (fig5, fig6, fig7, table1) or YAML file."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Output root; files go to OUT/<scenario name>/."),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    overrides: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes that finish in well under a minute (tests, smoke runs); "
                               "--config and --set apply on top."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/<scenario>/<method>_last.pt."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the networks, exploration and simulator (default: "
                                       "the config's, 0); the same as --set seed=N."),
    tac_checkpoint: Optional[Path] = typer.Option(None, help="dtac/tl/tl_transformer: the converged TAC (default OUT/<scenario>/tac.pt)."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads (default: the config's, 1)."),
) -> None:
    """Train a method on a scenario, with a progress bar, periodic checkpoints, a CSV curve,
    a PNG and TensorBoard events. Settings: the method's defaults, then --quick, --config,
    --set, --seed / --threads."""
    if method not in METHODS:
        usage_error(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    from edgepilot.cloud_trainer.scenario import ScenarioError, load_scenario

    try:
        scen = load_scenario(scenario)
    except ScenarioError as err:
        usage_error(str(err))
    out_dir = out / scen.name
    seed_value = 0 if seed is None else seed

    if method in HEURISTICS:
        if config is not None or overrides:
            usage_error(f"{method} has nothing to train: --config and --set do not apply")
        from edgepilot.cloud_trainer.evaluate import evaluate_policy, make_policy

        res = evaluate_policy(make_policy(method, scen, seed=seed_value), scen, rounds=5 if quick else 50, envs=4 if quick else 32,
                              seed=seed_value + 1000)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{method}.json").write_text(json.dumps(res, indent=1))
        typer.echo(f"{method} has nothing to train; evaluated: weighted reward {res['weighted_reward']:.3f} -> {out_dir / (method + '.json')}")
        return

    given = list(overrides or []) + [f"{k}={v}" for k, v in (("seed", seed), ("threads", threads)) if v is not None]
    cfg = _trainer_config(method, quick, config, given)
    tac_path = None
    if method not in ("tac", "happo"):
        tac_path = tac_checkpoint or out_dir / "tac.pt"
        if not Path(tac_path).exists():
            usage_error(f"{method} transfers a converged TAC: {tac_path} not found (run `edgepilot train tac --scenario {scenario}` "
                        "first or pass --tac-checkpoint)")

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("weighted reward {task.fields[reward]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(f"{method} on {scen.name}", total=None, reward="-")

        def progress(p: dict) -> None:
            r = p["weighted_reward"]
            bar.update(task, completed=p["round"], total=p["total"], reward=f"{r:.2f}" if r == r else "-")

        if method == "tac":
            from edgepilot.cloud_trainer.tac import train_tac

            result = train_tac(scen, cfg, out_dir, resume=resume, progress=progress)
        elif method == "happo":
            from edgepilot.cloud_trainer.baselines.happo import train_happo

            result = train_happo(scen, cfg, out_dir, resume=resume, progress=progress)
        else:
            from edgepilot.cloud_trainer.dtac import train_transfer

            result = train_transfer(scen, tac_path, cfg, out_dir, method=method, resume=resume, progress=progress)

    from edgepilot.cloud_trainer.common import tensorboard_dir
    from edgepilot.cloud_trainer.plots import plot_curve

    png = plot_curve([out_dir / f"curve_{method}.csv"], out_dir / f"curve_{method}.png", title=f"{method} on {scen.name}")
    summary = {"method": method, "scenario": scen.name, "scenario_hash": scen.scenario_hash(), "checkpoint": str(result.checkpoint),
               "wall_s": result.wall_s, "final_logged_weighted_reward": result.history[-1]["weighted_reward"] if result.history else None,
               # the kept DTAC student, its round time R (round_budget b) and, after a retry, the first attempt's
               **{k: v for k, v in result.metrics.items() if k in ("selected_step", "selected_weighted_reward", "round_budget_s",
                                                                  "first_attempt", "retry_offload_counterfactuals")}}
    (out_dir / f"train_{method}.json").write_text(json.dumps(summary, indent=1))
    typer.echo(json.dumps(summary))
    tb = tensorboard_dir(out_dir, method)
    typer.echo(f"curve: {out_dir / f'curve_{method}.csv'}, {png}" + (f"; tensorboard --logdir {tb.parent}" if tb.is_dir() else ""))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
