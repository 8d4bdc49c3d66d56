"""``edgepilot demo``: the main job on an embedded default.

Until the emulated fleet exists (issue #6) the demo runs a short simulator episode of
the Fig. 5 scenario with the Random baseline and prints its summary."""

from __future__ import annotations

import typer


def demo_cmd(rounds: int = typer.Option(20, min=1, help="Rounds to run.")) -> None:
    """Run the demo: a short episode of the Fig. 5 scenario, summarized."""
    from edgepilot.commands.sim import simulate_cmd

    simulate_cmd(scenario="fig5", policy="random", rounds=rounds, seed=0, output=None)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
