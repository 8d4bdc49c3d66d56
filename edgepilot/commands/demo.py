"""``edgepilot demo``: the main job on a fresh clone, in a few minutes.

1. a signed DTAC bundle for this laptop: the shipped DTAC checkpoint
   (``models/policies/dtac_fig5.pt``) exported to ONNX and signed with a demo key
   generated on the spot (cached under ``runs/demo/``);
2. ``edgepilot emulate`` on it: the embedded MQTT broker, 3 edge servers and a cloud
   tier over gRPC, 12 UE agents deciding from their own local state, 10 rounds of the
   Fig. 5 scenario; the summary table beside the simulator's prediction.
"""

from __future__ import annotations

from pathlib import Path

import typer

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DTAC = REPO_ROOT / "models" / "policies" / "dtac_fig5.pt"


def demo_bundle(out: Path, checkpoint: Path = SHIPPED_DTAC, echo=typer.echo) -> tuple[Path, Path]:
    """(bundle, public key): export + sign the shipped DTAC once, reuse it afterwards."""
    bundle = out / "dtac-laptop.bundle"
    keys = out / "keys"
    pub = keys / "demo.pub"
    if bundle.exists() and pub.exists():
        return bundle, pub
    from export.bundle import generate_keypair
    from export.pipeline import export_checkpoint

    if not checkpoint.exists():
        raise typer.BadParameter(f"no DTAC checkpoint at {checkpoint}: run `edgepilot train dtac --quick` first")
    priv, pub = generate_keypair(keys, "demo", overwrite=True)
    echo(f"demo: exporting {checkpoint.name} for the laptop profile and signing it ({bundle})")
    export_checkpoint(checkpoint, "laptop", bundle, precisions=["fp32"], parity_count=500, calibration_count=200,
                      min_agreement=0.9, signing_key=priv, build_engines=False, progress=lambda m: echo(f"  {m}"))
    return bundle, pub


def demo_cmd(
    ues: int = typer.Option(12, "--ues", min=1, help="UE agents."),
    edges: int = typer.Option(3, "--edges", min=1, help="Edge servers."),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Rounds."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the bundle and the run go."),
) -> None:
    """Run the demo: the emulated fleet (DTAC agents over MQTT, gRPC edge servers), summarized."""
    from edgepilot.commands.fleet import emulate_cmd

    out.mkdir(parents=True, exist_ok=True)
    bundle, pub = demo_bundle(out)
    emulate_cmd(policy="dtac", bundle=bundle, trusted_key=[pub], ues=ues, edges=edges, rounds=rounds, scenario="fig5",
                time_scale=0.1, wire_scale=1.0, broker="embedded", broker_port=0, agent_procs=2,
                profile="jetson-nano", seed=0, decision_window_ms=None, restart_broker_at=None, deadline_factor=0.0,
                out=out / "emulate")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
