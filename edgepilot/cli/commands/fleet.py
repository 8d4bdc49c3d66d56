"""``edgepilot agent`` (one UE agent, device side) and ``edgepilot emulate`` (the
emulated fleet on a laptop). See docs/fleet.md."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

import typer


def agent_cmd(
    ue_id: str = typer.Option(..., "--ue-id", help="This UE's id (a topic level and the broker user name)."),
    edge_id: int = typer.Option(..., "--edge-id", min=0, help="Index k of the UE's edge server."),
    broker: str = typer.Option("127.0.0.1:1883", "--broker", help="MQTT broker host:port."),
    state_dir: Path = typer.Option(Path("/var/lib/edgepilot"), "--state-dir", help="Outbox, cached edge-server info, installed bundles."),
    bundle: Path = typer.Option(None, "--bundle", help="Signed DTAC bundle to start with (else the installed one, else the threshold rule)."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", help="Ed25519 public key (or directory of *.pub) bundles must be signed with."),
    profile: str = typer.Option("jetson-nano", "--profile", help="Hardware profile (emulated compute speed, runtime choice)."),
    username: str = typer.Option(None, "--username", envvar="EDGEPILOT_MQTT_USERNAME"),
    password: str = typer.Option(None, "--password", envvar="EDGEPILOT_MQTT_PASSWORD"),
    tls_ca: Path = typer.Option(None, "--tls-ca", help="CA certificate of the broker (enables TLS)."),
    tls_cert: Path = typer.Option(None, "--tls-cert"),
    tls_key: Path = typer.Option(None, "--tls-key"),
    mode: str = typer.Option("decentralized", "--mode", help="decentralized (DTAC) or centralized (baseline)."),
    log_level: str = typer.Option("INFO", "--log-level"),
) -> None:
    """Run one UE agent until SIGTERM: own task in, DTAC decision out, executed locally or offloaded."""
    from edgepilot.edge_agent.fleet.agent import AgentConfig, UEAgent
    from edgepilot.edge_agent.fleet.ota import PolicyUpdater
    from edgepilot.edge_agent.fleet.policy import load_bundle_policy

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter(f"--broker must be host:port, got {broker!r}")
    cfg = AgentConfig(ue_id=ue_id, edge_id=edge_id, state_dir=state_dir, broker_host=host, broker_port=int(port),
                      username=username, password=password, tls_ca=str(tls_ca) if tls_ca else None,
                      tls_cert=str(tls_cert) if tls_cert else None, tls_key=str(tls_key) if tls_key else None,
                      hardware_profile=profile, mode=mode, trusted_keys=[str(k) for k in trusted_key])
    updater = PolicyUpdater(state_dir / "bundles", [str(k) for k in trusted_key]) if trusted_key else None
    policy = load_bundle_policy(bundle, [str(k) for k in trusted_key]) if bundle else None
    agent = UEAgent(cfg, policy=policy, updater=updater).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    typer.echo(f"agent {ue_id} (edge {edge_id}) on {broker}; Ctrl-C to stop")
    done.wait()
    agent.stop()
    typer.echo(json.dumps(agent.summary()))


def emulate_cmd(
    policy: str = typer.Option("dtac", "--policy", help="dtac (needs --bundle), threshold, local, or centralized (baseline)."),
    bundle: Path = typer.Option(None, "--bundle", help="Signed DTAC bundle (edgepilot export ... --key)."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", help="Public key the bundle is signed with."),
    ues: int = typer.Option(12, "--ues", "-n", min=1, help="N, UE agents."),
    edges: int = typer.Option(3, "--edges", "-k", min=1, help="K, edge servers (N must be a multiple of K)."),
    rounds: int = typer.Option(10, "--rounds", "-r", min=1, help="R, rounds."),
    scenario: str = typer.Option("fig5", "--scenario", help="Scenario preset or YAML the tasks and channels are drawn from."),
    time_scale: float = typer.Option(0.1, "--time-scale", help="Wall seconds per emulated second."),
    wire_scale: float = typer.Option(1.0, "--wire-scale", min=0.0, max=1.0, help="Fraction of each task's bytes that really travel over gRPC."),
    broker: str = typer.Option("embedded", "--broker", help="embedded (amqtt, in-process), mosquitto (started here), external."),
    broker_port: int = typer.Option(0, "--broker-port", help="Port (external broker: required; else 0 = a free one)."),
    agent_procs: int = typer.Option(2, "--agent-procs", min=0, help="Agent-host processes (0 = threads in this process)."),
    profile: str = typer.Option("jetson-nano", "--profile", help="Hardware profile the UEs emulate."),
    seed: int = typer.Option(0, "--seed"),
    decision_window_ms: float = typer.Option(None, "--decision-window-ms", min=1.0,
                                             help="Task issue -> uplink frame, wall ms (default 200 + 8 per UE; centralized 500 + 25 per UE)."),
    restart_broker_at: int = typer.Option(None, "--restart-broker-at", help="Restart Mosquitto before this round (fault drill)."),
    deadline_factor: float = typer.Option(0.0, "--deadline-factor", min=0.0,
                                          help="Task deadline = factor x the UE's local time T1*(0); an offload past it runs "
                                               "locally. 0 (default): none, like the system model the rounds are compared with."),
    out: Path = typer.Option(Path("runs/emulate"), "--out", "-o", help="Run directory (summary.json, summary.png)."),
) -> None:
    """Emulated fleet: broker, K edge servers, N UE agents, R rounds; measured vs simulator."""
    from edgepilot.emulation.coordinator import EmulateConfig, format_table, run_emulation

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = EmulateConfig(scenario=scenario, num_ues=ues, num_edges=edges, rounds=rounds, policy=policy,
                        bundle=str(bundle) if bundle else None, trusted_keys=[str(k) for k in trusted_key],
                        time_scale=time_scale, wire_scale=wire_scale, broker=broker, broker_port=broker_port,
                        agent_procs=agent_procs, hardware_profile=profile, seed=seed, out_dir=str(out),
                        restart_broker_at=restart_broker_at, deadline_factor=deadline_factor,
                        decision_window_s=None if decision_window_ms is None else decision_window_ms / 1e3)
    try:
        cfg.validate()
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    summary = run_emulation(cfg, progress=lambda m: typer.echo(m, err=True))
    typer.echo(format_table(summary))
    typer.echo(f"wrote {out / 'summary.json'}" + (f" and {summary['png']}" if summary.get("png") else ""))


def register(app: typer.Typer) -> None:
    app.command("agent")(agent_cmd)
    app.command("emulate")(emulate_cmd)
