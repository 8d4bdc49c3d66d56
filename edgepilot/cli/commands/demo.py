"""``edgepilot demo``: the main job on a fresh clone, in a few minutes.

1. a signed DTAC bundle for this laptop: the shipped bundle of the Fig. 5 DTAC
   (``edgepilot/models/policies/dtac_fig5-laptop.bundle``, exported from
   ``dtac_fig5.pt``, unsigned) signed with a demo key generated on the spot (cached
   under ``runs/demo/``), so the demo needs no torch;
2. ``edgepilot emulate`` on it: the embedded MQTT broker, 3 edge servers and a cloud
   tier over gRPC, 12 UE agents deciding from their own local state, 10 rounds of the
   Fig. 5 scenario; the summary table beside the simulator's prediction.
"""

from __future__ import annotations

from pathlib import Path

import typer

from edgepilot.cli.errors import failed, usage_error


def demo_cmd(
    ues: int = typer.Option(12, "--ues", "-n", help="N, UE agents."),
    edges: int = typer.Option(3, "--edges", "-k", help="K, edge servers (N must be a multiple of K; at most 64)."),
    rounds: int = typer.Option(10, "--rounds", "-r", help="R, rounds."),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Where the bundle and the run go."),
) -> None:
    """Run the demo: the emulated fleet (DTAC agents over MQTT, gRPC edge servers), summarized."""
    from pydantic import ValidationError

    from edgepilot.cli.commands.fleet import describe_config_error, run_emulate
    from edgepilot.emulation.config import EmulateConfig
    from edgepilot.emulation.policy import signed_shipped_bundle

    try:
        cfg = EmulateConfig(policy="dtac", ues=ues, edges=edges, rounds=rounds, out=str(out / "emulate"))
    except ValidationError as err:
        usage_error(describe_config_error(err, {}))
    try:
        bundle, pub = signed_shipped_bundle(out, progress=lambda m: typer.echo(f"demo: {m}"))
    except FileNotFoundError as err:
        failed(str(err))
    run_emulate(cfg.model_copy(update={"bundle": str(bundle), "trusted_keys": [str(pub)]}))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
