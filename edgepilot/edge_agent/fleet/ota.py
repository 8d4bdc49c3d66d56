"""Policy updates over the air.

The retained policy topic announces a signed bundle (version, where to read it, the
SHA-256 of its manifest). Between two rounds the agent hands the announcement to
:class:`PolicyUpdater.install`, which

1. verifies the bundle (Ed25519 signature by a trusted key, every file's hash, plain
   entry names: :func:`edgepilot.edge_agent.bundle.verify_bundle`) and that its manifest digest is
   the announced one: an unsigned or tampered bundle is refused and nothing changes;
2. installs it atomically next to the running one (``current`` -> new, ``previous`` ->
   the one it replaced: :func:`edgepilot.edge_agent.bundle.install_bundle`);
3. loads it through the device runtime and runs a self-test on fixed local states;
   if either fails, rolls ``current`` back to the previous version and raises.

The caller keeps running the policy it had until ``install`` returns a new one.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from edgepilot.edge_agent.bundle import BundleError, install_bundle, load_trusted_keys, rollback, verify_bundle
from edgepilot.edge_agent.fleet.policy import Policy, load_bundle_policy, self_test
from edgepilot.v1 import fleet_pb2 as pb

log = logging.getLogger("edgepilot.fleet.ota")


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

    def load_current(self, num_channels: int | None = None) -> Policy | None:
        """The installed policy at start-up; falls back to the previous one if the
        current fails to load (and says so)."""
        if not self.current_dir.exists():
            return None
        try:
            return self._load(self.current_dir, num_channels)
        except Exception as err:
            log.warning("installed policy %s fails to load (%s); rolling back", self.current_dir, err)
            try:
                rollback(self.root)
                return self._load(self.current_dir, num_channels)
            except Exception as err2:
                log.error("no loadable installed policy: %s", err2)
                return None

    def install(self, ann: pb.PolicyAnnouncement, num_channels: int | None = None) -> Policy:
        path = bundle_path(ann.bundle_uri)
        try:
            manifest = verify_bundle(path, self.trusted_keys)
        except (BundleError, OSError, KeyError, ValueError) as err:
            self.rejected += 1
            raise UpdateRejected(f"bundle {ann.version} refused: {err}") from None
        if ann.manifest_sha256 and manifest.digest != ann.manifest_sha256:
            self.rejected += 1
            raise UpdateRejected(f"bundle {ann.version} refused: manifest SHA-256 {manifest.digest} "
                                 f"is not the announced {ann.manifest_sha256}")
        had_current = self.current_dir.is_symlink()
        before = os.readlink(self.current_dir) if had_current else None
        try:
            install_bundle(path, self.trusted_keys, self.root)
        except (BundleError, OSError) as err:
            self.rejected += 1
            raise UpdateRejected(f"bundle {ann.version} could not be installed: {err}") from None
        try:
            policy = self._load(self.current_dir, num_channels)
        except Exception as err:
            self.rejected += 1
            self._roll_back(had_current, before)
            raise UpdateRejected(f"bundle {ann.version} failed to load or its self-test ({err}); rolled back") from None
        self.installed += 1
        log.info("policy %s installed (previous: %s)", ann.version, self.previous_version or "none")
        return policy

    def _roll_back(self, had_current: bool, before: str | None) -> None:
        if not had_current:  # first install failed: leave no current behind
            bad = self.current_dir
            target = os.readlink(bad) if bad.is_symlink() else None
            bad.unlink(missing_ok=True)
            if target:
                shutil.rmtree(self.root / target, ignore_errors=True)
            return
        if os.readlink(self.current_dir) != before:
            rollback(self.root)
