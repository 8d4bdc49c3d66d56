"""Building and signing bundles (the device-side reading lives in edgepilot.edge_agent.bundle)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from edgepilot.edge_agent.bundle import (
    BUNDLE_FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    BundleError,
    check_files,
    key_id,
    parse_manifest,
    read_members,
    write_bundle,
)


def generate_keypair(out_dir: str | os.PathLike, name: str = "edgepilot", overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (PKCS#8 PEM, mode 0600) and ``NAME.pub`` (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass --force to overwrite it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path


def load_private_key(path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    if not p.is_file():
        raise BundleError(f"signing key not found: {p}")
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise BundleError(f"{p}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{p}: not an Ed25519 private key ({type(key).__name__})")
    return key


def signature_for(manifest_raw: bytes, private_key) -> bytes:
    sig = private_key.sign(manifest_raw)
    doc = {"algorithm": "ed25519", "key_id": key_id(private_key.public_key()), "signature": base64.b64encode(sig).decode()}
    return json.dumps(doc, indent=2).encode()


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


AUTO = object()
_last_sequence = 0
_sequence_lock = threading.Lock()


def next_sequence() -> int:
    """An anti-rollback sequence: microseconds since the Unix epoch, strictly increasing
    within a process. Bundles built later on a machine with a sane clock compare higher."""
    global _last_sequence
    with _sequence_lock:
        _last_sequence = max(time.time_ns() // 1000, _last_sequence + 1)
        return _last_sequence


def build_bundle(path: str | os.PathLike, files: Mapping[str, bytes], manifest: dict, private_key=None,
                 sequence=AUTO) -> Path:
    """Write a bundle: ``manifest`` gets ``format``, ``format_version``, the SHA-256 of
    every file and its anti-rollback ``sequence`` (``AUTO``: :func:`next_sequence` unless
    the manifest has one; an int: that one; None: none, as bundles before the field);
    signed when ``private_key`` is given."""
    manifest = dict(manifest)
    manifest["format"], manifest["format_version"] = BUNDLE_FORMAT, FORMAT_VERSION
    if sequence is AUTO:
        manifest.setdefault("sequence", next_sequence())
    elif sequence is None:
        manifest.pop("sequence", None)
    else:
        manifest["sequence"] = int(sequence)
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    raw = manifest_bytes(manifest)
    sig = signature_for(raw, private_key) if private_key is not None else None
    return write_bundle(path, files, raw, sig)


def sign_bundle(path: str | os.PathLike, key_path: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(Re)sign a bundle after checking its files against its manifest; returns the
    written path and the key id."""
    members = read_members(path)
    manifest = parse_manifest(members[MANIFEST_NAME], str(path))
    check_files(manifest, members, str(path))
    key = load_private_key(key_path)
    files = {k: v for k, v in members.items() if k not in (MANIFEST_NAME, SIGNATURE_NAME)}
    written = write_bundle(out or path, files, manifest.raw, signature_for(manifest.raw, key))
    return written, key_id(key.public_key())


def make_rollback_bundle(path: str | os.PathLike, key_path: str | os.PathLike, out: str | os.PathLike,
                         from_sequence: int) -> Path:
    """An operator's explicit rollback: the bundle at ``path`` (an older release) re-signed
    with ``"rollback": {"from_sequence": from_sequence}`` in its manifest. Devices that
    recorded a sequence up to ``from_sequence`` accept it although its own sequence is
    lower; once they installed anything newer than ``from_sequence`` they refuse it again.
    The file hashes are checked first; the old signature is not needed."""
    members = read_members(path)
    manifest = parse_manifest(members[MANIFEST_NAME], str(path))
    check_files(manifest, members, str(path))
    if int(from_sequence) < manifest.sequence:
        raise BundleError(f"from_sequence {from_sequence} is below the bundle's own sequence {manifest.sequence}: "
                          "that is not a rollback")
    data = dict(manifest.data)
    data["rollback"] = {"from_sequence": int(from_sequence)}
    raw = manifest_bytes(data)
    key = load_private_key(key_path)
    files = {k: v for k, v in members.items() if k not in (MANIFEST_NAME, SIGNATURE_NAME)}
    return write_bundle(out, files, raw, signature_for(raw, key))
