"""Hostile bundles and announcements on the device side: decompression bombs (a sparse tar,
too many members, members too large for the limits, checked from the tar headers before
anything is read), downgrades and replays (the anti-rollback sequence and the
operator-signed rollback marker). Real Ed25519 keys, real tar files."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgepilot.edge_agent.bundle import (
    BundleError,
    BundleLimits,
    install_bundle,
    read_members,
    read_rollback_state,
    verify_bundle,
)
from edgepilot.export.bundle import build_bundle, generate_keypair, load_private_key, make_rollback_bundle

REPO = Path(__file__).resolve().parent.parent
FILES = {"artifacts/model.onnx": b"onnx-bytes" * 10, "parity.json": b"{}"}


def _manifest(version: str) -> dict:
    return {"model": {"kind": "dtac", "version": version}, "target": {"name": "laptop"}, "artifacts": [],
            "inputs": [], "outputs": []}


@pytest.fixture()
def keys(tmp_path):
    priv, pub = generate_keypair(tmp_path / "keys", "release")
    return {"key": load_private_key(priv), "priv": priv, "pub": pub}


# --- bombs ----------------------------------------------------------------------------------


def test_sparse_tar_is_refused_from_its_header(tmp_path, keys) -> None:
    """Nine sparse 500 MiB members (4.4 GiB, each under the per-member limit) stored in a
    few kB: refused before a byte of them is read."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "manifest.json").write_bytes(b"{}")
    names = []
    for i in range(9):
        names.append(f"part{i}.bin")
        with open(src / names[-1], "wb") as fh:
            fh.truncate(500 << 20)
    bomb = tmp_path / "sparse.bundle"
    subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", str(bomb), "-C", str(src), "manifest.json", *names],
                   check=True)
    assert bomb.stat().st_size < 112 * 1024
    script = ("import resource, sys\n"
              "from edgepilot.edge_agent.bundle import read_members, BundleError\n"
              "try:\n"
              "    read_members(sys.argv[1]); print('READ')\n"
              "except (BundleError, MemoryError) as e:\n"
              "    print('REFUSED', e)\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print('MAXRSS_KB', hwm)\n")   # VmHWM: this process's peak, not the forked parent's
    def cap_memory():   # a regression fails with MemoryError instead of taking the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    out = subprocess.run([sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, preexec_fn=cap_memory).stdout
    assert "REFUSED" in out and "sparse" in out, out
    assert int(out.split("MAXRSS_KB")[1]) < 256 * 1024, out   # reading it would cost 4 GiB


def _tar(path: Path, entries) -> Path:
    with tarfile.open(path, "w:") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_too_many_members_are_refused(tmp_path) -> None:
    limits = BundleLimits()
    bomb = _tar(tmp_path / "many.bundle", [("manifest.json", b"{}")] +
                [(f"artifacts/{i}", b"") for i in range(limits.max_members + 1)])
    with pytest.raises(BundleError, match="more than 1024 entries"):
        read_members(bomb)


def test_member_and_total_sizes_are_checked_from_the_headers(tmp_path) -> None:
    # headers only: a member that claims 300 MiB with no data behind it
    info = tarfile.TarInfo("artifacts/huge.onnx")
    info.size = 300 << 20
    header = tarfile.TarInfo("manifest.json")
    header.size = 2
    blob = header.tobuf(tarfile.GNU_FORMAT) + b"{}".ljust(512, b"\0") + info.tobuf(tarfile.GNU_FORMAT)
    claim = tmp_path / "claim.bundle"
    claim.write_bytes(blob + b"\0" * 1024)
    with pytest.raises(BundleError, match="huge.onnx.*larger than"):
        read_members(claim)
    small = BundleLimits(max_member_bytes=64 * 1024, max_total_bytes=100 * 1024)
    total = _tar(tmp_path / "total.bundle", [("manifest.json", b"{}"), ("a", b"x" * 60_000), ("b", b"y" * 60_000)])
    with pytest.raises(BundleError, match="larger than|more than"):
        read_members(total, small)
    assert set(read_members(total)) == {"manifest.json", "a", "b"}   # fine under the default limits


# --- anti-rollback --------------------------------------------------------------------------


def _bundle(tmp_path, keys, version: str, sequence: int, **extra) -> Path:
    return build_bundle(tmp_path / f"{version}-{sequence}.bundle", {**FILES, "parity.json": version.encode()},
                        {**_manifest(version), **extra}, keys["key"], sequence=sequence)


def test_older_bundle_is_refused_after_a_newer_one(tmp_path, keys) -> None:
    root = tmp_path / "policy"
    b5, b7 = _bundle(tmp_path, keys, "1.5", 5), _bundle(tmp_path, keys, "1.7", 7)
    install_bundle(b5, [keys["pub"]], root)
    d7 = install_bundle(b7, [keys["pub"]], root)
    assert read_rollback_state(root)["sequence"] == 7
    with pytest.raises(BundleError, match="older than"):
        install_bundle(b5, [keys["pub"]], root)            # downgrade
    assert (root / "current").resolve() == d7.resolve()
    assert install_bundle(b7, [keys["pub"]], root) == d7   # the running one again: a no-op


def test_another_bundle_with_the_same_sequence_is_refused(tmp_path, keys) -> None:
    root = tmp_path / "policy"
    install_bundle(_bundle(tmp_path, keys, "2.0", 9), [keys["pub"]], root)
    with pytest.raises(BundleError, match="sequence 9"):
        install_bundle(_bundle(tmp_path, keys, "2.0-other", 9), [keys["pub"]], root)


def test_unsigned_sequence_cannot_be_forged(tmp_path, keys) -> None:
    """The sequence lives in the signed manifest: raising it breaks the signature."""
    b = _bundle(tmp_path, keys, "3.0", 3)
    members = read_members(b)
    raw = members["manifest.json"].replace(b'"sequence": 3', b'"sequence": 99')
    assert raw != members["manifest.json"]
    forged = _tar(tmp_path / "forged.bundle", [("manifest.json", raw), ("signature.json", members["signature.json"])]
                  + [(k, v) for k, v in members.items() if k not in ("manifest.json", "signature.json")])
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(forged, [keys["pub"]])


def test_operator_signed_rollback_allows_a_downgrade_once(tmp_path, keys) -> None:
    root = tmp_path / "policy"
    old, new = _bundle(tmp_path, keys, "4.0", 4), _bundle(tmp_path, keys, "5.0", 5)
    install_bundle(old, [keys["pub"]], root)
    d5 = install_bundle(new, [keys["pub"]], root)
    back = make_rollback_bundle(old, keys["priv"], tmp_path / "rollback-4.bundle", from_sequence=5)
    manifest = verify_bundle(back, [keys["pub"]])
    assert manifest.sequence == 4 and manifest.rollback_from == 5
    d4 = install_bundle(back, [keys["pub"]], root)
    assert (root / "current").resolve() == d4.resolve() != d5.resolve()
    with pytest.raises(BundleError, match="sequence 5"):
        install_bundle(new, [keys["pub"]], root)            # the version rolled back from is not replayed
    install_bundle(_bundle(tmp_path, keys, "6.0", 6), [keys["pub"]], root)
    with pytest.raises(BundleError, match="older than"):
        install_bundle(back, [keys["pub"]], root)           # the marker only covers up to sequence 5
    unsigned_marker = json.loads(read_members(old)["manifest.json"])
    assert "rollback" not in unsigned_marker


def test_bundles_without_a_sequence_read_as_zero(tmp_path, keys) -> None:
    legacy = build_bundle(tmp_path / "legacy.bundle", FILES, _manifest("0.1"), keys["key"], sequence=None)
    assert "sequence" not in json.loads(read_members(legacy)["manifest.json"])
    assert verify_bundle(legacy, [keys["pub"]]).sequence == 0
    root = tmp_path / "policy"
    install_bundle(_bundle(tmp_path, keys, "1.0", 1), [keys["pub"]], root)
    with pytest.raises(BundleError, match="older than"):
        install_bundle(legacy, [keys["pub"]], root)


def test_default_sequences_increase(tmp_path, keys) -> None:
    seqs = [verify_bundle(build_bundle(tmp_path / f"{i}.bundle", FILES, _manifest(str(i)), keys["key"]),
                          [keys["pub"]]).sequence for i in range(5)]
    assert seqs == sorted(set(seqs)) and seqs[0] > 1_600_000_000_000_000   # microseconds since the epoch
