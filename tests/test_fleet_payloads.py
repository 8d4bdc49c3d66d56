"""Fleet payload validation, the on-disk outbox, topics and policies (no broker)."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from edgepilot.edge_agent.fleet import payloads, topics
from edgepilot.edge_agent.fleet.outbox import Outbox
from edgepilot.edge_agent.fleet.payloads import PayloadError
from edgepilot.edge_agent.fleet.policy import LocalThresholdPolicy, check_decisions
from edgepilot.v1 import fleet_pb2 as pb
from tests.fleet_fixtures import make_task


def test_task_round_trip_and_ue_check() -> None:
    t = make_task("ue-001", 3)
    assert payloads.parse_task(t.SerializeToString(), "ue-001") == t
    with pytest.raises(PayloadError, match="not this UE"):
        payloads.parse_task(t.SerializeToString(), "ue-002")


@pytest.mark.parametrize("field,value,fragment", [
    ("input_bits", 0.0, "input_bits"), ("input_bits", float("nan"), "input_bits"),
    ("output_bits", -1.0, "output_bits"), ("cycles_per_bit", 1e9, "cycles_per_bit"),
    ("deadline_seconds", float("inf"), "deadline_seconds"),
])
def test_task_out_of_range_names_field_and_bound(field, value, fragment) -> None:
    t = make_task("ue-001", 0)
    setattr(t, field, value)
    with pytest.raises(PayloadError) as err:
        payloads.parse_task(t.SerializeToString(), "ue-001")
    assert fragment in str(err.value) and "outside" in str(err.value)
    assert err.value.field == field


def test_task_radio_gain_out_of_range() -> None:
    t = make_task("ue-001", 0)
    t.radio.channel_gain = 2.0
    with pytest.raises(PayloadError, match="radio.channel_gain"):
        payloads.parse_task(t.SerializeToString())
    t.ClearField("radio")
    with pytest.raises(PayloadError, match="radio is missing"):
        payloads.parse_task(t.SerializeToString())


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"garbage that is not protobuf", b"\x0a\x05ab"])
def test_garbage_does_not_parse_or_is_out_of_range(raw) -> None:
    with pytest.raises(PayloadError):
        payloads.parse_task(raw)


def test_decision_and_edge_info_bounds() -> None:
    d = pb.Decision(ue_id="ue-1", round=1, offload=pb.OFFLOAD_TARGET_EDGE, channel=5, transmit_power_ratio=0.5,
                    cpu_freq_ratio=1.0)
    with pytest.raises(PayloadError, match="channel = 5"):
        payloads.parse_decision(d.SerializeToString(), "ue-1", num_channels=4)
    d.channel, d.cpu_freq_ratio = 1, 0.0
    with pytest.raises(PayloadError, match="cpu_freq_ratio"):
        payloads.parse_decision(d.SerializeToString(), "ue-1", num_channels=4)
    info = pb.EdgeServerInfo(edge_id=0, grpc_address="nohost", edge_cpu_hz=1e9, cloud_cpu_hz=1e10, num_channels=4,
                             channel_bandwidth_hz=2e7, noise_power_w=1e-13, edge_power_w=1, cloud_power_w=10, time_scale=0.1)
    with pytest.raises(PayloadError, match="grpc_address"):
        payloads.parse_edge_info(info.SerializeToString())
    info.grpc_address = "127.0.0.1:5000"
    assert payloads.parse_edge_info(info.SerializeToString()).edge_id == 0


def test_topics_are_versioned_and_ue_ids_checked() -> None:
    assert topics.task("ue-007") == "edgepilot/v1/ue/ue-007/task"
    assert topics.ue_of("edgepilot/v1/ue/ue-007/telemetry") == "ue-007"
    for bad in ("a/b", "+", "#", "", "x" * 65):
        with pytest.raises(ValueError):
            topics.task(bad)


def test_outbox_keeps_order_across_restart_and_bounds(tmp_path) -> None:
    box = Outbox(tmp_path / "o", max_records=5)
    for i in range(3):
        box.put("t", f"m{i}".encode())
    # a new process (same directory) finds the records, in order, and continues the sequence
    # (after the numbers reserved on disk: a gap, never a repeat)
    box2 = Outbox(tmp_path / "o", max_records=5)
    assert [box2.read(s)[1] for s in box2.pending_seqs()] == [b"m0", b"m1", b"m2"]
    assert box2.put("t", b"m3") > 2
    for i in range(4, 8):
        box2.put("t", f"m{i}".encode())
    assert box2.dropped == 3  # bound: the oldest went first
    assert [box2.read(s)[1] for s in box2.pending_seqs()] == [b"m3", b"m4", b"m5", b"m6", b"m7"]


def test_outbox_publishes_in_order_and_deletes_on_ack(tmp_path) -> None:
    box = Outbox(tmp_path / "o", max_inflight=2)
    sent, mids = [], iter(range(1, 1000))
    lock = threading.Lock()

    def publish(topic, payload, qos, retain):
        with lock:
            sent.append(payload)
            return next(mids)

    for i in range(6):
        box.put("t", bytes([i]))
    box.start(publish)
    box.kick()
    acked = 0
    while acked < 6:  # ack as the "broker" would, in order
        with lock:
            n = len(sent)
        if n > acked:
            box.acked(acked + 1)
            acked += 1
    assert box.wait_empty(5)
    box.connection_lost()
    box.stop()
    assert sent == [bytes([i]) for i in range(6)]
    assert not list((tmp_path / "o").glob("*.rec"))


def test_threshold_policy_and_decision_checks() -> None:
    pol = LocalThresholdPolicy(4, ue_id="ue-3")
    states = np.array([[1e-10, 10.0, 0.5, 0.2, 0.2, 9.0],  # edge is far faster than local
                       [1e-10, 1.0, 0.5, 0.9, 0.2, 9.0]])  # local is fastest
    out = check_decisions(pol.decide(states), 2, 4)
    assert out["offload"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="channel"):
        check_decisions({**out, "channel": np.array([0, 9])}, 2, 4)
    with pytest.raises(ValueError, match="lacks"):
        check_decisions({"offload": out["offload"]}, 2, 4)


def test_edge_agent_fleet_imports_without_torch_cloud_trainer_or_export() -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'amqtt') or name.startswith(('edgepilot.cloud_trainer', 'edgepilot.export')):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import edgepilot.edge_agent.fleet.agent, edgepilot.edge_agent.fleet.ota, edgepilot.emulation.host, edgepilot.edge_agent.fleet.execution\n"
        "import edgepilot.emulation.broker, edgepilot.emulation.hardware, edgepilot.cli.commands.fleet\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
