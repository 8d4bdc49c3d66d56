"""Render the shipped Mosquitto config and write its password file.

``python -m edgepilot.hardware.mosquitto.credentials OUT_DIR --ues ue-000,ue-001 ...`` writes
``OUT_DIR/passwords`` (hashed with ``mosquitto_passwd``), ``OUT_DIR/credentials.json``
(the clear passwords, to hand to each device once), ``OUT_DIR/acl`` and
``OUT_DIR/mosquitto.conf``. See docs/deploying.md.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
COORDINATOR_USER = "edgepilot-coordinator"


def mosquitto_passwd() -> str:
    for cand in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if cand and Path(cand).exists():
            return cand
    raise FileNotFoundError("mosquitto_passwd not found: apt-get install mosquitto")


#: the shipped settings that hold for any broker of the fleet, the emulated one included
#: (persistence, packet size, queues); the rest (listener, TLS, passwords) is per install
BROKER_SETTINGS = ("autosave_on_changes", "autosave_interval", "persistent_client_expiration", "max_packet_size",
                   "max_queued_messages", "max_inflight_messages")


def shipped_settings(keys: tuple = BROKER_SETTINGS) -> list[str]:
    """The lines of the shipped mosquitto.conf that set ``keys``, as written there."""
    lines = (HERE / "mosquitto.conf").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and line.split()[0] in keys]


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file for ``users`` (name -> clear password), hashed."""
    path = Path(path)
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    path.chmod(0o600)
    subprocess.run([mosquitto_passwd(), "-U", str(path)], check=True, capture_output=True)
    return path


def render_config(out: Path, *, port: int, bind: str, password_file: Path, acl_file: Path, ca_file: Path,
                  cert_file: Path, key_file: Path, data_dir: Path, tls: bool = True) -> Path:
    text = (HERE / "mosquitto.conf").read_text()
    for key, value in {"PORT": port, "BIND": bind, "PASSWORD_FILE": password_file, "ACL_FILE": acl_file,
                       "CA_FILE": ca_file, "CERT_FILE": cert_file, "KEY_FILE": key_file, "DATA_DIR": data_dir}.items():
        text = text.replace(f"@{key}@", str(value))
    if not tls:
        text = "\n".join(l for l in text.splitlines() if not l.startswith(("cafile", "certfile", "keyfile", "tls_version")))
    Path(out).write_text(text + "\n")
    return Path(out)


def generate(out_dir: Path, ues: list[str], port: int = 8883, bind: str = "0.0.0.0", ca_file: Path | None = None,
             cert_file: Path | None = None, key_file: Path | None = None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    users = {COORDINATOR_USER: secrets.token_urlsafe(18), **{u: secrets.token_urlsafe(18) for u in ues}}
    write_password_file(out_dir / "passwords", users)
    creds = out_dir / "credentials.json"
    creds.write_text(json.dumps(users, indent=1))
    creds.chmod(0o600)
    shutil.copyfile(HERE / "acl.conf", out_dir / "acl")
    render_config(out_dir / "mosquitto.conf", port=port, bind=bind, password_file=out_dir / "passwords",
                  acl_file=out_dir / "acl", ca_file=ca_file or out_dir / "ca.pem", cert_file=cert_file or out_dir / "server.pem",
                  key_file=key_file or out_dir / "server.key", data_dir=out_dir / "data")
    (out_dir / "data").mkdir(exist_ok=True)
    return users


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--ues", required=True, help="comma-separated UE ids")
    ap.add_argument("--port", type=int, default=8883)
    ap.add_argument("--bind", default="0.0.0.0")
    a = ap.parse_args()
    generate(a.out_dir, [u for u in a.ues.split(",") if u], a.port, a.bind)
    print(f"wrote {a.out_dir}/mosquitto.conf, passwords, acl, credentials.json")


if __name__ == "__main__":
    main()
