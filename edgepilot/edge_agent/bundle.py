"""Signed policy bundles: verification and install on the device (no torch).

A bundle is one uncompressed tar file::

    manifest.json      what the bundle holds (model, target profile, inputs / outputs,
                       artifacts with precision and SHA-256, scenario hash, parity)
    signature.json     {"algorithm": "ed25519", "key_id": ..., "signature": base64}
                       over the exact bytes of manifest.json
    artifacts/...      ONNX models (and TensorRT plans), listed in manifest["files"]
    parity.json, tensorrt/build_engines.sh, ...

The manifest carries the SHA-256 of every other file, so the one signature covers the
whole bundle. :func:`open_bundle` refuses: a missing or malformed signature, a
signature by a key that is not trusted, a wrong signature, a file whose hash differs
from the manifest, a file the manifest does not list (or a listed file that is
missing), and any entry that is not a plain file with a plain relative name
(absolute paths, ``..``, links, devices, duplicates).

:func:`install_bundle` verifies, extracts into ``ROOT/versions/<version>-<digest>``,
then switches the ``ROOT/current`` link atomically and keeps the version it replaced
as ``ROOT/previous`` (see :func:`rollback`). Used by the runtime and by the OTA
updater of the MQTT agent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature.json"
BUNDLE_FORMAT = "edgepilot-bundle"
FORMAT_VERSION = 1
MAX_MEMBER_BYTES = 512 << 20  # refuse absurd members before reading them


class BundleError(ValueError):
    """A bundle that must not be used; the message names the problem."""


# --------------------------------------------------------------------------- keys


def key_id(public_key) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as err:
        raise BundleError(f"{path}: not a PEM public key ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key


def load_trusted_keys(sources) -> dict[str, object]:
    """Trusted Ed25519 public keys by key id, from a directory of ``*.pub`` files,
    PEM file paths, public-key objects, or a mapping already keyed by id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(sources, Mapping):
        return dict(sources)
    if isinstance(sources, (str, os.PathLike, Ed25519PublicKey)):
        sources = [sources]
    keys: dict[str, object] = {}
    for src in sources or []:
        if isinstance(src, Ed25519PublicKey):
            keys[key_id(src)] = src
            continue
        p = Path(src)
        if p.is_dir():
            for f in sorted(p.glob("*.pub")):
                k = load_public_key(f)
                keys[key_id(k)] = k
        elif p.is_file():
            k = load_public_key(p)
            keys[key_id(k)] = k
        else:
            raise BundleError(f"trusted key {p} does not exist")
    return keys


# --------------------------------------------------------------------------- reading


def _safe_name(name: str) -> str:
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"bundle entry {name!r} has an absolute path")
    if "\\" in name or "\x00" in name:
        raise BundleError(f"bundle entry {name!r} has a forbidden character")
    parts = name.split("/")
    if any(p in ("..",) for p in parts):
        raise BundleError(f"bundle entry {name!r} escapes the bundle (path traversal)")
    norm = posixpath.normpath(name)
    if norm != name.rstrip("/") or norm.startswith("../") or norm == "..":
        raise BundleError(f"bundle entry {name!r} is not a normalised relative path")
    return norm


def read_members(path: str | os.PathLike) -> dict[str, bytes]:
    """Every file of the bundle as bytes, after checking each entry is safe."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"bundle not found: {path}")
    try:
        tar = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{path}: not a bundle (uncompressed tar expected): {err}") from None
    members: dict[str, bytes] = {}
    with tar:
        for info in tar:
            name = _safe_name(info.name)
            if info.isdir():
                continue
            if not info.isreg():
                kind = "symlink" if info.issym() else "hard link" if info.islnk() else "special file"
                raise BundleError(f"bundle entry {info.name!r} is a {kind}; only plain files are allowed")
            if name in members:
                raise BundleError(f"bundle entry {name!r} appears twice")
            if info.size > MAX_MEMBER_BYTES:
                raise BundleError(f"bundle entry {name!r} is too large ({info.size} bytes)")
            fh = tar.extractfile(info)
            members[name] = fh.read() if fh is not None else b""
    if MANIFEST_NAME not in members:
        raise BundleError(f"{path}: bundle has no {MANIFEST_NAME}")
    return members


@dataclass
class Manifest:
    """The parsed manifest.json of a bundle."""

    data: dict
    raw: bytes = b""
    key_id: str | None = None  # who signed it (None: not verified)

    @property
    def kind(self) -> str:
        return self.data["model"]["kind"]

    @property
    def version(self) -> str:
        return str(self.data["model"]["version"])

    @property
    def target(self) -> dict:
        return self.data["target"]

    @property
    def artifacts(self) -> list[dict]:
        return self.data["artifacts"]

    @property
    def files(self) -> dict[str, str]:
        return self.data["files"]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass
class VerifiedBundle:
    manifest: Manifest
    files: dict[str, bytes] = field(repr=False)

    def artifact_bytes(self, name: str) -> bytes:
        return self.files[name]


def parse_manifest(raw: bytes, source: str = "bundle") -> Manifest:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{source}: manifest.json is not valid JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{source}: manifest.json is not an {BUNDLE_FORMAT} manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{source}: manifest format_version {data.get('format_version')!r}, this agent reads {FORMAT_VERSION}")
    for key in ("model", "target", "artifacts", "files", "inputs", "outputs"):
        if key not in data:
            raise BundleError(f"{source}: manifest.json lacks {key!r}")
    if not isinstance(data["files"], dict):
        raise BundleError(f"{source}: manifest 'files' must map path -> sha256")
    for name in data["files"]:
        _safe_name(name)
    return Manifest(data=data, raw=raw)


def check_signature(manifest_raw: bytes, signature_raw: bytes | None, trusted_keys, source: str = "bundle") -> str:
    """Verify the Ed25519 signature of the manifest bytes; returns the signer's key id."""
    from cryptography.exceptions import InvalidSignature

    if signature_raw is None:
        raise BundleError(f"{source}: bundle is not signed (no {SIGNATURE_NAME})")
    try:
        sig = json.loads(signature_raw)
        if sig.get("algorithm") != "ed25519":
            raise BundleError(f"{source}: signature algorithm {sig.get('algorithm')!r} is not ed25519")
        kid, signature = str(sig["key_id"]), base64.b64decode(sig["signature"], validate=True)
    except BundleError:
        raise
    except Exception as err:  # malformed JSON, missing field, bad base64
        raise BundleError(f"{source}: {SIGNATURE_NAME} is malformed: {err}") from None
    keys = load_trusted_keys(trusted_keys)
    if not keys:
        raise BundleError(f"{source}: no trusted keys given; cannot verify the signature")
    if kid not in keys:
        raise BundleError(f"{source}: signed by unknown key {kid} (trusted: {', '.join(sorted(keys))})")
    try:
        keys[kid].verify(signature, manifest_raw)
    except InvalidSignature:
        raise BundleError(f"{source}: signature does not match the manifest (wrong signature or tampered manifest)") from None
    return kid


def check_files(manifest: Manifest, members: Mapping[str, bytes], source: str = "bundle") -> None:
    listed = dict(manifest.files)
    present = {n for n in members if n not in (MANIFEST_NAME, SIGNATURE_NAME)}
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    if missing:
        raise BundleError(f"{source}: file(s) listed in the manifest are missing: {', '.join(missing)}")
    if extra:
        raise BundleError(f"{source}: file(s) not listed in the manifest: {', '.join(extra)}")
    for name, expected in listed.items():
        actual = hashlib.sha256(members[name]).hexdigest()
        if actual != expected:
            raise BundleError(f"{source}: {name} has changed (sha256 {actual[:16]}..., manifest says {expected[:16]}...)")


def open_bundle(path: str | os.PathLike, trusted_keys) -> VerifiedBundle:
    """Read and fully verify a bundle; its files come back in memory."""
    members = read_members(path)
    source = str(path)
    raw = members[MANIFEST_NAME]
    kid = check_signature(raw, members.get(SIGNATURE_NAME), trusted_keys, source)
    manifest = parse_manifest(raw, source)
    manifest.key_id = kid
    check_files(manifest, members, source)
    return VerifiedBundle(manifest=manifest, files={k: v for k, v in members.items() if k in manifest.files})


def verify_bundle(path: str | os.PathLike, trusted_keys) -> Manifest:
    """Verify signature, key, file hashes and entry names; return the manifest."""
    return open_bundle(path, trusted_keys).manifest


def inspect_bundle(path: str | os.PathLike) -> Manifest:
    """The manifest without verification (for display only)."""
    members = read_members(path)
    manifest = parse_manifest(members[MANIFEST_NAME], str(path))
    if SIGNATURE_NAME in members:
        try:
            manifest.key_id = json.loads(members[SIGNATURE_NAME]).get("key_id")
        except Exception:
            manifest.key_id = None
    return manifest


# --------------------------------------------------------------------------- install


def _write_members(directory: Path, members: Mapping[str, bytes]) -> None:
    for name, data in members.items():
        target = directory / name
        if directory.resolve() not in target.resolve().parents:  # belt and braces after _safe_name
            raise BundleError(f"bundle entry {name!r} escapes the install directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _switch_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)  # atomic on POSIX


def install_bundle(path: str | os.PathLike, trusted_keys, root: str | os.PathLike) -> Path:
    """Verify ``path`` and install it under ``root``; returns the installed directory.

    ``root/current`` -> the new version, ``root/previous`` -> the one it replaced;
    versions older than those two are removed. Re-installing the current version is
    a no-op. A failed verification leaves ``root`` untouched."""
    bundle = open_bundle(path, trusted_keys)
    root = Path(root)
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    name = f"{bundle.manifest.version}-{bundle.manifest.digest[:12]}"
    name = "".join(c if c.isalnum() or c in "._-+" else "_" for c in name)
    dest = versions / name
    current = root / "current"
    old = os.readlink(current) if current.is_symlink() else None
    if old == f"versions/{name}" and dest.is_dir():
        return dest
    if not dest.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=versions))
        try:
            _write_members(staging, {MANIFEST_NAME: bundle.manifest.raw, **bundle.files})
            raw_sig = read_members(path).get(SIGNATURE_NAME)
            if raw_sig is not None:
                (staging / SIGNATURE_NAME).write_bytes(raw_sig)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _switch_link(current, f"versions/{name}")
    if old is not None and old != f"versions/{name}":
        _switch_link(root / "previous", old)
    keep = {os.readlink(root / n) for n in ("current", "previous") if (root / n).is_symlink()}
    for d in versions.iterdir():
        if d.is_dir() and not d.name.startswith(".") and f"versions/{d.name}" not in keep:
            shutil.rmtree(d, ignore_errors=True)
    return dest


def rollback(root: str | os.PathLike) -> Path:
    """Point ``current`` back at ``previous`` (and ``previous`` at what was current)."""
    root = Path(root)
    cur, prev = root / "current", root / "previous"
    if not prev.is_symlink():
        raise BundleError(f"{root}: no previous version to roll back to")
    old_cur = os.readlink(cur) if cur.is_symlink() else None
    target = os.readlink(prev)
    _switch_link(cur, target)
    if old_cur is not None:
        _switch_link(prev, old_cur)
    return root / target


def pack_directory(directory: str | os.PathLike) -> bytes:
    """An installed version directory as bundle bytes again (for re-verification)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for p in sorted(Path(directory).rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(directory).as_posix(), recursive=False)
    return buf.getvalue()


def verify_installed(directory: str | os.PathLike, trusted_keys) -> VerifiedBundle:
    """Re-verify an installed version directory (files may have been changed on disk)."""
    with tempfile.NamedTemporaryFile(suffix=".bundle") as tmp:
        tmp.write(pack_directory(directory))
        tmp.flush()
        return open_bundle(tmp.name, trusted_keys)


def write_bundle(path: str | os.PathLike, files: Mapping[str, bytes], manifest_raw: bytes, signature_raw: bytes | None = None) -> Path:
    """Write a bundle tar atomically (used by the exporter and by ``bundle sign``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    entries: list[tuple[str, bytes]] = [(MANIFEST_NAME, manifest_raw)]
    if signature_raw is not None:
        entries.append((SIGNATURE_NAME, signature_raw))
    entries += sorted(files.items())
    try:
        with tarfile.open(tmp, mode="w:", format=tarfile.PAX_FORMAT) as tar:
            for name, data in entries:
                _safe_name(name)
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def iter_artifacts(manifest: Manifest, fmt: str | None = None) -> Iterable[dict]:
    for art in manifest.artifacts:
        if fmt is None or art.get("format") == fmt:
            yield art
