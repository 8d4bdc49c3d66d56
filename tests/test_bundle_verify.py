"""Bundle verification and install: every way a bundle must be refused, and the
atomic install that keeps the previous version. Real Ed25519 keys (cryptography)."""

import base64
import io
import json
import os
import tarfile

import pytest

from edgepilot.edge_agent.bundle import (
    BundleError,
    install_bundle,
    inspect_bundle,
    open_bundle,
    read_members,
    rollback,
    verify_bundle,
    verify_installed,
)
from edgepilot.export.bundle import build_bundle, generate_keypair, load_private_key, sign_bundle


@pytest.fixture()
def keys(tmp_path):
    priv, pub = generate_keypair(tmp_path / "keys", "release")
    other_priv, other_pub = generate_keypair(tmp_path / "other", "intruder")
    return {"priv": priv, "pub": pub, "other_priv": other_priv, "other_pub": other_pub}


def _manifest(version="1.0"):
    return {"model": {"kind": "dtac", "version": version}, "target": {"name": "laptop"}, "artifacts": [],
            "inputs": [], "outputs": []}


FILES = {"artifacts/model.onnx": b"onnx-bytes" * 10, "parity.json": b"{}"}


@pytest.fixture()
def signed(tmp_path, keys):
    return build_bundle(tmp_path / "b.bundle", FILES, _manifest(), load_private_key(keys["priv"]))


def _rewrite(src, dst, mutate):
    """Copy a bundle tar entry by entry, letting ``mutate(name, data)`` change it
    (return None to drop, or a list of (TarInfo, data) to replace)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:") as tout:
        for info in tin:
            data = tin.extractfile(info).read()
            result = mutate(info.name, data)
            if result is None:
                continue
            for ti, d in result:
                tout.addfile(ti, io.BytesIO(d) if d is not None else None)
    return dst


def _entry(name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def test_signed_bundle_verifies(signed, keys):
    m = verify_bundle(signed, [keys["pub"]])
    assert m.kind == "dtac" and m.version == "1.0" and set(m.files) == set(FILES)
    assert open_bundle(signed, keys["pub"].parent).files["artifacts/model.onnx"] == FILES["artifacts/model.onnx"]


def test_unsigned_bundle_is_refused_then_signed(tmp_path, keys):
    path = build_bundle(tmp_path / "u.bundle", FILES, _manifest())
    with pytest.raises(BundleError, match="not signed"):
        verify_bundle(path, [keys["pub"]])
    assert inspect_bundle(path).key_id is None
    sign_bundle(path, keys["priv"])
    assert verify_bundle(path, [keys["pub"]]).key_id == inspect_bundle(path).key_id


def test_unknown_key_is_refused(signed, keys):
    with pytest.raises(BundleError, match="signed by unknown key"):
        verify_bundle(signed, [keys["other_pub"]])
    with pytest.raises(BundleError, match="no trusted keys"):
        verify_bundle(signed, [])


def test_wrong_signature_is_refused(tmp_path, signed, keys):
    # a signature made by another key, claiming the trusted key's id
    intruder = load_private_key(keys["other_priv"])

    def forge(name, data):
        if name == "signature.json":
            doc = json.loads(data)
            manifest = read_members(signed)["manifest.json"]
            doc["signature"] = base64.b64encode(intruder.sign(manifest)).decode()
            data = json.dumps(doc).encode()
        return [_entry(name, data)]

    forged = _rewrite(signed, tmp_path / "forged.bundle", forge)
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(forged, [keys["pub"]])


def test_missing_signature_file_and_garbage_signature(tmp_path, signed, keys):
    nosig = _rewrite(signed, tmp_path / "nosig.bundle", lambda n, d: None if n == "signature.json" else [_entry(n, d)])
    with pytest.raises(BundleError, match="not signed"):
        verify_bundle(nosig, [keys["pub"]])
    garbage = _rewrite(signed, tmp_path / "garbage.bundle", lambda n, d: [_entry(n, b"{not json" if n == "signature.json" else d)])
    with pytest.raises(BundleError, match="signature.json is malformed"):
        verify_bundle(garbage, [keys["pub"]])


def test_changed_file_is_refused(tmp_path, signed, keys):
    tampered = _rewrite(signed, tmp_path / "t.bundle",
                        lambda n, d: [_entry(n, d.replace(b"onnx", b"evil") if n == "artifacts/model.onnx" else d)])
    with pytest.raises(BundleError, match="artifacts/model.onnx has changed"):
        verify_bundle(tampered, [keys["pub"]])


def test_changed_manifest_is_refused(tmp_path, signed, keys):
    tampered = _rewrite(signed, tmp_path / "m.bundle",
                        lambda n, d: [_entry(n, d.replace(b'"1.0"', b'"9.9"') if n == "manifest.json" else d)])
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(tampered, [keys["pub"]])


def test_extra_and_missing_files_are_refused(tmp_path, signed, keys):
    extra = _rewrite(signed, tmp_path / "e.bundle",
                     lambda n, d: [_entry(n, d)] + ([_entry("artifacts/extra.onnx", b"x")] if n == "parity.json" else []))
    with pytest.raises(BundleError, match="not listed in the manifest: artifacts/extra.onnx"):
        verify_bundle(extra, [keys["pub"]])
    missing = _rewrite(signed, tmp_path / "mi.bundle", lambda n, d: None if n == "parity.json" else [_entry(n, d)])
    with pytest.raises(BundleError, match="missing: parity.json"):
        verify_bundle(missing, [keys["pub"]])


@pytest.mark.parametrize("name,message", [
    ("../evil.sh", "path traversal"),
    ("artifacts/../../evil.sh", "path traversal"),
    ("/etc/cron.d/evil", "absolute path"),
    ("artifacts/./x", "not a normalised relative path"),
])
def test_traversal_and_absolute_entries_are_refused(tmp_path, signed, keys, name, message):
    bad = _rewrite(signed, tmp_path / "trav.bundle",
                   lambda n, d: [_entry(n, d)] + ([_entry(name, b"#!/bin/sh\n")] if n == "parity.json" else []))
    with pytest.raises(BundleError, match=message):
        verify_bundle(bad, [keys["pub"]])
    assert not (tmp_path.parent / "evil.sh").exists()


def test_symlink_and_hardlink_entries_are_refused(tmp_path, signed, keys):
    for kind, label in ((tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hard link")):
        def add_link(n, d, kind=kind):
            out = [_entry(n, d)]
            if n == "parity.json":
                ti = tarfile.TarInfo("artifacts/link")
                ti.type, ti.linkname = kind, "/etc/passwd"
                out.append((ti, None))
            return out

        bad = _rewrite(signed, tmp_path / f"{label}.bundle", add_link)
        with pytest.raises(BundleError, match=f"is a {label}"):
            verify_bundle(bad, [keys["pub"]])


def test_not_a_bundle(tmp_path, keys):
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"\x00" * 10 + b"garbage")
    with pytest.raises(BundleError, match="not a bundle|no manifest.json"):
        verify_bundle(junk, [keys["pub"]])
    with pytest.raises(BundleError, match="bundle not found"):
        verify_bundle(tmp_path / "absent.bundle", [keys["pub"]])


def test_install_keeps_previous_and_rolls_back(tmp_path, keys):
    key = load_private_key(keys["priv"])
    root = tmp_path / "policy"
    b1 = build_bundle(tmp_path / "v1.bundle", FILES, _manifest("1.0"), key)
    b2 = build_bundle(tmp_path / "v2.bundle", {**FILES, "parity.json": b'{"v": 2}'}, _manifest("2.0"), key)
    b3 = build_bundle(tmp_path / "v3.bundle", FILES, _manifest("3.0"), key)
    d1 = install_bundle(b1, [keys["pub"]], root)
    assert (root / "current").resolve() == d1.resolve() and not (root / "previous").exists()
    d2 = install_bundle(b2, [keys["pub"]], root)
    assert (root / "current").resolve() == d2.resolve() and (root / "previous").resolve() == d1.resolve()
    assert verify_installed(root / "current", [keys["pub"]]).manifest.version == "2.0"
    assert install_bundle(b2, [keys["pub"]], root) == d2  # idempotent
    rollback(root)
    assert (root / "current").resolve() == d1.resolve() and (root / "previous").resolve() == d2.resolve()
    install_bundle(b3, [keys["pub"]], root)
    assert len([d for d in (root / "versions").iterdir() if not d.name.startswith(".")]) == 2  # current + previous only


def test_failed_install_leaves_root_untouched(tmp_path, keys, signed):
    root = tmp_path / "policy"
    d1 = install_bundle(signed, [keys["pub"]], root)
    other = build_bundle(tmp_path / "o.bundle", FILES, _manifest("6.6"), load_private_key(keys["other_priv"]))
    with pytest.raises(BundleError, match="unknown key"):
        install_bundle(other, [keys["pub"]], root)
    assert (root / "current").resolve() == d1.resolve()
    assert sorted(p.name for p in (root / "versions").iterdir()) == [d1.name]


def test_installed_file_changed_on_disk_is_refused(tmp_path, keys, signed):
    d = install_bundle(signed, [keys["pub"]], tmp_path / "policy")
    (d / "artifacts" / "model.onnx").write_bytes(b"patched")
    with pytest.raises(BundleError, match="has changed"):
        verify_installed(d, [keys["pub"]])


def test_private_key_file_is_owner_only(keys):
    assert os.stat(keys["priv"]).st_mode & 0o077 == 0
