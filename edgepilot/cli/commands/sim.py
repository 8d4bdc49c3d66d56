"""Simulator commands: ``evaluate-round``, ``scenario show|list``, ``simulate``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from edgepilot.cli.errors import usage_error

scenario_app = typer.Typer(help="Inspect scenario presets and files (DTAC paper Table I and Fig. 5/6/7).", no_args_is_help=True)


def evaluate_round_cmd(
    instance: Path = typer.Argument(..., help="JSON file describing one round (see docs/system-model.md); '-' reads stdin."),
) -> None:
    """Evaluate one explicitly given round with the system model (eq. 2-13) and print the result as JSON."""
    from edgepilot.cloud_trainer.instance import InstanceError, parse_instance
    from edgepilot.edge_agent.system_model import evaluate_round

    try:
        text = sys.stdin.read() if str(instance) == "-" else instance.read_text()
    except OSError as err:
        usage_error(f"cannot read {instance}: {err.strerror}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        usage_error(f"{instance} is not valid JSON: {err}")
    try:
        parsed = parse_instance(data)
    except InstanceError as err:
        usage_error(str(err))
    result = evaluate_round(parsed.network_params(), parsed.tasks(), parsed.decision())
    typer.echo(json.dumps(result.for_round(0), indent=2))


@scenario_app.command("show")
def scenario_show(
    scenario: Optional[str] = typer.Argument(None, help="Preset name (fig5, fig6, fig7, table1) or a YAML file; default: Table I."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the resolved scenario: every field, with the derived network parameters and its hash."""
    import yaml

    from edgepilot.cloud_trainer.scenario import ScenarioError, load_scenario

    try:
        resolved = load_scenario(scenario).resolved()
    except ScenarioError as err:
        usage_error(str(err))
    typer.echo(json.dumps(resolved, indent=2) if as_json else yaml.safe_dump(resolved, sort_keys=False))


@scenario_app.command("list")
def scenario_list() -> None:
    """List the shipped scenario presets."""
    from edgepilot.cloud_trainer.scenario import list_presets, load_scenario

    for name in ["table1", *list_presets()]:
        typer.echo(f"{name:8s} {load_scenario(name).description}")


def simulate_cmd(
    scenario: str = typer.Option("fig5", "--scenario", help="Preset name or YAML file."),
    policy: str = typer.Option("random", "--policy", help="random (the paper's Random baseline), local (every UE computes "
                               "locally) or optimizer (the full-information per-round optimizer: the ceiling; ~1 s a round)."),
    rounds: int = typer.Option(20, "--rounds", min=1, help="Rounds to simulate."),
    seed: int = typer.Option(0, "--seed", help="Seed of placements, tasks and fading."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the summary and the per-round figures as JSON here."),
) -> None:
    """Run a short simulator episode with a baseline policy and print its summary."""
    import numpy as np
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from edgepilot.cloud_trainer.envs.simulator import BatchSimulator, random_decision
    from edgepilot.cloud_trainer.scenario import ScenarioError, load_scenario
    from edgepilot.edge_agent.system_model import Decision

    if policy not in ("random", "local", "optimizer"):
        usage_error(f"--policy: unknown policy {policy!r} (random, local, optimizer)")
    try:
        scen = load_scenario(scenario)
    except ScenarioError as err:
        usage_error(f"--scenario: {err}")
    sim = BatchSimulator(scen, batch_size=1, seed=seed)
    obs = sim.reset()
    rng = np.random.default_rng(seed + 1)
    if policy == "optimizer":
        from edgepilot.cloud_trainer.baselines.optimizer import OptimizerPolicy

        optimizer = OptimizerPolicy(scen.network_params, scen.radio.num_channels)
    rows = []
    start = time.perf_counter()
    for _ in track(range(rounds), description=f"simulating {scen.name}", transient=True, disable=not sys.stderr.isatty()):
        shape = obs.edge_id.shape
        if policy == "random":
            decision = random_decision(rng, shape, scen.radio.num_channels)
        elif policy == "optimizer":
            decision = optimizer.act(obs)
        else:
            decision = Decision(np.zeros(shape, int), np.zeros(shape, int), np.ones(shape), np.ones(shape))
        mask = obs.ue_mask[0]
        step = sim.step(decision)
        r = step.result
        rows.append(
            {
                "num_ues": int(mask.sum()),
                "round_time_s": float(r.round_time_s[0]),
                "total_energy_j": float(r.total_energy_j[0]),
                "objective": float(r.objective[0]),
                "offload_mix": np.bincount(decision.offload[0][mask], minlength=3).tolist(),
            }
        )
        obs = step.observation
    elapsed = time.perf_counter() - start
    summary = {
        "scenario": scen.name,
        "scenario_hash": scen.scenario_hash(),
        "policy": policy,
        "rounds": rounds,
        "mean_round_time_s": float(np.mean([r["round_time_s"] for r in rows])),
        "mean_energy_per_task_j": float(sum(r["total_energy_j"] for r in rows) / sum(r["num_ues"] for r in rows)),
        "weighted_reward": -float(np.mean([r["objective"] for r in rows])),  # eq. (27)
        "offload_mix": np.sum([r["offload_mix"] for r in rows], axis=0).tolist(),
        "wall_time_s": elapsed,
    }
    table = Table(title=f"{rounds} rounds of {scen.name} with the {policy} policy")
    for col in ("metric", "value"):
        table.add_column(col)
    table.add_row("UEs (first round)", str(rows[0]["num_ues"]))
    table.add_row("mean round time T_t", f"{summary['mean_round_time_s']:.3f} s")
    table.add_row("mean energy per task", f"{summary['mean_energy_per_task_j']:.3f} J")
    table.add_row("weighted reward (27)", f"{summary['weighted_reward']:.3f}")
    table.add_row("offload mix local/edge/cloud", " / ".join(map(str, summary["offload_mix"])))
    Console().print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"summary": summary, "rounds": rows}, indent=2))
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("evaluate-round")(evaluate_round_cmd)
    app.command("simulate")(simulate_cmd)
    app.add_typer(scenario_app, name="scenario")
