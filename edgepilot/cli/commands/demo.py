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
from typing import Tuple

import typer

from edgepilot.models import SHIPPED_DTAC_BUNDLE


def demo_bundle(out: Path, shipped: Path = SHIPPED_DTAC_BUNDLE, echo=typer.echo) -> Tuple[Path, Path]:
    """(bundle, public key): sign a copy of the shipped DTAC bundle once, reuse it afterwards."""
    bundle = out / "dtac-laptop.bundle"
    keys = out / "keys"
    pub = keys / "demo.pub"
    if bundle.exists() and pub.exists():
        return bundle, pub
    from edgepilot.export.bundle import generate_keypair, sign_bundle

    if not shipped.is_file():
        raise typer.BadParameter(f"no shipped DTAC bundle at {shipped} (a broken install: reinstall edgepilot)")
    priv, pub = generate_keypair(keys, "demo", overwrite=True)
    echo(f"demo: signing the shipped DTAC bundle ({shipped.name}) with a demo key -> {bundle}")
    sign_bundle(shipped, priv, out=bundle)
    return bundle, pub


def demo_cmd(
    ues: int = typer.Option(12, "--ues", min=1, help="UE agents."),
    edges: int = typer.Option(3, "--edges", min=1, help="Edge servers."),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Rounds."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the bundle and the run go."),
) -> None:
    """Run the demo: the emulated fleet (DTAC agents over MQTT, gRPC edge servers), summarized."""
    from edgepilot.cli.commands.fleet import emulate_cmd

    out.mkdir(parents=True, exist_ok=True)
    bundle, pub = demo_bundle(out)
    emulate_cmd(policy="dtac", bundle=bundle, trusted_key=[pub], ues=ues, edges=edges, rounds=rounds, scenario="fig5",
                time_scale=0.1, wire_scale=1.0, broker="embedded", broker_port=0, agent_procs=2,
                profile="jetson-nano", seed=0, decision_window_ms=None, restart_broker_at=None, deadline_factor=0.0,
                out=out / "emulate")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
