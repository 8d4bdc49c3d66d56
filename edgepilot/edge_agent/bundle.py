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

Reading is bounded before anything is read (:class:`BundleLimits`): the bundle file's
size, the number of entries, each member's size and their total are checked from the
file size and the tar headers; sparse members (whose stored size says nothing about
what they expand to) and anything but plain files and directories are refused.

Anti-rollback: the signed manifest carries ``sequence``, an integer that grows with
every release (``edgepilot.export.bundle.build_bundle`` writes microseconds since the
epoch unless given one; a manifest without it reads as 0). A device records the highest
sequence it installed, and the manifest digest that set it, in ``ROOT/anti_rollback.json``
and refuses a bundle with a lower sequence (a downgrade), or another bundle with the same
sequence (a replay of a superseded one), unless that bundle's manifest carries an
operator-signed rollback marker ``"rollback": {"from_sequence": N}`` with N at least the
recorded sequence (:func:`check_rollback`). Re-installing the bundle that set the record
is a no-op. See docs/export-and-runtime.md, "Bundle format".

:func:`install_bundle` verifies, extracts into ``ROOT/versions/<version>-<digest>``,
then switches the ``ROOT/current`` link atomically and keeps the version it replaced
as ``ROOT/previous`` (see :func:`rollback`). With ``commit=False`` it neither records the
sequence nor prunes old versions: the OTA updater commits (:func:`commit_install`) only
after the new version passed its self-test. Used by the runtime and by the OTA updater
of the MQTT agent.
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
ANTI_ROLLBACK_NAME = "anti_rollback.json"


@dataclass(frozen=True)
class BundleLimits:
    """What a bundle may hold; checked from the file size and tar headers before reading."""

    max_member_bytes: int = 256 << 20    # one file (an ONNX model or TensorRT plan)
    max_total_bytes: int = 512 << 20     # all files together (they are held in memory to verify)
    max_members: int = 1024              # entries, directories included
    max_name_chars: int = 255            # one entry's path

    def max_file_bytes(self) -> int:
        """The largest tar file these limits allow: data plus a header (and PAX / long-name
        headers) per entry, plus the end-of-archive blocks."""
        return self.max_total_bytes + self.max_members * (3 * 512 + 2 * self.max_name_chars + 1024) + 10240


DEFAULT_LIMITS = BundleLimits()
MAX_MEMBER_BYTES = DEFAULT_LIMITS.max_member_bytes


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


def _short(name: str, limit: int = 80) -> str:
    return repr(name) if len(name) <= limit else repr(name[:limit]) + f"... ({len(name)} characters)"


def read_members(path: str | os.PathLike, limits: BundleLimits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """Every file of the bundle as bytes, after checking each entry is safe.

    Two passes: every header is checked (names, types, counts and sizes against
    ``limits``) before a single member is read, so a bundle that would expand beyond the
    limits costs no more than its headers."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"bundle not found: {path}")
    size = path.stat().st_size
    if size > limits.max_file_bytes():
        raise BundleError(f"{path}: bundle file is {size} bytes, larger than the {limits.max_file_bytes()} "
                          f"bytes the limits allow ({limits.max_total_bytes} bytes of files)")
    try:
        tar = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{path}: not a bundle (uncompressed tar expected): {err}") from None
    members: dict[str, bytes] = {}
    with tar:
        infos: list[tarfile.TarInfo] = []
        names: set[str] = set()
        total = 0
        entries = 0
        try:
            for info in tar:
                entries += 1
                if entries > limits.max_members:
                    raise BundleError(f"{path}: bundle has more than {limits.max_members} entries")
                if len(info.name) > limits.max_name_chars:
                    raise BundleError(f"bundle entry {_short(info.name)} has a name longer than "
                                      f"{limits.max_name_chars} characters")
                name = _safe_name(info.name)
                if info.isdir():
                    continue
                if info.issparse():
                    raise BundleError(f"bundle entry {_short(name)} is a sparse file; only plain files are allowed")
                if not info.isreg():
                    kind = "symlink" if info.issym() else "hard link" if info.islnk() else "special file"
                    raise BundleError(f"bundle entry {_short(name)} is a {kind}; only plain files are allowed")
                if name in names:
                    raise BundleError(f"bundle entry {_short(name)} appears twice")
                if info.size > limits.max_member_bytes:
                    raise BundleError(f"bundle entry {_short(name)} is {info.size} bytes, larger than the limit of "
                                      f"{limits.max_member_bytes} bytes")
                total += info.size
                if total > limits.max_total_bytes:
                    raise BundleError(f"{path}: bundle files are more than {limits.max_total_bytes} bytes together "
                                      f"(the limit)")
                names.add(name)
                infos.append(info)
        except tarfile.TarError as err:
            raise BundleError(f"{path}: bundle is truncated or not a tar file: {err}") from None
        for info in infos:
            fh = tar.extractfile(info)
            data = fh.read(info.size + 1) if fh is not None else b""
            if len(data) != info.size:
                raise BundleError(f"{path}: bundle entry {_short(info.name)} is truncated")
            members[posixpath.normpath(info.name)] = data
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

    @property
    def sequence(self) -> int:
        """Anti-rollback counter (0 when the manifest has none)."""
        return int(self.data.get("sequence", 0))

    @property
    def rollback_from(self) -> int | None:
        """``rollback.from_sequence`` of an operator-signed rollback, else None."""
        marker = self.data.get("rollback")
        return None if marker is None else int(marker["from_sequence"])


@dataclass
class VerifiedBundle:
    manifest: Manifest
    files: dict[str, bytes] = field(repr=False)
    signature_raw: bytes | None = field(default=None, repr=False)

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
    seq = data.get("sequence", 0)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1 << 63:
        raise BundleError(f"{source}: manifest 'sequence' must be an integer in 0..2**63-1, got {seq!r:.40}")
    marker = data.get("rollback")
    if marker is not None:
        frm = marker.get("from_sequence") if isinstance(marker, dict) else None
        if isinstance(frm, bool) or not isinstance(frm, int) or frm < 0 or set(marker) != {"from_sequence"}:
            raise BundleError(f"{source}: manifest 'rollback' must be {{\"from_sequence\": <integer >= 0>}}")
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


def open_bundle(path: str | os.PathLike, trusted_keys, limits: BundleLimits = DEFAULT_LIMITS) -> VerifiedBundle:
    """Read and fully verify a bundle; its files come back in memory."""
    members = read_members(path, limits)
    source = str(path)
    raw = members[MANIFEST_NAME]
    kid = check_signature(raw, members.get(SIGNATURE_NAME), trusted_keys, source)
    manifest = parse_manifest(raw, source)
    manifest.key_id = kid
    check_files(manifest, members, source)
    return VerifiedBundle(manifest=manifest, files={k: v for k, v in members.items() if k in manifest.files},
                          signature_raw=members.get(SIGNATURE_NAME))


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


def read_rollback_state(root: str | os.PathLike) -> dict:
    """``{"sequence": ..., "manifest_sha256": ...}`` of the newest bundle installed under
    ``root``; sequence -1 when nothing was installed yet."""
    p = Path(root) / ANTI_ROLLBACK_NAME
    if not p.is_file():
        return {"sequence": -1, "manifest_sha256": ""}
    try:
        state = json.loads(p.read_text())
        return {"sequence": int(state["sequence"]), "manifest_sha256": str(state["manifest_sha256"])}
    except (ValueError, KeyError, TypeError) as err:
        # never fall back to "anything goes": a damaged record refuses every install
        raise BundleError(f"{p} is damaged ({err}); restore it or remove it deliberately") from None


def check_rollback(manifest: Manifest, state: Mapping) -> None:
    """Raise BundleError when installing ``manifest`` would be a downgrade or a replay
    (the rule in the module docstring)."""
    recorded, recorded_digest = int(state["sequence"]), state["manifest_sha256"]
    seq = manifest.sequence
    if seq > recorded or (seq == recorded and manifest.digest == recorded_digest):
        return
    if manifest.rollback_from is not None and manifest.rollback_from >= recorded:
        return
    if seq == recorded:
        raise BundleError(f"bundle sequence {seq} is already taken by another installed bundle (manifest sha256 "
                          f"{recorded_digest[:16]}...): a replay of a superseded bundle is refused")
    raise BundleError(f"bundle sequence {seq} is older than the installed sequence {recorded} (a downgrade); "
                      f"an operator-signed rollback (manifest rollback.from_sequence >= {recorded}) is required")


def _write_json_atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _link(root: Path, name: str) -> str | None:
    p = root / name
    return os.readlink(p) if p.is_symlink() else None


def commit_install(root: str | os.PathLike, manifest: Manifest) -> None:
    """After the version ``manifest`` describes runs (and passed its self-test): record its
    sequence for anti-rollback and remove versions other than ``current`` and ``previous``."""
    root = Path(root)
    state = read_rollback_state(root)
    _write_json_atomic(root / ANTI_ROLLBACK_NAME, {"sequence": max(state["sequence"], manifest.sequence),
                                                   "manifest_sha256": manifest.digest})
    keep = {t for t in (_link(root, "current"), _link(root, "previous")) if t}
    versions = root / "versions"
    for d in versions.iterdir() if versions.is_dir() else ():
        if d.is_dir() and not d.name.startswith(".") and f"versions/{d.name}" not in keep:
            shutil.rmtree(d, ignore_errors=True)


def restore_links(root: str | os.PathLike, current: str | None, previous: str | None) -> None:
    """Put ``current`` / ``previous`` back to the given targets (None: no link)."""
    root = Path(root)
    for name, target in (("current", current), ("previous", previous)):
        if target is None:
            (root / name).unlink(missing_ok=True)
        elif _link(root, name) != target:
            _switch_link(root / name, target)


def install_bundle(path: str | os.PathLike, trusted_keys, root: str | os.PathLike, expected_digest: str | None = None,
                   commit: bool = True, limits: BundleLimits = DEFAULT_LIMITS) -> Path:
    """Verify ``path`` and install it under ``root``; returns the installed directory.

    ``root/current`` -> the new version, ``root/previous`` -> the one it replaced.
    Refused (BundleError, ``root`` untouched): a bundle that fails verification, whose
    manifest digest is not ``expected_digest`` (when given), or that anti-rollback refuses.
    With ``commit`` (the default) the sequence is recorded and versions older than
    current and previous are removed at once; otherwise the caller calls
    :func:`commit_install` once the new version proved itself. Re-installing the current
    version is a no-op. The bundle file is read once."""
    bundle = open_bundle(path, trusted_keys, limits)
    manifest = bundle.manifest
    if expected_digest is not None and manifest.digest != expected_digest:
        raise BundleError(f"{path}: manifest SHA-256 {manifest.digest} is not the expected {expected_digest[:64]}")
    root = Path(root)
    check_rollback(manifest, read_rollback_state(root))
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    name = f"{manifest.version}-{manifest.digest[:12]}"
    name = "".join(c if c.isalnum() or c in "._-+" else "_" for c in name)
    dest = versions / name
    current = root / "current"
    old = _link(root, "current")
    if old == f"versions/{name}" and dest.is_dir():
        if commit:
            commit_install(root, manifest)
        return dest
    if not dest.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=versions))
        try:
            _write_members(staging, {MANIFEST_NAME: manifest.raw, **bundle.files})
            if bundle.signature_raw is not None:
                (staging / SIGNATURE_NAME).write_bytes(bundle.signature_raw)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _switch_link(current, f"versions/{name}")
    if old is not None and old != f"versions/{name}":
        _switch_link(root / "previous", old)
    if commit:
        commit_install(root, manifest)
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
