"""``edgepilot flash``: install the UE agent, a signed policy bundle and its config on
Jetson boards over SSH; ``--rollback`` switches a board back to its previous install;
``--dry-run`` prints the plan without connecting. See docs/deploying.md.

The work is in :mod:`edgepilot.hardware.jetson.flash`; paramiko (the ``flash`` extra) is imported
only when a connection is made."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from edgepilot.cli.errors import failed, usage_error


def _split_host(spec: str, user: Optional[str]) -> Tuple[str, Optional[str]]:
    if "@" in spec:
        u, _, h = spec.rpartition("@")
        return h, u
    return spec, user


def flash_cmd(
    hosts: Optional[List[str]] = typer.Argument(None, help="Board(s): HOST or USER@HOST. Or give --inventory."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="SSH user on the board(s)."),
    port: int = typer.Option(22, "--port", min=1, max=65535, help="SSH port."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", "-i", help="SSH private key (key authentication only; no agent, no password)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Signed policy bundle (edgepilot export ... --signing-key); verified here before upload."),
    trusted_key: Optional[Path] = typer.Option(None, "--trusted-key", "-T", help="Ed25519 public key the bundle is signed with; installed on the board."),
    profile: str = typer.Option("jetson-nano", "--profile", "-p", help="Hardware profile of the board(s) (jetson-nano, jetson-orin-nano, ...)."),
    broker: Optional[str] = typer.Option(None, "--broker", help="MQTT broker HOST:PORT the agent connects to."),
    ue_id: Optional[List[str]] = typer.Option(None, "--ue-id", help="UE id of each board, in the order of HOST (repeat for several hosts)."),
    edge_id: int = typer.Option(0, "--edge-id", min=0, help="Index k of the boards' edge server."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="CA certificate of the broker (enables TLS in the agent)."),
    password_file: Optional[Path] = typer.Option(None, "--password-file", help="MQTT password (one line) for the UE's broker user."),
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="The edgepilot wheel the boards install (default: built from this checkout with `python -m build`)."),
    inventory: Optional[Path] = typer.Option(None, "--inventory", help="YAML: defaults + hosts (host, ue_id, and any option) instead of HOST arguments."),
    prefix: str = typer.Option("/opt/edgepilot", "--prefix", help="Install root on the board (releases/ID with its venv, current, previous)."),
    known_hosts: Path = typer.Option(Path("~/.ssh/known_hosts"), "--known-hosts", help="known_hosts file checked (and, with --accept-new-host-key, appended to)."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key", help="Record an unknown host key in known_hosts (a changed key is still refused)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Verify the bundle and print the plan (files, sizes, SHA-256, remote commands); connect to nothing."),
    rollback: bool = typer.Option(False, "--rollback", help="Switch the board(s) back to the previous install."),
    remote_python: Optional[str] = typer.Option(None, "--remote-python", help="Python >= 3.8 on the board that creates the release's venv (default: python3 if >= 3.8, else the newest python3.X; python3.8 on JetPack 4.6)."),
    no_systemd: bool = typer.Option(False, "--no-systemd", help="Install without systemd (no unit, no service user, nothing started): unprivileged, any --prefix."),
    offline_deps: bool = typer.Option(False, "--offline-deps", help="No pip on the board: the venv reuses the packages --remote-python already has."),
    sudo: bool = typer.Option(False, "--sudo", help="Run the install with `sudo -n` (the SSH user is not root)."),
    connect_timeout: float = typer.Option(10.0, "--connect-timeout", min=0.1, help="Seconds to wait for the TCP connection, the SSH banner and authentication."),
    staging_dir: str = typer.Option(".edgepilot-staging", "--staging-dir", help="Upload directory on the board (relative: under the SSH user's home); removed after each flash."),
) -> None:
    """Flash the UE agent onto Jetson boards over SSH: verify the bundle here, upload
    the edgepilot wheel (installed on the board without torch), bundle, key, config,
    install script and unit over SFTP, check every file's SHA-256 on the board, install
    into a new release directory and switch PREFIX/current to it (the previous install
    stays for --rollback)."""
    from pydantic import ValidationError
    from rich.console import Console

    from edgepilot.edge_agent.bundle import BundleError, verify_bundle
    from edgepilot.hardware.jetson.flash import FlashError, FlashTarget, _validation_message, build_payload, build_wheel
    from edgepilot.hardware.jetson.flash import check_target, format_plan, load_inventory, rollback_command

    console = Console(stderr=True, highlight=False)
    common = {"port": port, "ssh_key": ssh_key, "wheel": wheel, "bundle": bundle, "trusted_key": trusted_key, "profile": profile,
              "broker": broker, "edge_id": edge_id, "tls_ca": tls_ca, "password_file": password_file, "prefix": prefix,
              "known_hosts": known_hosts, "accept_new_host_key": accept_new_host_key, "remote_python": remote_python,
              "systemd": not no_systemd, "offline_deps": offline_deps, "sudo": sudo, "staging_dir": staging_dir,
              "connect_timeout_s": connect_timeout,
              "user": user}
    try:
        if inventory is not None:
            if hosts:
                usage_error("give HOST arguments or --inventory, not both")
            # options given on the command line (not left at their defaults) apply to every host
            # unless the host's own entry sets them; the defaults are FlashTarget's, not a copy
            overrides = {k: v for k, v in common.items()
                         if v is not None and v != FlashTarget.model_fields[k].default}
            targets = load_inventory(inventory, overrides=overrides)
        else:
            if not hosts:
                usage_error("give at least one HOST (or --inventory FILE)")
            ue_ids = list(ue_id or [])
            if not rollback and len(ue_ids) != len(hosts):
                usage_error(f"{len(hosts)} host(s) but {len(ue_ids)} --ue-id: give one --ue-id per HOST, in order")
            targets = []
            for i, spec in enumerate(hosts):
                host, u = _split_host(spec, user)
                if u is None:
                    usage_error(f"{spec}: no SSH user: give --user or USER@HOST")
                if ssh_key is None:
                    usage_error("--ssh-key is required (the SSH private key)")
                fields = {k: v for k, v in {**common, "user": u}.items() if v is not None}
                targets.append(FlashTarget.model_validate({**fields, "host": host, "ue_id": ue_ids[i] if i < len(ue_ids) else None}))
    except FlashError as err:
        usage_error(str(err))
    except ValidationError as err:  # a command-line value out of bounds: name the option
        usage_error(_validation_message(err, as_options=True))

    if dry_run and rollback:
        for t in targets:
            typer.echo(f"rollback plan for {t.address}:\n    {rollback_command(t)}")
        return

    payloads = {}
    with tempfile.TemporaryDirectory(prefix="edgepilot-flash-") as tmp:
        if not rollback:
            # before any connection: every target complete, every bundle verified here, one wheel for all
            for t in targets:
                try:
                    check_target(t)
                except FlashError as err:
                    usage_error(str(err))
            manifests = {}
            for t in targets:
                try:
                    manifests[t.host, t.port] = verify_bundle(t.bundle, [t.trusted_key])
                except BundleError as err:
                    failed(f"{t.host}: bundle refused before upload: {err}")
            built = None
            for t in targets:
                try:
                    if t.wheel is None and built is None:
                        console.print("building the edgepilot wheel (python -m build)")
                        built = build_wheel(Path(tmp))
                    payloads[t.host, t.port] = build_payload(t, manifests[t.host, t.port], t.wheel or built)
                except FlashError as err:
                    failed(f"{t.host}: {err}")
        if dry_run:
            for t in targets:
                typer.echo(format_plan(payloads[t.host, t.port]))
            typer.echo("dry run: nothing was connected to or uploaded")
            return
        _flash_all(targets, payloads, rollback, console)


def _flash_all(targets: list, payloads: dict, rollback: bool, console) -> None:
    """Flash (or roll back) each board in turn, with progress; a table at the end; exit 1
    if any board failed (the others are still done)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Table

    from edgepilot.hardware.jetson.flash import FlashError, _Reporter, flash
    from edgepilot.hardware.jetson.flash import rollback as do_rollback

    class RichReporter(_Reporter):
        def __init__(self, host: str):
            self.host, self.progress, self.task = host, None, None

        def step(self, message: str) -> None:
            console.print(f"[bold cyan]{self.host}[/] {message}")

        def upload_start(self, total_bytes: int) -> None:
            self.progress = Progress(TextColumn(f"  {self.host} upload"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), console=console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("upload", total=total_bytes)

        def upload_advance(self, nbytes: int) -> None:
            if self.progress is not None:
                self.progress.advance(self.task, nbytes)

        def upload_done(self) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

        def remote_line(self, line: str) -> None:
            console.print(f"  [dim]{self.host}>[/] {line}", markup=True)

    summary = Table(title="edgepilot rollback" if rollback else "edgepilot flash")
    for col in ("host", "ue", "result", "current", "previous"):
        summary.add_column(col, overflow="fold")
    n_failed = 0
    for t in targets:
        rep = RichReporter(t.host)
        try:
            result = do_rollback(t, rep) if rollback else flash(payloads[t.host, t.port], rep)
        except FlashError as err:
            n_failed += 1
            console.print(f"[bold red]error:[/] {err}", markup=True)
            summary.add_row(t.host, t.ue_id or "", "[red]FAILED[/]", "", "")
            continue
        summary.add_row(t.host, t.ue_id or "", "rolled back" if rollback else "installed",
                        result.current, result.previous or "")
    console.print(summary)
    if n_failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("flash")(flash_cmd)
