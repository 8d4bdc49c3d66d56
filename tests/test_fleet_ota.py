"""Policy updates over the air: signed DTAC bundles (real export, real Ed25519, real
onnxruntime), verified, swapped between rounds, refused when unsigned or tampered,
rolled back when the new one fails to load."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from edgepilot.edge_agent.bundle import MANIFEST_NAME, SIGNATURE_NAME, inspect_bundle, read_members, verify_bundle
from edgepilot.edge_agent.fleet import topics
from edgepilot.edge_agent.fleet.ota import PolicyUpdater, UpdateRejected
from edgepilot.edge_agent.fleet.payloads import parse_status, parse_telemetry
from edgepilot.v1 import fleet_pb2 as pb
from tests.fleet_fixtures import Fleet, Listener, make_agent, make_task, mosquitto, publish_edge_info  # noqa: F401


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Two signed DTAC bundles (v1, v2), an unsigned one, a tampered one, one signed by
    an untrusted key, and a signed one whose model does not load."""
    from edgepilot.export.bundle import build_bundle, generate_keypair, load_private_key
    from edgepilot.export.pipeline import export_checkpoint
    from tests.helpers.export_fixtures import reference_checkpoint

    d = tmp_path_factory.mktemp("ota")
    ckpt = reference_checkpoint(d, "dtac", fit=False)
    priv, pub = generate_keypair(d / "keys", "fleet")
    rogue_priv, _ = generate_keypair(d / "rogue", "rogue")
    out = {"pub": pub, "priv": priv}
    for v in ("v1", "v2"):
        out[v] = d / f"dtac-{v}.bundle"
        export_checkpoint(ckpt, "laptop", out[v], precisions=["fp32"], parity_count=100, calibration_count=100,
                          min_agreement=0.0, signing_key=priv, version=f"dtac-{v}", build_engines=False)
    members = read_members(out["v1"])
    manifest = json.loads(members[MANIFEST_NAME])
    files = {k: v for k, v in members.items() if k not in (MANIFEST_NAME, SIGNATURE_NAME)}
    out["unsigned"] = build_bundle(d / "unsigned.bundle", files, {**manifest, "model": {**manifest["model"], "version": "dtac-unsigned"}})
    out["rogue"] = build_bundle(d / "rogue.bundle", files, {**manifest, "model": {**manifest["model"], "version": "dtac-rogue"}},
                                private_key=load_private_key(rogue_priv))
    # tampered: same signed manifest, one model byte changed
    onnx_name = next(k for k in files if k.endswith(".onnx"))
    tampered = dict(members)
    blob = bytearray(tampered[onnx_name])
    blob[len(blob) // 2] ^= 0xFF
    tampered[onnx_name] = bytes(blob)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for name, data in tampered.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out["tampered"] = d / "tampered.bundle"
    out["tampered"].write_bytes(buf.getvalue())
    # signed and hash-consistent, but the model is not an ONNX graph: fails to load
    broken = {**files, onnx_name: b"not an onnx model"}
    import hashlib

    man = json.loads(json.dumps(manifest))
    man["model"]["version"] = "dtac-broken"
    man.pop("sequence", None)   # a release of its own: build_bundle gives it the next sequence
    man["files"][onnx_name] = hashlib.sha256(broken[onnx_name]).hexdigest()
    for art in man.get("artifacts", []):
        if art.get("path") == onnx_name and "sha256" in art:
            art["sha256"] = man["files"][onnx_name]
    out["broken"] = build_bundle(d / "broken.bundle", broken, man, private_key=load_private_key(priv))
    verify_bundle(out["broken"], [pub])  # it does verify: only loading it fails
    return out


def _ann(path: Path, version: str, pub=None) -> pb.PolicyAnnouncement:
    """An announcement with the bundle's manifest digest (verified with ``pub`` when given,
    else read unverified, so the updater's own checks are what refuse a bad bundle)."""
    digest = verify_bundle(path, [pub]).digest if pub else inspect_bundle(path).digest
    return pb.PolicyAnnouncement(version=version, bundle_uri=path.resolve().as_uri(), manifest_sha256=digest,
                                 issued_unix_seconds=time.time())


def test_updater_installs_refuses_and_rolls_back(tmp_path, bundles) -> None:
    up = PolicyUpdater(tmp_path / "b", [bundles["pub"]], profile="laptop")
    p1 = up.install(_ann(bundles["v1"], "dtac-v1", bundles["pub"]), 4)
    assert p1.version == "dtac-v1"
    out = p1.decide(np.array([[1e-10, 8.0, 1.2, 0.3, 0.3, 6.0]]))
    assert set(out) >= {"offload", "channel", "transmit_power_ratio", "cpu_freq_ratio"}
    p2 = up.install(_ann(bundles["v2"], "dtac-v2", bundles["pub"]), 4)
    assert p2.version == "dtac-v2" and up.previous_version.startswith("dtac-v1")
    for bad, why in (("unsigned", "signature"), ("rogue", "key"), ("tampered", "")):
        with pytest.raises(UpdateRejected, match=f"refused.*{why}"):
            up.install(_ann(bundles[bad], f"dtac-{bad}"), 4)
    # the announced manifest digest must match what is on disk
    ann = _ann(bundles["v1"], "dtac-v1", bundles["pub"])
    ann.manifest_sha256 = "0" * 64
    with pytest.raises(UpdateRejected, match="SHA-256"):
        up.install(ann, 4)
    with pytest.raises(UpdateRejected, match="rolled back"):
        up.install(_ann(bundles["broken"], "dtac-broken", bundles["pub"]), 4)
    assert up.load_current(4).version == "dtac-v2"  # still the last good one
    assert up.rejected == 5 and up.installed == 2


def test_agent_swaps_policy_between_rounds_over_mqtt(tmp_path, mosquitto, bundles) -> None:
    fleet = Fleet(num_edges=1)
    port = mosquitto.port
    lis = Listener(port, [topics.telemetry("ue-ota"), topics.status("ue-ota")], client_id="ota-listener")
    publish_edge_info(lis, fleet, 0)
    agent = make_agent(tmp_path, port, "ue-ota", trusted_keys=[str(bundles["pub"])])
    agent.updater = PolicyUpdater(tmp_path / "ue-ota-bundles", [bundles["pub"]], profile="laptop")
    agent.start()
    try:
        time.sleep(0.3)

        def round_(r: int) -> pb.Telemetry:
            lis.publish(topics.task("ue-ota"), make_task("ue-ota", r).SerializeToString())
            got = [parse_telemetry(p) for p in lis.wait_for(topics.telemetry("ue-ota"), r + 1)]
            assert len(got) >= r + 1, f"no telemetry for round {r}"
            return next(t for t in got if t.outcome.round == r)

        assert round_(0).decision.policy_version == "local-threshold"
        lis.publish(topics.policy_topic(), _ann(bundles["v1"], "dtac-v1", bundles["pub"]).SerializeToString(), retain=True)
        time.sleep(0.3)
        assert round_(1).decision.policy_version == "dtac-v1"
        lis.publish(topics.policy_topic(), _ann(bundles["tampered"], "dtac-tampered").SerializeToString(), retain=True)
        time.sleep(0.3)
        assert round_(2).decision.policy_version == "dtac-v1"  # refused: the old policy keeps deciding
        statuses = [parse_status(p) for p in lis.wait_for(topics.status("ue-ota"), 3) if p]
        assert any(s.rejected_policy_version == "dtac-tampered" and s.rejected_reason for s in statuses)
        lis.publish(topics.policy_topic(), _ann(bundles["broken"], "dtac-broken", bundles["pub"]).SerializeToString(), retain=True)
        time.sleep(0.3)
        assert round_(3).decision.policy_version == "dtac-v1"  # failed to load: rolled back
        assert agent.stats["rounds"] == 4
    finally:
        lis.publish(topics.policy_topic(), b"", retain=True)  # clear the retained announcement
        agent.stop(flush_timeout=5)
        lis.close()
        fleet.close()


def _rebuilt(bundles, d: Path, name: str, version: str) -> Path:
    """The broken bundle again under another version, built now (a higher sequence)."""
    from edgepilot.export.bundle import build_bundle, load_private_key

    members = read_members(bundles["broken"])
    manifest = json.loads(members[MANIFEST_NAME])
    manifest["model"]["version"] = version
    manifest.pop("sequence", None)
    files = {k: v for k, v in members.items() if k not in (MANIFEST_NAME, SIGNATURE_NAME)}
    return build_bundle(d / name, files, manifest, private_key=load_private_key(bundles["priv"]))


def test_failed_updates_keep_current_and_previous_working(tmp_path, bundles) -> None:
    root = tmp_path / "b"
    up = PolicyUpdater(root, [bundles["pub"]], profile="laptop")
    up.install(_ann(bundles["v1"], "dtac-v1", bundles["pub"]), 4)
    up.install(_ann(bundles["v2"], "dtac-v2", bundles["pub"]), 4)
    good = {n: (root / n).resolve() for n in ("current", "previous")}
    for i in range(3):   # repeated failures: each must leave both links on working versions
        broken = _rebuilt(bundles, tmp_path, f"broken{i}.bundle", f"dtac-broken{i}")
        with pytest.raises(UpdateRejected, match="rolled back"):
            up.install(_ann(broken, f"dtac-broken{i}", bundles["pub"]), 4)
        assert {n: (root / n).resolve() for n in ("current", "previous")} == good
        assert all(p.is_dir() for p in good.values())   # the version before last was not pruned
    assert PolicyUpdater(root, [bundles["pub"]], profile="laptop").load_current(4).version == "dtac-v2"
    # the running version breaks on disk: start-up falls back to the previous one, and
    # previous no longer points at the broken one
    onnx = next((root / "current").resolve().rglob("*.onnx"))
    onnx.write_bytes(b"damaged")
    fresh = PolicyUpdater(root, [bundles["pub"]], profile="laptop")
    assert fresh.load_current(4).version == "dtac-v1"
    assert (root / "current").resolve() == good["previous"] and not (root / "previous").exists()
    assert fresh.load_current(4).version == "dtac-v1"       # and again: still a policy


def test_empty_or_malformed_digest_announcement_is_refused(tmp_path, bundles) -> None:
    up = PolicyUpdater(tmp_path / "b", [bundles["pub"]], profile="laptop")
    for digest in ("", "abc", "Z" * 64):
        ann = _ann(bundles["v1"], "dtac-v1", bundles["pub"])
        ann.manifest_sha256 = digest
        with pytest.raises(UpdateRejected, match="manifest_sha256"):
            up.install(ann, 4)
    assert not (tmp_path / "b" / "current").exists() and up.rejected == 3


def test_downgrade_and_replay_announcements_are_refused(tmp_path, bundles) -> None:
    from edgepilot.export.bundle import make_rollback_bundle

    up = PolicyUpdater(tmp_path / "b", [bundles["pub"]], profile="laptop")
    up.install(_ann(bundles["v1"], "dtac-v1", bundles["pub"]), 4)
    up.install(_ann(bundles["v2"], "dtac-v2", bundles["pub"]), 4)
    with pytest.raises(UpdateRejected, match="older than"):
        up.install(_ann(bundles["v1"], "dtac-v1", bundles["pub"]), 4)     # downgrade to a validly signed v1
    assert up.load_current(4).version == "dtac-v2"
    v2_seq = verify_bundle(bundles["v2"], [bundles["pub"]]).sequence
    back = make_rollback_bundle(bundles["v1"], bundles["priv"], tmp_path / "back.bundle", from_sequence=v2_seq)
    assert up.install(_ann(back, "dtac-v1", bundles["pub"]), 4).version == "dtac-v1"   # operator-signed rollback
    with pytest.raises(UpdateRejected, match="already taken"):
        up.install(_ann(bundles["v2"], "dtac-v2", bundles["pub"]), 4)     # replay of the version rolled back from
