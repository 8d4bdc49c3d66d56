"""Flash the edgepilot UE agent onto a Jetson board over SSH (``edgepilot flash``).

What one flash does, in order:

1. **Locally, before any connection**: the CLI verifies the signed policy bundle with
   the same code the agent uses (``edgepilot.edge_agent.bundle``); a tampered or
   wrongly signed bundle is refused there and nothing is uploaded. It builds the
   edgepilot wheel from the checkout (``python -m build``) or takes ``--wheel PATH``.
   :func:`build_payload` assembles the payload: that wheel (the device installs its
   base dependencies only: no torch), the bundle, the trusted public key, an optional
   broker CA, ``agent.env``, ``install.sh``, the systemd unit, ``flash.json`` and
   ``SHA256SUMS``. ``--dry-run`` stops here and prints this plan: every file with size
   and SHA-256, and every remote command.
2. **Connect** with key authentication. The host key must be in ``known_hosts``
   (strict, like OpenSSH's default); ``accept_new_host_key`` records an unknown key
   (never a changed one).
3. **Upload** over SFTP into a staging directory (mode 0700), then hash every
   uploaded file on the board (``sha256sum``) and compare with the local hashes.
4. **Install**: ``install.sh --payload STAGING --release ID --prefix PREFIX``. It
   builds ``PREFIX/releases/ID`` (a virtual environment with the wheel installed, on
   the board's Python >= 3.8) beside the running install, checks it with its own code
   (imports, hardware profile, bundle signature), then switches ``PREFIX/current``
   atomically and keeps the one it replaced as ``PREFIX/previous`` (``rollback``
   switches back). A failure leaves ``current`` as it was. The staging directory is
   removed in every case (``agent.env`` may hold the MQTT password).

This module is laptop-side tooling kept beside the board's assets; it imports nothing
of ``edgepilot`` above ``hardware`` (the layers of docs/decisions.md), so the bundle is
verified by the caller. paramiko is imported inside the functions that connect, so the
dry run and the payload builder work without it (it is the ``flash`` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

REPO_FILES = Path(__file__).resolve().parent  # hardware/jetson
PACKAGE_ROOT = REPO_FILES.parent.parent.parent  # where the edgepilot/ package lives (a checkout: pyproject.toml too)
# The UE id rule of the MQTT topics (edgepilot.edge_agent.fleet.topics.UE_ID_PATTERN, which
# tests/test_flash_ssh.py checks is the same) and of install.sh; repeated here because this
# layer sits below edge_agent.
UE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
WHEEL_NAME = re.compile(r"^edgepilot-[^-]+-py3-none-any\.whl$")
DEFAULT_PREFIX = "/opt/edgepilot"
UPLOAD_CHUNK = 1 << 16
PATH_FIELDS = ("ssh_key", "bundle", "trusted_key", "tls_ca", "password_file", "known_hosts", "wheel")
DEFAULT_STAGING = ".edgepilot-staging"  # relative: under the SSH user's home


class FlashError(RuntimeError):
    """A flash that did not happen; the message says why and what to do."""


class BundleRefused(FlashError):
    """The policy bundle failed local verification; nothing was uploaded."""


class HostKeyError(FlashError):
    """The board's host key is unknown (and not accepted) or has changed."""


class AuthError(FlashError):
    """The board refused the SSH key."""


class UnreachableError(FlashError):
    """No SSH connection to the board (refused, timed out, name not resolved)."""


class RemoteCommandError(FlashError):
    """A command on the board exited non-zero; ``stderr`` holds what it said."""

    def __init__(self, message: str, command: str, exit_status: int, stdout: str, stderr: str):
        super().__init__(message)
        self.command, self.exit_status, self.stdout, self.stderr = command, exit_status, stdout, stderr


# --------------------------------------------------------------------------- target


class FlashTarget(BaseModel):
    """One board to flash: how to reach it and what to install. Also one host entry
    of an inventory YAML (after its ``defaults`` are merged in)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(min_length=1)
    ssh_key: Path  # SSH private key (unencrypted, or held by nothing else: no agent is used)
    known_hosts: Path = Field(Path("~/.ssh/known_hosts"), validate_default=True)  # validated: ~ expanded like a given path
    accept_new_host_key: bool = False
    # what to install (not needed for a rollback)
    ue_id: Optional[str] = Field(None, pattern=UE_ID_PATTERN.pattern)
    edge_id: int = Field(0, ge=0)
    broker: Optional[str] = Field(None, pattern=r"^[^\s:]+:\d{1,5}$")  # host:port
    profile: str = Field("jetson-nano", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    bundle: Optional[Path] = None
    trusted_key: Optional[Path] = None
    tls_ca: Optional[Path] = None  # broker CA certificate: TLS in the agent
    password_file: Optional[Path] = None
    wheel: Optional[Path] = None  # the edgepilot wheel to install; None: built from the checkout
    prefix: str = DEFAULT_PREFIX
    staging_dir: str = DEFAULT_STAGING
    remote_python: Optional[str] = None  # None: install.sh picks python3 if >= 3.8, else python3.12 ... python3.8
    systemd: bool = True  # False: --no-systemd (unprivileged, into any prefix)
    offline_deps: bool = False  # the board's venv reuses remote_python's packages instead of pip
    sudo: bool = False  # run install.sh with `sudo -n` (SSH user is not root)
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(900.0, gt=0)

    @field_validator(*PATH_FIELDS)
    @classmethod
    def _expand_home(cls, v: Optional[Path]) -> Optional[Path]:
        return None if v is None else v.expanduser()  # `~/bundle` as a shell would

    @field_validator("prefix")
    @classmethod
    def _absolute_prefix(cls, v: str) -> str:
        if not v.startswith("/") or "\n" in v:
            raise ValueError("must be an absolute path on the board")
        return v.rstrip("/") or "/"

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class Inventory(BaseModel):
    """``defaults`` (any FlashTarget field) and ``hosts`` (each at least ``host`` and
    ``ue_id``)."""

    model_config = ConfigDict(extra="forbid")
    defaults: dict = Field(default_factory=dict)
    hosts: List[dict] = Field(min_length=1)


def load_inventory(path: Union[str, os.PathLike], overrides: Optional[dict] = None) -> List[FlashTarget]:
    """Targets of an inventory YAML; relative paths resolve against the YAML's directory.
    ``overrides`` (from the command line) beat ``defaults`` but not a host's own fields."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FlashError(f"inventory {path}: cannot read it: {err}") from None
    try:
        inv = Inventory.model_validate(raw)
    except ValidationError as err:
        raise FlashError(f"inventory {path}: {_validation_message(err)}") from None
    def resolve(fields: dict) -> dict:  # paths written in the YAML are relative to the YAML
        out = dict(fields)
        for name in PATH_FIELDS:
            if out.get(name) is not None:
                p = Path(str(out[name])).expanduser()
                out[name] = p if p.is_absolute() else path.parent / p
        return out

    targets = []
    for i, host in enumerate(inv.hosts):
        merged = {**resolve(inv.defaults), **(overrides or {}), **resolve(host)}
        try:
            targets.append(FlashTarget.model_validate(merged))
        except ValidationError as err:
            raise FlashError(f"inventory {path}: hosts[{i}] ({host.get('host', '?')}): {_validation_message(err)}") from None
    return targets


def _validation_message(err: ValidationError, as_options: bool = False) -> str:
    """One line per bad field; ``as_options``: named as command-line options (--ue-id)."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        if as_options:
            loc = "--" + loc.replace("_", "-")
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- payload


@dataclass
class PayloadFile:
    name: str  # path inside the staging directory
    data: bytes = field(repr=False)
    mode: int = 0o644
    secret: bool = False  # never printed (agent.env may hold the MQTT password)

    @cached_property  # read for flash.json, SHA256SUMS, the plan and the upload check: hash once
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Payload:
    target: FlashTarget
    release: str
    files: List[PayloadFile]
    bundle_version: str
    bundle_key_id: str
    warnings: List[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def build_wheel(out_dir: Union[str, os.PathLike]) -> Path:
    """The edgepilot wheel, built from the checkout this module lives in (``python -m
    build --wheel --no-isolation`` on a clean copy of the package, so nothing stale in a
    ``build/`` directory gets in). From an installed wheel there is nothing to build:
    then the caller must give one (``--wheel``)."""
    if not (PACKAGE_ROOT / "pyproject.toml").is_file():
        raise FlashError("edgepilot is not installed from a checkout, so there is no wheel to build: "
                         "give --wheel PATH (the edgepilot-*.whl this install came from)")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="edgepilot-wheel-") as tmp:
        src = Path(tmp) / "src"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        shutil.copytree(PACKAGE_ROOT / "edgepilot", src / "edgepilot", ignore=skip)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(PACKAGE_ROOT / name, src / name)
        r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out_dir), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-5:]
            raise FlashError("building the edgepilot wheel failed (needs the `build` and `setuptools` packages: "
                             "pip install -e '.[dev]'), or give --wheel PATH: " + " | ".join(tail))
    wheels = sorted(out_dir.glob("edgepilot-*-py3-none-any.whl"))
    if len(wheels) != 1:
        raise FlashError(f"expected one edgepilot wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def new_release_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_target(target: FlashTarget) -> None:
    """What a flash (not a rollback) needs: the fields and the local files. FlashError if not."""
    missing = [n for n in ("ue_id", "broker", "bundle", "trusted_key") if getattr(target, n) is None]
    if missing:
        raise FlashError(f"{target.host}: to flash, give " + ", ".join("--" + n.replace("_", "-") for n in missing))
    for name in ("ssh_key", "bundle", "trusted_key", "tls_ca", "password_file", "wheel"):
        p = getattr(target, name)
        if p is not None and not p.is_file():
            raise FlashError(f"--{name.replace('_', '-')} {p}: no such file")
    if target.wheel is not None and not WHEEL_NAME.match(target.wheel.name):
        raise FlashError(f"--wheel {target.wheel}: not an edgepilot wheel (edgepilot-VERSION-py3-none-any.whl)")


def build_payload(target: FlashTarget, manifest: Any, wheel: Path) -> Payload:
    """Every file of one board's payload. ``manifest``: the bundle's manifest, verified
    by the caller against ``target.trusted_key`` (edgepilot.edge_agent.bundle.verify_bundle);
    ``wheel``: the edgepilot wheel the board installs."""
    check_target(target)
    if not WHEEL_NAME.match(wheel.name) or not wheel.is_file():
        raise FlashError(f"{wheel}: not an edgepilot wheel (edgepilot-VERSION-py3-none-any.whl)")
    bundle_target = manifest.target.get("name") if isinstance(manifest.target, dict) else None
    warnings = []
    if bundle_target and bundle_target != target.profile:
        warnings.append(f"bundle was exported for profile {bundle_target!r}, board profile is {target.profile!r}")
    release = new_release_id()

    env_lines = [
        f"EDGEPILOT_UE_ID={target.ue_id}",
        f"EDGEPILOT_EDGE_ID={target.edge_id}",
        f"EDGEPILOT_BROKER={target.broker}",
        f"EDGEPILOT_PROFILE={target.profile}",
        f"EDGEPILOT_MQTT_USERNAME={target.ue_id}",
    ]
    if target.password_file is not None:
        password = target.password_file.read_text().strip()
        if "\n" in password:
            raise FlashError(f"--password-file {target.password_file}: the password must be one line")
        env_lines.append(f"EDGEPILOT_MQTT_PASSWORD={password}")

    files = [
        PayloadFile(wheel.name, wheel.read_bytes()),
        PayloadFile("policy.bundle", target.bundle.read_bytes()),
        PayloadFile("trusted_key.pub", target.trusted_key.read_bytes()),
    ]
    if target.tls_ca is not None:
        files.append(PayloadFile("ca.pem", target.tls_ca.read_bytes()))
    files += [
        PayloadFile("agent.env", ("\n".join(env_lines) + "\n").encode(), mode=0o600, secret=True),
        PayloadFile("install.sh", (REPO_FILES / "install.sh").read_bytes(), mode=0o755),
        PayloadFile("edgepilot-agent.service", (REPO_FILES / "edgepilot-agent.service").read_bytes()),
    ]
    info = {
        "release": release,
        "ue_id": target.ue_id,
        "edge_id": target.edge_id,
        "broker": target.broker,
        "profile": target.profile,
        "bundle": {"version": manifest.version, "kind": manifest.kind, "key_id": manifest.key_id,
                   "manifest_sha256": manifest.digest, "target": bundle_target},
        "wheel": wheel.name,
        "edgepilot_version": wheel.name.split("-")[1],
        "flashed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {f.name: f.sha256 for f in files},
    }
    files.append(PayloadFile("flash.json", (json.dumps(info, indent=2) + "\n").encode()))
    sums = "".join(f"{f.sha256}  {f.name}\n" for f in files)
    files.append(PayloadFile("SHA256SUMS", sums.encode()))
    return Payload(target, release, files, manifest.version, manifest.key_id or "", warnings)


def write_payload(payload: Payload, directory: Union[str, os.PathLike]) -> Path:
    """The payload as files in a local directory (what the staging directory on the
    board holds after the upload): for a board reached another way, and for tests."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for f in payload.files:
        p = directory / f.name
        p.touch(mode=0o600)
        p.write_bytes(f.data)
        p.chmod(f.mode)
    return directory


# --------------------------------------------------------------------------- plan


def staging_path(target: FlashTarget, release: str) -> str:
    return posixpath.join(target.staging_dir, release)


def _q(s: str) -> str:
    return shlex.quote(s)


def _mkdir_staging_command(staging: str) -> str:
    """Create the staging directory (0700) and print its absolute path."""
    return f"mkdir -p -m 700 {_q(staging)} && cd {_q(staging)} && pwd"


def _sha256sum_command(directory: str, names: List[str]) -> str:
    return f"cd {_q(directory)} && sha256sum -- {' '.join(_q(n) for n in names)}"


def _cleanup_command(staging: str) -> str:
    """Remove the staging directory, and its parent if that is then empty."""
    return f"rm -rf -- {_q(staging)}; rmdir -- {_q(posixpath.dirname(staging))}"


def _install_sh_command(target: FlashTarget, args: List[str]) -> str:
    cmd = " ".join(_q(a) for a in args)
    return f"sudo -n {cmd}" if target.sudo else cmd


def install_command(target: FlashTarget, staging_abs: str, release: str) -> str:
    args = ["bash", f"{staging_abs}/install.sh", "--payload", staging_abs, "--release", release,
            "--prefix", target.prefix]
    if target.remote_python:
        args += ["--python", target.remote_python]
    if not target.systemd:
        args.append("--no-systemd")
    if target.offline_deps:
        args.append("--offline-deps")
    return _install_sh_command(target, args)


def rollback_command(target: FlashTarget) -> str:
    args = ["bash", f"{target.prefix}/current/install.sh", "--rollback", "--prefix", target.prefix]
    if not target.systemd:
        args.append("--no-systemd")
    return _install_sh_command(target, args)


def plan_commands(payload: Payload) -> List[str]:
    t = payload.target
    st = staging_path(t, payload.release)
    return [
        _mkdir_staging_command(st),
        f"sftp put {len(payload.files)} files into {st}/",
        f"{_sha256sum_command(st, [f.name for f in payload.files])}   # compared with the local hashes",
        install_command(t, f"<home>/{st}" if not st.startswith("/") else st, payload.release),
        f"{_cleanup_command(st)}   # also when a step fails",
    ]


def format_plan(payload: Payload) -> str:
    t = payload.target
    lines = [
        f"flash plan for {t.address} (UE {t.ue_id}, edge {t.edge_id}, broker {t.broker}, profile {t.profile})",
        f"  release {payload.release} -> {t.prefix}/releases/{payload.release}, then {t.prefix}/current"
        " (the release it replaces kept as previous, for --rollback)",
        f"  bundle {t.bundle}: verified, version {payload.bundle_version}, signed by key {payload.bundle_key_id}",
    ]
    lines += [f"  warning: {w}" for w in payload.warnings]
    lines.append(f"  files ({len(payload.files)}, {payload.total_bytes} bytes):")
    width = max(len(f.name) for f in payload.files)
    for f in payload.files:
        lines.append(f"    {f.name:<{width}}  {f.size:>9}  sha256:{f.sha256}  mode {f.mode:o}")
    lines.append("  remote commands:")
    lines += [f"    {c}" for c in plan_commands(payload)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- ssh


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key):
        super().__init__(hostname)
        self.hostname, self.key = hostname, key


def _host_key_policy(accept_new: bool, known_hosts: Path):
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            if not accept_new:
                raise _UnknownHostKey(hostname, key)
            client.get_host_keys().add(hostname, key.get_name(), key)
            known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(known_hosts, "a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")

    return Policy()


def connect(target: FlashTarget):
    """An authenticated paramiko SSHClient, or a FlashError subclass saying why not."""
    import paramiko

    key_path = target.ssh_key
    try:
        pkey = paramiko.PKey.from_path(key_path)
    except FileNotFoundError:
        raise FlashError(f"--ssh-key {key_path}: no such file") from None
    except paramiko.PasswordRequiredException:
        raise FlashError(f"--ssh-key {key_path} is passphrase-protected; use an unencrypted deploy key") from None
    except (paramiko.SSHException, ValueError, OSError) as err:
        raise FlashError(f"--ssh-key {key_path}: not a usable private key ({err})") from None
    known_hosts = target.known_hosts
    client = paramiko.SSHClient()
    if known_hosts.is_file():
        try:
            client.get_host_keys().load(str(known_hosts))
        except (OSError, paramiko.SSHException) as err:
            raise FlashError(f"known_hosts {known_hosts}: cannot read it: {err}") from None
    client.set_missing_host_key_policy(_host_key_policy(target.accept_new_host_key, known_hosts))
    where = f"{target.host}:{target.port}"
    try:
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=pkey, look_for_keys=False,
                           allow_agent=False, timeout=target.connect_timeout_s, banner_timeout=target.connect_timeout_s,
                           auth_timeout=target.connect_timeout_s)
        except BaseException:
            client.close()  # whatever failed; the handlers below only say why
            raise
    except _UnknownHostKey as err:
        raise HostKeyError(
            f"host key of {err.hostname} is not in {known_hosts} ({err.key.get_name()} {err.key.fingerprint}); "
            f"check the fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and re-run with "
            f"--accept-new-host-key, or add it to known_hosts") from None
    except paramiko.BadHostKeyException as err:
        raise HostKeyError(
            f"host key of {where} has CHANGED (got {err.key.fingerprint}, known_hosts {known_hosts} has "
            f"{err.expected_key.fingerprint}); refusing to connect: someone may be intercepting the connection, "
            f"or the board was re-imaged (then remove its line from known_hosts)") from None
    except paramiko.AuthenticationException as err:
        raise AuthError(f"authentication failed for {target.address} with key {key_path} ({err}); "
                        f"is the public key in the board's ~/.ssh/authorized_keys?") from None
    except (socket.timeout, TimeoutError) as err:
        raise UnreachableError(f"cannot reach {where}: timed out after {target.connect_timeout_s:g} s ({err})") from None
    except socket.gaierror as err:
        raise UnreachableError(f"cannot reach {where}: host name not resolved ({err})") from None
    except (paramiko.ssh_exception.NoValidConnectionsError, OSError) as err:
        raise UnreachableError(f"cannot reach {where}: {err}") from None
    except paramiko.SSHException as err:
        if "banner" in str(err):
            raise UnreachableError(f"cannot reach {where}: no SSH server answered within {target.connect_timeout_s:g} s "
                                   f"({err})") from None
        raise UnreachableError(f"SSH session with {where} failed: {err}") from None
    return client


def run_remote(client, command: str, timeout_s: float = 900.0, on_line: Optional[Callable[[str], None]] = None,
               check: bool = True) -> Tuple[int, str, str]:
    """Run ``command`` on the board; stdout and stderr are drained together (no
    deadlock on a chatty command). Raises RemoteCommandError on a non-zero exit."""
    chan = client.get_transport().open_session()
    chan.settimeout(timeout_s)
    chan.exec_command(command)
    chan.shutdown_write()
    out, err = bytearray(), bytearray()
    pending = b""
    deadline = time.monotonic() + timeout_s
    while True:
        got = False
        if chan.recv_ready():
            chunk = chan.recv(65536)
            out += chunk
            got = True
            if on_line is not None:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace"))
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            got = True
        if not got:
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                chan.close()
                raise RemoteCommandError(f"remote command timed out after {timeout_s:g} s: {command}", command, -1,
                                         out.decode(errors="replace"), err.decode(errors="replace"))
            time.sleep(0.01)
    if on_line is not None and pending:
        on_line(pending.decode(errors="replace"))
    status = chan.recv_exit_status()
    chan.close()
    o, e = out.decode(errors="replace"), err.decode(errors="replace")
    if check and status != 0:
        raise RemoteCommandError(f"remote command failed (exit {status}): {command}\n{e.strip() or o.strip()}",
                                 command, status, o, e)
    return status, o, e


def remote_sha256(client, directory: str, names: List[str]) -> Dict[str, str]:
    """SHA-256 of files on the board (coreutils sha256sum, which install.sh needs too)."""
    status, out, err = run_remote(client, _sha256sum_command(directory, names), check=False)
    if status != 0:
        raise RemoteCommandError(f"hashing the uploaded files on the board failed (exit {status}):\n{err.strip()}",
                                 "sha256sum", status, out, err)
    result = {}
    for line in out.splitlines():
        digest, _, name = line.partition("  ")
        result[name.lstrip("*")] = digest.strip()
    return result


# --------------------------------------------------------------------------- flash


@dataclass
class FlashResult:
    host: str
    ue_id: str
    release: str
    current: str
    previous: Optional[str]
    files: int
    bytes_uploaded: int
    output: str


class _Reporter:
    """Progress hooks (the CLI maps them onto rich); all optional."""

    def step(self, message: str) -> None: ...

    def upload_start(self, total_bytes: int) -> None: ...

    def upload_advance(self, nbytes: int) -> None: ...

    def upload_done(self) -> None: ...

    def remote_line(self, line: str) -> None: ...


def _session_errors() -> Tuple[Type[BaseException], ...]:
    """What a broken SSH / SFTP session raises mid-flash (after a successful connect)."""
    import paramiko

    return (paramiko.SSHException, EOFError, OSError)


def _upload(client, payload: Payload, staging_abs: str, rep: _Reporter) -> None:
    """Every payload file into ``staging_abs`` over SFTP, each 0600 before its first byte."""
    sftp = client.open_sftp()
    try:
        rep.upload_start(payload.total_bytes)
        for f in payload.files:
            remote = posixpath.join(staging_abs, f.name)
            with sftp.open(remote, "wb") as fh:
                sftp.chmod(remote, 0o600)  # before any byte: agent.env may hold a password
                fh.set_pipelined(True)
                for off in range(0, f.size, UPLOAD_CHUNK):
                    chunk = f.data[off:off + UPLOAD_CHUNK]
                    fh.write(chunk)
                    rep.upload_advance(len(chunk))
            sftp.chmod(remote, f.mode)
    finally:
        rep.upload_done()  # also when the upload fails: the progress display ends either way
        sftp.close()


def _read_links(client, prefix: str) -> Tuple[str, Optional[str]]:
    _, out, _ = run_remote(client, f"readlink {_q(prefix + '/current')}; readlink {_q(prefix + '/previous')} || true",
                           check=False)
    lines = out.splitlines()
    return (lines[0] if lines else ""), (lines[1] if len(lines) > 1 else None)


def flash(payload: Payload, reporter: Optional[_Reporter] = None) -> FlashResult:
    """Flash one board with its payload (see the module docstring). Raises FlashError subclasses."""
    target = payload.target
    rep = reporter or _Reporter()
    rep.step(f"connecting to {target.address}")
    client = connect(target)
    try:
        st = staging_path(target, payload.release)
        _, out, _ = run_remote(client, _mkdir_staging_command(st))
        staging_abs = out.strip().splitlines()[-1]
        try:
            rep.step(f"uploading {len(payload.files)} files to {staging_abs}")
            _upload(client, payload, staging_abs, rep)
            rep.step("checking SHA-256 of every uploaded file on the board")
            remote_hashes = remote_sha256(client, staging_abs, [f.name for f in payload.files])
            bad = [f.name for f in payload.files if remote_hashes.get(f.name) != f.sha256]
            if bad:
                raise FlashError(f"{target.address}: uploaded file(s) differ from the local ones: {', '.join(bad)}; "
                                 "nothing was installed")
            rep.step(f"installing release {payload.release} into {target.prefix}")
            _, install_out, _ = run_remote(client, install_command(target, staging_abs, payload.release),
                                           timeout_s=target.command_timeout_s, on_line=rep.remote_line)
        finally:
            # the payload holds agent.env (MQTT password): never left behind; the parent goes if empty
            try:
                run_remote(client, f"{_cleanup_command(staging_abs)} 2>/dev/null", check=False)
            except _session_errors():  # connection gone: report the first error, not this one
                pass
        current, previous = _read_links(client, target.prefix)
        return FlashResult(target.host, target.ue_id, payload.release, current, previous, len(payload.files),
                           payload.total_bytes, install_out)
    except RemoteCommandError as err:
        raise RemoteCommandError(f"{target.address}: {err}\nthe previous install (if any) is left as it was",
                                 err.command, err.exit_status, err.stdout, err.stderr) from None
    except _session_errors() as err:
        raise FlashError(f"{target.address}: the SSH session failed ({type(err).__name__}: {err}); "
                         "the previous install (if any) is left as it was") from None
    finally:
        client.close()


def rollback(target: FlashTarget, reporter: Optional[_Reporter] = None) -> FlashResult:
    """Switch the board's ``current`` back to ``previous`` (and restart the service)."""
    rep = reporter or _Reporter()
    rep.step(f"connecting to {target.address}")
    client = connect(target)
    try:
        rep.step(f"rolling back {target.prefix}")
        try:
            _, out, _ = run_remote(client, rollback_command(target), timeout_s=target.command_timeout_s,
                                   on_line=rep.remote_line)
        except RemoteCommandError as err:
            raise RemoteCommandError(f"{target.address}: rollback failed: {err}", err.command, err.exit_status,
                                     err.stdout, err.stderr) from None
        except _session_errors() as err:
            raise FlashError(f"{target.address}: rollback: the SSH session failed ({type(err).__name__}: {err})") from None
        current, previous = _read_links(client, target.prefix)
        return FlashResult(target.host, target.ue_id, posixpath.basename(current), current, previous, 0, 0, out)
    finally:
        client.close()
