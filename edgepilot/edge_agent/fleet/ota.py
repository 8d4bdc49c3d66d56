"""Policy updates over the air.

The retained policy topic announces a signed bundle (version, where to read it, the
SHA-256 of its manifest). Between two rounds the agent hands the announcement to
:class:`PolicyUpdater.install`, which

1. refuses an announcement without a well-formed ``manifest_sha256`` (64 hex digits):
   the digest binds the announcement to one signed manifest;
2. verifies the bundle (Ed25519 signature by a trusted key, every file's hash, plain
   entry names, sizes within limits), that its manifest digest is the announced one, and
   anti-rollback (no older or replayed sequence without an operator-signed rollback),
   all on one read of the file: :func:`edgepilot.edge_agent.bundle.install_bundle`;
3. installs it next to the running one (``current`` -> new, ``previous`` -> the one it
   replaced) without pruning or recording anything yet;
4. loads it through the device runtime and runs a self-test on fixed local states; if
   either fails, puts ``current`` and ``previous`` back exactly as they were (both still
   working versions), removes the failed one and raises; if both pass, commits: records
   the sequence and only now removes the version before last.

The caller keeps running the policy it had until ``install`` returns a new one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from edgepilot.edge_agent.bundle import (
    MANIFEST_NAME,
    BundleError,
    commit_install,
    install_bundle,
    load_trusted_keys,
    parse_manifest,
    restore_links,
)
from edgepilot.edge_agent.fleet.policy import Policy, load_bundle_policy, self_test
from edgepilot.v1 import fleet_pb2 as pb

log = logging.getLogger("edgepilot.fleet.ota")
DIGEST = re.compile(r"[0-9a-f]{64}")


class UpdateRejected(RuntimeError):
    """The announced bundle was refused (the message says why); the old policy stays."""


def bundle_path(uri: str) -> Path:
    """A ``file://`` URI or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
    raise UpdateRejected(f"bundle_uri scheme {parsed.scheme!r} is not supported (file:// or a path)")


class PolicyUpdater:
    def __init__(self, root: str | os.PathLike, trusted_keys, profile: str | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.trusted_keys = load_trusted_keys(trusted_keys)
        self.profile = profile
        self.installed = 0
        self.rejected = 0

    @property
    def current_dir(self) -> Path:
        return self.root / "current"

    @property
    def previous_version(self) -> str:
        prev = self.root / "previous"
        return os.readlink(prev).split("/")[-1] if prev.is_symlink() else ""

    def _load(self, directory: Path, num_channels: int | None) -> Policy:
        policy = load_bundle_policy(directory, self.trusted_keys, profile=self.profile)
        channels = num_channels or getattr(policy.runtime, "num_channels", None) or 4
        self_test(policy, channels)
        return policy

    def _link(self, name: str) -> str | None:
        p = self.root / name
        return os.readlink(p) if p.is_symlink() else None

    def load_current(self, num_channels: int | None = None) -> Policy | None:
        """The installed policy at start-up. If the current one fails to load, falls back
        to the previous one, which becomes current (``previous`` is then removed rather
        than left pointing at the broken version), and says so."""
        if not self.current_dir.exists():
            return None
        try:
            return self._load(self.current_dir, num_channels)
        except Exception as err:
            log.warning("installed policy %s fails to load (%s); falling back to the previous one", self.current_dir, err)
        prev = self._link("previous")
        if prev is None:
            log.error("no loadable installed policy: the current one fails and there is no previous one")
            return None
        try:
            policy = self._load(self.root / prev, num_channels)
        except Exception as err2:
            log.error("no loadable installed policy: the previous one fails too (%s)", err2)
            return None
        restore_links(self.root, prev, None)
        return policy

    def _refuse(self, message: str) -> UpdateRejected:
        self.rejected += 1
        return UpdateRejected(message)

    def install(self, ann: pb.PolicyAnnouncement, num_channels: int | None = None) -> Policy:
        version = ann.version[:64]
        if not DIGEST.fullmatch(ann.manifest_sha256):
            raise self._refuse(f"bundle {version} refused: the announcement's manifest_sha256 must be 64 lowercase "
                               f"hex digits, got {ann.manifest_sha256[:80]!r}")
        path = bundle_path(ann.bundle_uri)
        before = (self._link("current"), self._link("previous"))
        try:
            dest = install_bundle(path, self.trusted_keys, self.root, expected_digest=ann.manifest_sha256, commit=False)
        except (BundleError, OSError, KeyError, ValueError) as err:
            raise self._refuse(f"bundle {version} refused: {err}") from None
        try:
            policy = self._load(self.current_dir, num_channels)
        except Exception as err:
            restore_links(self.root, *before)
            if f"versions/{dest.name}" not in before:
                shutil.rmtree(dest, ignore_errors=True)
            raise self._refuse(f"bundle {version} failed to load or its self-test ({err}); rolled back") from None
        commit_install(self.root, parse_manifest((dest / MANIFEST_NAME).read_bytes(), str(dest)))
        self.installed += 1
        log.info("policy %s installed (previous: %s)", version, self.previous_version or "none")
        return policy
