"""``edgepilot flash`` against a real OpenSSH server on loopback (no mocks of SSH).

The fixture starts ``/usr/sbin/sshd`` with a throwaway host key and an authorized_keys
file holding a fresh client key; the "board" is this machine. The flash ships the
edgepilot wheel (built once per module from this checkout, as ``edgepilot flash`` does
without ``--wheel``); the board installs it with ``--no-systemd --offline-deps`` into a
temp prefix: each release's venv gets the wheel itself (``pip install --no-deps``) and
sees this test's Python packages for the dependencies (so no index is needed). What
differs on a real Jetson: systemd, the service user, pip installing the wheel's base
dependencies, and another CPU architecture.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgepilot.cli import app
from edgepilot.edge_agent.bundle import verify_bundle
from edgepilot.export.bundle import build_bundle, generate_keypair, load_private_key
from edgepilot.hardware.jetson.flash import FlashTarget, build_wheel, connect, run_remote

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin:" + os.environ.get("PATH", "")) or "/usr/sbin/sshd"
UE_ID = "ue-007"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


class Sshd:
    def __init__(self, root: Path):
        if not os.path.isfile(SSHD) or shutil.which("ssh-keygen") is None:
            pytest.fail("OpenSSH server not found (/usr/sbin/sshd, ssh-keygen): run `make setup` "
                        "(scripts/bootstrap.sh installs openssh-server)")
        self.root = root
        self.host_key = _keygen(root / "ssh_host_ed25519_key")
        self.client_key = _keygen(root / "client_key")
        self.wrong_key = _keygen(root / "wrong_key")
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.port = _free_port()
        self.log = root / "sshd.log"
        self.user = getpass.getuser()
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\nPidFile {root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nUsePAM no\nStrictModes no\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\nLogLevel VERBOSE\nMaxStartups 50\n")
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir, as the Debian unit makes
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            pytest.fail(f"sshd refuses its test config: {check.stderr.strip()}")
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(self.log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.recv(64)  # the banner: sshd is serving
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start: {self.proc.stderr.read().decode()} {self.log.read_text() if self.log.exists() else ''}")
                time.sleep(0.05)
        kind, blob = (root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    priv, pub = generate_keypair(root, "fleet")
    files = {"artifacts/actor.onnx": b"onnx-bytes" * 100, "parity.json": b"{}"}

    def make(path: Path, version: str = "1.0") -> Path:
        manifest = {"model": {"kind": "dtac", "version": version}, "target": {"name": "jetson-nano"},
                    "artifacts": [], "inputs": [], "outputs": []}
        return build_bundle(path, files, manifest, load_private_key(priv))

    return {"pub": pub, "make": make, "bundle": make(root / "dtac-1.bundle"), "bundle2": make(root / "dtac-2.bundle", "2.0")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture()
def board(tmp_path, sshd, signing, wheel):
    """Per-test prefix, staging dir, known_hosts, and the CLI arguments that reach the sshd."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line)
    prefix, staging = tmp_path / "board" / "opt" / "edgepilot", tmp_path / "board" / "staging"

    def args(*extra: str, bundle: Path | None = None, key: Path | None = None, ue_id: str = UE_ID) -> list[str]:
        return ["flash", "127.0.0.1", "--user", sshd.user, "--port", str(sshd.port), "--ssh-key", str(key or sshd.client_key),
                "--known-hosts", str(known_hosts), "--bundle", str(bundle or signing["bundle"]),
                "--trusted-key", str(signing["pub"]), "--broker", "broker.lan:8883", "--ue-id", ue_id, "--edge-id", "1",
                "--prefix", str(prefix), "--remote-python", sys.executable, "--no-systemd", "--offline-deps",
                "--staging-dir", str(staging), "--wheel", str(wheel),
                "--connect-timeout", "60", *extra]  # a loaded CI host can take > 10 s to authenticate

    return {"args": args, "prefix": prefix, "staging": staging, "known_hosts": known_hosts}


class Sentinel:
    """A listening TCP port that nobody should connect to: after the command, a pending
    connection in its backlog means the command did open one."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture()
def sentinel():
    s = Sentinel()
    yield s
    s.sock.close()


def _with_port(args: list[str], port: int) -> list[str]:
    args = list(args)
    args[args.index("--port") + 1] = str(port)
    return args


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    result.text = " ".join(result.output.split())  # rich wraps; compare without line breaks
    return result


def _current(prefix: Path) -> str:
    return os.readlink(prefix / "current")


def test_flash_installs_verified_bundle_config_and_an_importable_agent(sshd, signing, board, wheel):
    r = invoke(board["args"]())
    assert r.exit_code == 0, r.output
    prefix = board["prefix"]
    cur = prefix / "current"
    assert _current(prefix).startswith("releases/") and not (prefix / "previous").exists()
    # the bundle on the board is the one verified here, byte for byte, and still verifies there
    assert (cur / "policy.bundle").read_bytes() == signing["bundle"].read_bytes()
    assert verify_bundle(cur / "policy.bundle", [cur / "trusted_keys"]).version == "1.0"
    env = (cur / "agent.env").read_text().splitlines()
    assert f"EDGEPILOT_UE_ID={UE_ID}" in env and "EDGEPILOT_BROKER=broker.lan:8883" in env and "EDGEPILOT_EDGE_ID=1" in env
    assert oct((cur / "agent.env").stat().st_mode & 0o777) == "0o600"
    unit = (cur / "edgepilot-agent.service").read_text()
    assert f"EnvironmentFile={prefix}/current/agent.env" in unit and f"--bundle {prefix}/current/policy.bundle" in unit
    assert f"ExecStart={prefix}/current/venv/bin/edgepilot agent" in unit and "--tls-ca" not in unit
    # the release holds the wheel that was shipped, byte for byte, installed into its own venv
    rel = prefix / _current(prefix)
    assert (rel / wheel.name).read_bytes() == wheel.read_bytes()
    assert not (rel / "lib").exists() and (rel / "venv" / "bin" / "edgepilot").is_file()
    # SHA256SUMS on the board matches the files as they were uploaded
    sums = dict(line.split("  ")[::-1] for line in (cur / "SHA256SUMS").read_text().splitlines())
    assert sums["policy.bundle"] == hashlib.sha256(signing["bundle"].read_bytes()).hexdigest()
    assert sums[wheel.name] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert not board["staging"].exists()  # staged payload removed
    # in the board's own environment (over SSH): the agent imports from the installed wheel
    client = connect(FlashTarget(host="127.0.0.1", port=sshd.port, user=sshd.user, ssh_key=sshd.client_key,
                                 known_hosts=board["known_hosts"]))
    try:
        probe = ("import importlib.metadata as md, edgepilot.edge_agent, edgepilot.cli; "
                 "d = md.distribution('edgepilot'); "
                 "print(edgepilot.edge_agent.__file__); print(d.version); print(d.read_text('direct_url.json') or '')")
        _, out, _ = run_remote(client, f"{cur}/venv/bin/python -c \"{probe}\"")
        where, version, direct_url = out.strip().split("\n", 2)
        assert str(Path(where).resolve()).startswith(str(rel.resolve() / "venv" / "lib")), out  # the release venv's, not a checkout
        assert version == "0.1.0" and wheel.name in direct_url  # installed from the shipped wheel file
        _, out, _ = run_remote(client, f"{cur}/venv/bin/edgepilot --version")
        assert out.strip() == "edgepilot 0.1.0"
    finally:
        client.close()


def test_second_flash_switches_current_and_rollback_restores_previous(sshd, signing, board):
    prefix = board["prefix"]
    r = invoke(board["args"]())
    assert r.exit_code == 0, r.output
    first = _current(prefix)
    r = invoke(board["args"](bundle=signing["bundle2"]))
    assert r.exit_code == 0, r.output
    second = _current(prefix)
    assert second != first and os.readlink(prefix / "previous") == first
    assert verify_bundle(prefix / "current" / "policy.bundle", [signing["pub"]]).version == "2.0"
    r = invoke(board["args"]("--rollback"))
    assert r.exit_code == 0, r.output
    assert "rolled back" in r.text
    assert _current(prefix) == first and os.readlink(prefix / "previous") == second
    assert verify_bundle(prefix / "current" / "policy.bundle", [signing["pub"]]).version == "1.0"


def test_remote_failure_shows_stderr_and_leaves_previous_install(sshd, signing, board):
    prefix = board["prefix"]
    r = invoke(board["args"]())
    assert r.exit_code == 0, r.output
    first = _current(prefix)
    r = invoke(board["args"]("--profile", "no-such-board", bundle=signing["bundle2"]))
    assert r.exit_code == 1
    assert "remote command failed" in r.text and "unknown hardware profile 'no-such-board'" in r.text  # the board's stderr
    assert "left as it was" in r.text
    assert _current(prefix) == first and not (prefix / "previous").exists()
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == [first.split("/")[1]]  # no half-built release
    assert not board["staging"].exists()  # the staged payload (with agent.env) is removed on failure too


def _tamper(src: Path, dst: Path) -> Path:
    with tarfile.open(src) as tin, tarfile.open(dst, "w:") as tout:
        for info in tin:
            data = tin.extractfile(info).read()
            if info.name == "artifacts/actor.onnx":
                data = b"evil" + data[4:]
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return dst


def test_tampered_bundle_is_refused_before_any_connection(sshd, signing, board, sentinel, tmp_path):
    r = invoke(_with_port(board["args"](bundle=_tamper(signing["bundle"], tmp_path / "tampered.bundle")), sentinel.port))
    assert r.exit_code == 1
    assert "bundle refused before upload" in r.text and "actor.onnx has changed" in r.text
    assert not sentinel.connected()
    assert not board["prefix"].exists() and not board["staging"].exists()


def test_wrong_key_is_an_auth_error_and_installs_nothing(sshd, board):
    r = invoke(board["args"](key=sshd.wrong_key))
    assert r.exit_code == 1
    assert "authentication failed" in r.text and "FAILED" in r.text
    assert not board["prefix"].exists() and not board["staging"].exists()


def test_unknown_host_key_needs_accept_new_and_a_changed_one_is_refused(sshd, board):
    kh = board["known_hosts"]
    kh.write_text("")
    r = invoke(board["args"]())
    assert r.exit_code == 1
    assert "is not in" in r.text and "--accept-new-host-key" in r.text and "SHA256:" in r.text
    assert not board["prefix"].exists() and kh.read_text() == ""
    r = invoke(board["args"]("--accept-new-host-key"))
    assert r.exit_code == 0, r.output
    assert kh.read_text().split()[:3] == sshd.known_hosts_line.split()[:3]
    # a different key recorded for the host: refused even with --accept-new-host-key
    other = _keygen(board["prefix"].parent / "other_host_key")
    kind, blob = Path(f"{other}.pub").read_text().split()[:2]
    kh.write_text(f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    current = _current(board["prefix"])
    r = invoke(board["args"]("--accept-new-host-key"))
    assert r.exit_code == 1 and "has CHANGED" in r.text
    assert _current(board["prefix"]) == current


def test_unreachable_host_is_a_clear_error(board, sentinel):
    r = invoke(_with_port(board["args"](), _free_port()))  # nothing listens there
    assert r.exit_code == 1 and "cannot reach 127.0.0.1" in r.text
    # the sentinel does see a flash that is not a dry run (so its "no connection" means something)
    r = invoke(_with_port(board["args"]("--connect-timeout", "0.5"), sentinel.port))
    assert r.exit_code == 1 and sentinel.connected(), r.output


def test_dry_run_lists_files_and_hashes_and_connects_to_nothing(sshd, signing, board, sentinel, wheel):
    r = invoke(_with_port(board["args"]("--dry-run"), sentinel.port))
    assert r.exit_code == 0, r.output
    for name in (wheel.name, "policy.bundle", "trusted_key.pub", "agent.env",
                 "install.sh", "edgepilot-agent.service", "flash.json", "SHA256SUMS"):
        assert f" {name} " in r.output
    assert f"sha256:{hashlib.sha256(signing['bundle'].read_bytes()).hexdigest()}" in r.output
    assert "install.sh --payload" in r.output and "sha256sum" in r.output and "nothing was connected" in r.output
    assert not sentinel.connected()
    assert not board["prefix"].exists() and not board["staging"].exists()


def test_dry_run_expands_home_in_local_paths(sshd, signing, board, sentinel, monkeypatch):
    """`--bundle ~/x.bundle` (a shell leaves `~` alone inside `--opt=~/...` and in YAML) is
    the file under $HOME, not a relative path named `~`."""
    home = signing["bundle"].parent
    monkeypatch.setenv("HOME", str(home))
    args = _with_port(board["args"]("--dry-run"), sentinel.port)
    args[args.index("--bundle") + 1] = "~/" + signing["bundle"].name
    args[args.index("--trusted-key") + 1] = "~/" + Path(signing["pub"]).name
    r = invoke(args)
    assert r.exit_code == 0, r.output
    assert f"sha256:{hashlib.sha256(signing['bundle'].read_bytes()).hexdigest()}" in r.output
    assert not sentinel.connected()


def test_default_known_hosts_is_the_users_file(tmp_path, monkeypatch):
    """An inventory host without known_hosts checks ~/.ssh/known_hosts of this user, not
    a relative directory named `~`."""
    from edgepilot.hardware.jetson.flash import load_inventory

    monkeypatch.setenv("HOME", str(tmp_path))
    inv = tmp_path / "fleet.yaml"
    inv.write_text("defaults: {user: jetson, ssh_key: id_ed25519}\nhosts:\n  - {host: 127.0.0.1, ue_id: ue-001}\n")
    (target,) = load_inventory(inv)
    assert target.known_hosts == tmp_path / ".ssh" / "known_hosts"


def test_inventory_yaml_is_validated_and_plans_each_host(sshd, signing, board, tmp_path, wheel):
    inv = tmp_path / "fleet.yaml"
    common = (f"defaults:\n  user: {sshd.user}\n  ssh_key: {sshd.client_key}\n  bundle: {signing['bundle']}\n"
              f"  trusted_key: {signing['pub']}\n  broker: broker.lan:8883\n  profile: jetson-orin-nano\n")
    inv.write_text(common + "hosts:\n  - {host: 127.0.0.1, ue_id: ue-001}\n  - {host: 127.0.0.2, ue_id: 'bad/id'}\n")
    r = invoke(["flash", "--inventory", str(inv), "--dry-run"])
    assert r.exit_code == 2 and "hosts[1] (127.0.0.2): ue_id" in r.text
    inv.write_text(common + "hosts:\n  - {host: 127.0.0.1, ue_id: ue-001}\n  - {host: 127.0.0.2, ue_id: ue-002, port: 2222}\n")
    r = invoke(["flash", "--inventory", str(inv), "--dry-run", "--wheel", str(wheel)])
    assert r.exit_code == 0, r.output
    assert f"{sshd.user}@127.0.0.1:22 (UE ue-001" in r.output and f"{sshd.user}@127.0.0.2:2222 (UE ue-002" in r.output
    assert "bundle was exported for profile 'jetson-nano', board profile is 'jetson-orin-nano'" in r.output


def test_payload_install_renders_the_unit_for_systemd(signing, tmp_path, wheel):
    """The systemd branch of the payload install (no sshd needed): the unit lands in
    SYSTEMD_DIR pointing at PREFIX/current; --no-start starts nothing (no systemctl here)."""
    from edgepilot.hardware.jetson.flash import build_payload, write_payload

    prefix, units = tmp_path / "opt", tmp_path / "units"
    ca = tmp_path / "ca.pem"
    ca.write_text("ca\n")
    (tmp_path / "unused_key").write_text("not used: no connection\n")
    target = FlashTarget(host="board", user="u", ssh_key=tmp_path / "unused_key", ue_id=UE_ID, broker="broker.lan:8883",
                         bundle=signing["bundle"], trusted_key=signing["pub"], tls_ca=ca, prefix=str(prefix))
    staging = write_payload(build_payload(target, verify_bundle(target.bundle, [target.trusted_key]), wheel),
                            tmp_path / "staging")
    r = subprocess.run(["bash", str(staging / "install.sh"), "--payload", str(staging), "--release", "r1",
                        "--prefix", str(prefix), "--python", sys.executable, "--offline-deps", "--no-start"],
                       env={**os.environ, "SYSTEMD_DIR": str(units)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    unit = (units / "edgepilot-agent.service").read_text()
    assert f"--tls-ca {prefix}/current/ca.pem" in unit and f"--trusted-key {prefix}/current/trusted_keys" in unit
    assert "User=edgepilot" in unit and "Restart=always" in unit
    assert (prefix / "current" / "ca.pem").read_text() == "ca\n"
    # a payload file changed after hashing: refused before the release is built
    (staging / "agent.env").write_text("EDGEPILOT_UE_ID=intruder\n")
    r = subprocess.run(["bash", str(staging / "install.sh"), "--payload", str(staging), "--release", "r2",
                        "--prefix", str(prefix), "--no-systemd"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "SHA-256 check failed" in r.stderr and "agent.env" in r.stderr
    assert os.readlink(prefix / "current") == "releases/r1" and not (prefix / "releases" / "r2").exists()
    # a good second release, then a rollback that also puts the unit back
    target2 = target.model_copy(update={"bundle": signing["bundle2"]})
    staging2 = write_payload(build_payload(target2, verify_bundle(target2.bundle, [target2.trusted_key]), wheel),
                             tmp_path / "staging2")
    env = {**os.environ, "SYSTEMD_DIR": str(units)}
    r = subprocess.run(["bash", str(staging2 / "install.sh"), "--payload", str(staging2), "--release", "r2",
                        "--prefix", str(prefix), "--python", sys.executable, "--offline-deps", "--no-start"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.readlink(prefix / "current") == "releases/r2" and os.readlink(prefix / "previous") == "releases/r1"
    (units / "edgepilot-agent.service").unlink()
    r = subprocess.run(["bash", str(prefix / "current" / "install.sh"), "--rollback", "--prefix", str(prefix), "--no-start"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.readlink(prefix / "current") == "releases/r1" and (units / "edgepilot-agent.service").is_file()


def _fake_python(path: Path, version: str) -> Path:
    """A `python` that reports ``version`` and fails install.sh's >= 3.8 probe (as a
    JetPack 4.6 python3, 3.6.9, does)."""
    path.write_text(f"#!/bin/sh\ncase \"$*\" in *platform*) echo {version};; *) exit 1;; esac\n")
    path.chmod(0o755)
    return path


def _real_python(path: Path) -> Path:
    """A `python3.8` on PATH that is this test's interpreter (its venv, so --offline-deps works)."""
    path.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return path


def test_install_picks_a_python_of_at_least_3_8_and_refuses_older(signing, tmp_path, wheel):
    """JetPack 4.6: python3 is 3.6, python3.8 comes from apt. install.sh takes the first
    python >= 3.8 of python3, python3.13 ... python3.8, and refuses a --python below 3.8."""
    from edgepilot.hardware.jetson.flash import build_payload, write_payload

    (tmp_path / "unused_key").write_text("not used: no connection\n")
    target = FlashTarget(host="board", user="u", ssh_key=tmp_path / "unused_key", ue_id=UE_ID, broker="broker.lan:8883",
                         bundle=signing["bundle"], trusted_key=signing["pub"], prefix=str(tmp_path / "opt"))
    staging = write_payload(build_payload(target, verify_bundle(target.bundle, [target.trusted_key]), wheel),
                            tmp_path / "staging")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old = _fake_python(bin_dir / "python3", "3.6.9")
    # PATH: the fake pythons, then the tools install.sh uses, without any other python3.X
    tools = bin_dir / "tools"
    tools.mkdir()
    for tool in ("sha256sum", "mkdir", "install", "sed", "grep", "cut", "readlink", "ln", "mv", "rm", "chmod", "basename",
                 "dirname", "mktemp", "cat", "env", "sh", "bash", "tr"):
        (tools / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": f"{bin_dir}:{tools}"}
    cmd = [shutil.which("bash"), str(staging / "install.sh"), "--payload", str(staging), "--prefix", str(tmp_path / "opt"),
           "--offline-deps", "--no-systemd"]
    r = subprocess.run([*cmd, "--release", "r0"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and "no Python >= 3.8" in r.stderr and "python3 (3.6.9)" in r.stderr, r.stderr
    assert "apt-get install python3.8 python3.8-venv" in r.stderr
    r = subprocess.run([*cmd, "--release", "r0", "--python", str(old)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and "is Python 3.6.9" in r.stderr and "needs Python >= 3.8" in r.stderr, r.stderr
    assert not (tmp_path / "opt" / "current").exists()
    _real_python(bin_dir / "python3.8")
    r = subprocess.run([*cmd, "--release", "r1"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "python3.8" in r.stdout and os.readlink(tmp_path / "opt" / "current") == "releases/r1"


def test_ue_id_rule_is_the_topics_rule():
    """hardware/jetson/flash.py repeats the UE id pattern (it sits below edge_agent)."""
    from edgepilot.edge_agent.fleet.topics import UE_ID_PATTERN as topics_rule
    from edgepilot.hardware.jetson.flash import UE_ID_PATTERN

    assert UE_ID_PATTERN.pattern == topics_rule.pattern
