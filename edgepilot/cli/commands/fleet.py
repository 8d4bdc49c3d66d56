"""``edgepilot agent`` (one UE agent, device side) and ``edgepilot emulate`` (the
emulated fleet on a laptop). See docs/fleet.md."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from edgepilot.cli.errors import failed, usage_error
from edgepilot.emulation.config import EmulateConfig, parse_host_port


def agent_cmd(
    ue_id: str = typer.Option(..., "--ue-id", help="This UE's id (a topic level and the broker user name)."),
    edge_id: int = typer.Option(..., "--edge-id", min=0, help="Index k of the UE's edge server."),
    broker: str = typer.Option("127.0.0.1:1883", "--broker", help="MQTT broker, HOST:PORT."),
    state_dir: Path = typer.Option(Path("/var/lib/edgepilot"), "--state-dir", help="Outbox, cached edge-server info, installed bundles."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Signed DTAC bundle to start with (else the installed one, else the threshold rule)."),
    trusted_key: List[Path] = typer.Option([], "--trusted-key", "-T", help="Ed25519 public key (or directory of *.pub) bundles must be signed with (repeatable)."),
    profile: str = typer.Option("jetson-nano", "--profile", "-p", help="Hardware profile (emulated compute speed, runtime choice)."),
    username: Optional[str] = typer.Option(None, "--username", envvar="EDGEPILOT_MQTT_USERNAME", help="MQTT user name."),
    password: Optional[str] = typer.Option(None, "--password", envvar="EDGEPILOT_MQTT_PASSWORD", help="MQTT password."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="CA certificate of the broker (enables TLS)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="Client certificate (mTLS)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="Client key (mTLS)."),
    mode: str = typer.Option("decentralized", "--mode", help="decentralized (DTAC) or centralized (baseline)."),
    log_level: str = typer.Option("INFO", "--log-level", help="Python log level."),
) -> None:
    """Run one UE agent until SIGTERM: own task in, DTAC decision out, executed locally or
    offloaded. Exit 1 when the --bundle is refused."""
    from edgepilot.edge_agent.fleet.agent import AgentConfig, UEAgent
    from edgepilot.edge_agent.fleet.ota import PolicyUpdater
    from edgepilot.edge_agent.fleet.policy import load_bundle_policy

    try:
        host, port = parse_host_port(broker)
    except ValueError as err:
        usage_error(f"--broker: {err}")
    if port == 0:
        usage_error(f"--broker: the broker's port, got {broker!r}")
    if mode not in ("decentralized", "centralized"):
        usage_error(f"--mode must be decentralized or centralized, got {mode!r}")
    if bundle is not None and not bundle.is_file():
        usage_error(f"--bundle: no such file: {bundle}")
    for k in trusted_key:
        if not k.exists():
            usage_error(f"--trusted-key: no such file or directory: {k}")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    keys = [str(k) for k in trusted_key]
    try:
        cfg = AgentConfig(ue_id=ue_id, edge_id=edge_id, state_dir=state_dir, broker_host=host, broker_port=port,
                          username=username, password=password, tls_ca=str(tls_ca) if tls_ca else None,
                          tls_cert=str(tls_cert) if tls_cert else None, tls_key=str(tls_key) if tls_key else None,
                          hardware_profile=profile, mode=mode, trusted_keys=keys)
    except ValueError as err:
        usage_error(str(err))
    updater = PolicyUpdater(state_dir / "bundles", keys) if trusted_key else None
    try:
        policy = load_bundle_policy(bundle, keys) if bundle else None
    except (ValueError, RuntimeError) as err:  # BundleError: not signed by a trusted key, tampered, ...
        failed(f"--bundle: {err}")
    agent = UEAgent(cfg, policy=policy, updater=updater).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    typer.echo(f"agent {ue_id} (edge {edge_id}) on {broker}; Ctrl-C to stop")
    while not done.wait(1.0):
        reason = agent.fatal_reason()
        if reason is not None:  # exit non-zero: systemd (Restart=always) starts a fresh agent
            agent.stop(flush_timeout=2)
            failed(f"agent {ue_id}: {reason}")
    agent.stop()
    typer.echo(json.dumps(agent.summary()))


_EMULATE_DEFAULTS = EmulateConfig.model_fields


def _default(name: str) -> Any:
    return _EMULATE_DEFAULTS[name].get_default(call_default_factory=True)


#: command-line parameter -> EmulateConfig field, where their names differ
_FIELD_OF = {"trusted_key": "trusted_keys"}


def _option_of(field: str) -> str:
    param = next((p for p, f in _FIELD_OF.items() if f == field), field)
    return "--" + param.replace("_", "-")


def emulate_cmd(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of emulate settings (fields of EmulateConfig, named like these options: ues, edges, broker_kind, trusted_keys, ...)."),
    overrides: List[str] = typer.Option([], "--set", help="KEY=VALUE over the --config file (repeatable); the options below win over both."),
    policy: str = typer.Option(_default("policy"), "--policy", help="dtac (the shipped DTAC bundle unless --bundle), threshold, local, or centralized (baseline)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Signed DTAC bundle (edgepilot export ... --signing-key); default: the shipped one, signed here with a key made on the spot."),
    trusted_key: List[Path] = typer.Option([], "--trusted-key", "-T", help="Public key the --bundle is signed with (repeatable)."),
    ues: int = typer.Option(_default("ues"), "--ues", "-n", help="N, UE agents."),
    edges: int = typer.Option(_default("edges"), "--edges", "-k", help="K, edge servers (N must be a multiple of K; at most 64)."),
    rounds: int = typer.Option(_default("rounds"), "--rounds", "-r", help="R, rounds."),
    scenario: str = typer.Option(_default("scenario"), "--scenario", help="Scenario preset or YAML the tasks and channels are drawn from."),
    time_scale: float = typer.Option(_default("time_scale"), "--time-scale", help="Wall seconds per emulated second, in (0, 10]."),
    wire_scale: float = typer.Option(_default("wire_scale"), "--wire-scale", help="Fraction of each task's bytes that really travel over gRPC, in [0, 1]."),
    broker_kind: str = typer.Option(_default("broker_kind"), "--broker-kind", help="embedded (amqtt, in-process), mosquitto (started here) or external (at --broker)."),
    broker: Optional[str] = typer.Option(None, "--broker", help="MQTT broker, HOST:PORT: the external broker (required with --broker-kind external), else where the started one listens (default 127.0.0.1:0, a free port)."),
    username: Optional[str] = typer.Option(None, "--username", help="Coordinator's MQTT user name on the external broker (with --password-file)."),
    password_file: Optional[Path] = typer.Option(None, "--password-file", help="JSON of MQTT user -> password (credentials.json of the shipped Mosquitto config): the coordinator's and each UE's (user = UE id)."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="CA certificate of the external broker (enables TLS)."),
    agent_procs: int = typer.Option(_default("agent_procs"), "--agent-procs", help="Agent-host processes (0 = threads in this process)."),
    profile: str = typer.Option(_default("profile"), "--profile", "-p", help="Hardware profile the UEs emulate."),
    seed: int = typer.Option(_default("seed"), "--seed", help="Seed of placements, tasks and fading."),
    decision_window_ms: Optional[float] = typer.Option(None, "--decision-window-ms", help="Task issue -> uplink frame, wall ms (default 200 + 8 per UE; centralized 500 + 25 per UE)."),
    restart_broker_at: Optional[int] = typer.Option(None, "--restart-broker-at", help="Restart Mosquitto before this round (fault drill; --broker-kind mosquitto)."),
    deadline_factor: float = typer.Option(_default("deadline_factor"), "--deadline-factor",
                                          help="Task deadline = factor x the UE's local time T1*(0); an offload past it runs "
                                               "locally. 0 (default): none, like the system model the rounds are compared with."),
    out: Path = typer.Option(Path(_default("out")), "--out", "-o", help="Run directory (summary.json, summary.png)."),
) -> None:
    """Emulated fleet: broker, K edge servers, N UE agents, R rounds; measured vs simulator.
    Settings come from --config, then --set, then the options given here."""
    from edgepilot.config import ConfigError, apply_overrides, read_config_file
    from pydantic import ValidationError

    given = {name: value for name, value in ctx.params.items()
             if name not in ("config", "overrides") and ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")}
    try:
        data = read_config_file(config) if config is not None else {}
        data = apply_overrides(data, overrides)
    except ConfigError as err:
        usage_error(str(err))
    source = {key: f"{config}: {key}" for key in data}
    source.update({item.split("=", 1)[0].strip(): f"--set {item.split('=', 1)[0].strip()}" for item in overrides})
    for name, value in given.items():
        field = _FIELD_OF.get(name, name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        data[field] = value
        source[field] = _option_of(field)
    try:
        cfg = EmulateConfig.model_validate(data)
    except ValidationError as err:
        usage_error(describe_config_error(err, source))
    run_emulate(cfg)


def describe_config_error(err: Any, source: Dict[str, str]) -> str:
    """A pydantic ValidationError as one line, each problem named by where it came from."""
    parts = []
    for e in err.errors():
        msg = str(e.get("msg", "invalid"))
        msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
        loc = [str(x) for x in e.get("loc", ())]
        if not loc:  # a rule between fields: its message names them
            parts.append(msg)
            continue
        where = source.get(loc[0], _option_of(loc[0]) if loc[0] in _EMULATE_DEFAULTS else loc[0])
        where += "".join(f"[{x}]" if x.isdigit() else f".{x}" for x in loc[1:])
        got = e.get("input")
        shown = f" (got {got!r})" if e.get("type") not in ("value_error", "extra_forbidden") and isinstance(got, (int, float, str)) else ""
        parts.append(f"{where}: {msg}{shown}")
    return "; ".join(parts)


def run_emulate(cfg: EmulateConfig) -> None:
    """Run the emulation of ``cfg`` and print its summary table (``emulate`` and ``demo``)."""
    from edgepilot.emulation.coordinator import format_table, run_emulation

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        summary = run_emulation(cfg, progress=lambda m: typer.echo(m, err=True))
    except (RuntimeError, OSError) as err:  # a broker that does not start, agents that never come online, ...
        failed(str(err))
    typer.echo(format_table(summary))
    out = Path(cfg.out)
    typer.echo(f"wrote {out / 'summary.json'}" + (f" and {summary['png']}" if summary.get("png") else ""))


def register(app: typer.Typer) -> None:
    app.command("agent")(agent_cmd)
    app.command("emulate")(emulate_cmd)
