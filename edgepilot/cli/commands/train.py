"""``edgepilot train tac|dtac|happo|tl|tl_transformer|<heuristic>``: DTAC paper
Algorithm 1 and its baselines (issue 3); ``edgepilot train aed``: the LAMBO AED's
actor-critic pre-training (issue 37). torch is imported inside the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from edgepilot.cli.errors import usage_error

METHODS = ("tac", "dtac", "happo", "tl", "tl_transformer", "aed", "random", "local", "all_edge", "greedy")
HEURISTICS = ("random", "local", "all_edge", "greedy")
CONFIG_HELP = ("YAML file of trainer settings: TACConfig (tac), TransferConfig (dtac, tl, tl_transformer), HAPPOConfig "
               "(happo) or ACLConfig (aed); docs/training.md and docs/lambo.md list them.")
SET_HELP = ("One trainer setting, KEY=VALUE (repeatable; wins over --config). How long a run trains is a setting: "
            "tac episodes=N (noise-decay episodes; rounds_per_episode=R), happo iterations=N, dtac / tl / tl_transformer "
            "steps=N (gradient steps); model.d_model=32 reaches TAC's network sizes.")


def _trainer_config(method: str, quick: bool, config: Optional[Path], overrides: List[str]):
    """The method's config class, the --quick sizes, the file and the overrides, validated."""
    from edgepilot.config import ConfigError, load_config

    if method == "tac":
        from edgepilot.cloud_trainer.tac import QUICK_OVERRIDES as quick_sizes
        from edgepilot.cloud_trainer.tac import TACConfig as model
    elif method == "aed":
        from edgepilot.cloud_trainer.lambo.acl import QUICK_OVERRIDES as quick_sizes
        from edgepilot.cloud_trainer.lambo.acl import ACLConfig as model
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
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Scenario preset (fig5, fig6, fig7, table1) or YAML file; "
                                           "default fig5 (aed: lambo, the LAMBO section V scenario, or a LamboScenario YAML)."),
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
    preset: Optional[str] = typer.Option(None, "--preset", help="aed: the paper's size, m (60 encoder / 6 decoder layers) or l "
                                         "(120 / 12): built on the meta device and its parameter counts printed; training "
                                         "these sizes needs a GPU and is not done here."),
) -> None:
    """Train a method on a scenario, with a progress bar, periodic checkpoints, a CSV curve,
    a PNG and TensorBoard events. Settings: the method's defaults, then --quick, --config,
    --set, --seed / --threads."""
    if method not in METHODS:
        usage_error(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "aed":
        _train_aed(scenario, out, config, list(overrides or []), quick, resume, seed, threads, preset)
        return
    if preset is not None:
        usage_error(f"--preset applies to aed only, not {method}")
    scenario = scenario or "fig5"
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


def _train_aed(scenario: Optional[str], out: Path, config: Optional[Path], overrides: List[str], quick: bool,
               resume: bool, seed: Optional[int], threads: Optional[int], preset: Optional[str]) -> None:
    """``train aed``: the paper's sizes on the meta device (--preset), else ACL pre-training
    of the configured (small, CPU) AED with a checkpoint, a CSV curve and a JSON summary."""
    if resume:
        usage_error("aed: --resume is not supported (pre-training restarts from step 0)")
    if preset is not None:
        from edgepilot.cloud_trainer.lambo.model import PAPER_PARAMETERS, PRESETS, meta_parameter_count

        if preset not in PRESETS:
            usage_error(f"unknown --preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if config is not None or overrides or quick:
            usage_error("--preset only reports the paper's size; --config, --set and --quick do not apply to it")
        from edgepilot.cloud_trainer.lambo.scenario import LamboScenarioError, load_lambo_scenario

        try:
            scen = load_lambo_scenario(scenario or "lambo")
        except LamboScenarioError as err:
            usage_error(str(err))
        counts = meta_parameter_count(preset, scen.num_servers)
        cfg = PRESETS[preset]
        typer.echo(json.dumps({"preset": preset, "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.decoder_layers,
                               "d_model": cfg.d_model, "nhead": cfg.nhead, "dim_feedforward": cfg.dim_feedforward,
                               "num_servers": scen.num_servers, "parameters": counts,
                               "paper_parameters": PAPER_PARAMETERS[preset]}))
        typer.echo(f"LAMBO_{preset.upper()} built on the meta device (nothing allocated); training it needs a GPU and is "
                   "not done by this command. Without --preset, `edgepilot train aed` trains the small default on the CPU.")
        return

    from edgepilot.cloud_trainer.lambo.scenario import LamboScenarioError, load_lambo_scenario

    try:
        scen = load_lambo_scenario(scenario or "lambo")
    except LamboScenarioError as err:
        usage_error(str(err))
    given = overrides + [f"{k}={v}" for k, v in (("seed", seed), ("threads", threads)) if v is not None]
    cfg = _trainer_config("aed", quick, config, given)
    out_dir = out / scen.name

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgepilot.cloud_trainer.lambo.acl import train_acl, write_curve

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("latency {task.fields[lat]} s, energy {task.fields[energy]} J"), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(f"aed on {scen.name}", total=cfg.steps, lat="-", energy="-")

        def progress(row: dict) -> None:
            bar.update(task, completed=row["step"], lat=f"{row['latency']:.3f}", energy=f"{row['energy']:.2f}")

        result = train_acl(scen, cfg, out_dir, progress=progress)
    curve = write_curve(out_dir / "curve_aed.csv", result.history)
    first, last = result.history[0], result.history[-1]
    summary = {"method": "aed", "scenario": scen.name, "scenario_hash": scen.scenario_hash(), "checkpoint": str(result.checkpoint),
               "wall_s": result.wall_s, "steps": cfg.steps,
               "held_out": {key: {"untrained": first[key], "trained": last[key], "random": last[f"{key}_random"],
                                  "feasible": last[f"{key}_feasible"]} for key in ("latency", "energy")}}
    (out_dir / "train_aed.json").write_text(json.dumps(summary, indent=1))
    typer.echo(json.dumps(summary))
    typer.echo(f"curve: {curve}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
