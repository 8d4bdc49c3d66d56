"""Faults and hostile input for the MQTT fleet (issue 35), over a real Mosquitto and real
gRPC: forged and out-of-range telemetry, unknown UE ids, malformed retained messages,
far-future frame starts, round-number reuse, outbox sequence numbers across a restart,
calls without deadlines, and a kill -9 of Mosquitto with persistence checked."""

from __future__ import annotations

import math
import threading
import time

import grpc
import paho.mqtt.client as mqtt
import pytest

from edgepilot.edge_agent.fleet import topics
from edgepilot.edge_agent.fleet.execution import TaskExecutionService
from edgepilot.edge_agent.fleet.outbox import Outbox
from edgepilot.edge_agent.fleet.payloads import parse_decision, parse_telemetry
from edgepilot.edge_agent.server import EdgeServer, ServerConfig
from edgepilot.emulation.broker import MosquittoBroker, free_port
from edgepilot.emulation.config import EmulateConfig
from edgepilot.emulation.coordinator import Coordinator, run_emulation
from edgepilot.emulation.hardware import EmulationClock, RadioCell
from edgepilot.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc
from tests.fleet_fixtures import (
    PARAMS, FixedPolicy, Fleet, Listener, make_agent, make_task, mosquitto, publish_edge_info, wait_connected,  # noqa: F401
)


@pytest.fixture(scope="module")
def fleet():
    f = Fleet(num_edges=1)
    yield f
    f.close()


def _telemetry(ue: str, round_: int, seq: int, **outcome) -> pb.Telemetry:
    d = pb.Decision(ue_id=ue, round=round_, offload=pb.OFFLOAD_TARGET_LOCAL, channel=0, transmit_power_ratio=1.0,
                    cpu_freq_ratio=1.0, decision_wall_seconds=0.001, decided_unix_seconds=time.time())
    o = pb.Outcome(ue_id=ue, round=round_, requested=pb.OFFLOAD_TARGET_LOCAL, executed=pb.OFFLOAD_TARGET_LOCAL,
                   execution_seconds=1.0, compute_seconds=1.0, energy_joules=0.5, wall_seconds=0.01)
    for k, v in outcome.items():
        setattr(o, k, v)
    return pb.Telemetry(ue_id=ue, seq=seq, decision=d, outcome=o, created_unix_seconds=time.time())


# -- telemetry bound to its sender ---------------------------------------------------------
def test_coordinator_takes_only_telemetry_bound_to_its_sender_and_in_range(mosquitto) -> None:
    cfg = EmulateConfig(ues=2, edges=1, rounds=3, policy="threshold", plot=False)
    coord = Coordinator(cfg, mosquitto.port, ["ue-000", "ue-001"])
    rogue = Listener(mosquitto.port, [], client_id="rogue")
    try:
        assert coord.connected.wait(10)
        forged = [
            (topics.telemetry("ue-000"), _telemetry("ue-001", 0, 1)),             # another UE's id
            (topics.telemetry("ue-000"), _telemetry("ue-000", 0, 2, execution_seconds=math.nan)),
            (topics.telemetry("ue-000"), _telemetry("ue-000", 0, 3, execution_seconds=math.inf)),
            (topics.telemetry("ue-000"), _telemetry("ue-000", 0, 4, energy_joules=-1.0)),
            (topics.telemetry("ue-000"), _telemetry("ue-000", 0, 5, energy_joules=1e12)),
            (topics.telemetry("ue-000"), _telemetry("ue-000", 0, 6, queue_seconds=1e9)),
            (topics.telemetry("ue-000"), _telemetry("ue-000", 7, 7)),              # beyond the run's rounds
        ]
        t = _telemetry("ue-000", 0, 8)
        t.outcome.round = 1                                                        # outcome of another round
        forged.append((topics.telemetry("ue-000"), t))
        for topic, msg in forged:
            rogue.publish(topic, msg.SerializeToString())
        rogue.publish(topics.telemetry("ue-999"), _telemetry("ue-999", 0, 1).SerializeToString())  # unknown sender
        rogue.publish(topics.decision("ue-000"), pb.Decision(ue_id="ue-001", round=0, transmit_power_ratio=1,
                                                             cpu_freq_ratio=1).SerializeToString())
        rogue.publish(topics.telemetry("ue-000"), _telemetry("ue-000", 0, 9).SerializeToString())  # the real one
        with coord.cond:
            assert coord.cond.wait_for(lambda: "ue-000" in coord.telemetry.get(0, {}), timeout=10)
        assert coord.dropped == len(forged) + 1
        assert coord.unknown_senders == 1
        assert coord.telemetry[0]["ue-000"].seq == 9
        assert set(coord.telemetry) == {0} and set(coord.telemetry[0]) == {"ue-000"}  # nothing closes a round
        assert coord.decisions == {}
    finally:
        rogue.close()
        coord.close()


def test_emulate_survives_telemetry_for_unknown_ue_ids(tmp_path) -> None:
    port = free_port()
    cfg = EmulateConfig(ues=2, edges=1, rounds=2, policy="threshold", agent_procs=0, broker=f"127.0.0.1:{port}",
                        out=str(tmp_path / "run"), plot=False, time_scale=0.01)
    stop = threading.Event()
    sent = []

    def rogue() -> None:  # floods every round with telemetry of UE ids this run does not have
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rogue", protocol=mqtt.MQTTv311)
        while not stop.is_set():
            try:
                c.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.05)
        c.loop_start()
        while not stop.is_set():
            for r in range(cfg.rounds):
                for ue in ("ue-900", "ue-901", "ue-902"):
                    c.publish(topics.telemetry(ue), _telemetry(ue, r, len(sent)).SerializeToString(), qos=1)
                    sent.append(ue)
            time.sleep(0.02)
        c.loop_stop()
        c.disconnect()

    th = threading.Thread(target=rogue, daemon=True)
    th.start()
    try:
        summary = run_emulation(cfg, progress=lambda m: None)
    finally:
        stop.set()
        th.join(5)
    assert sent
    assert summary["rounds"] == 2 and summary["lost_decisions"] == 0
    assert summary["unknown_senders"] > 0
    assert (tmp_path / "run" / "summary.json").exists()


# -- the agent keeps its MQTT loop -------------------------------------------------------
@pytest.mark.parametrize("bad", [
    "127.0.0.1:\u00b2\u00b3",      # Unicode digits: str.isdigit() says yes, int() raises
    "127.0.0.1:99999999999999999999",
    "127.0.0.1:",
])
def test_malformed_retained_edge_info_does_not_kill_the_agent(tmp_path, mosquitto, fleet, bad) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.all_ues("telemetry")], client_id="lis-retained")
    info = fleet.info(0)
    info.grpc_address = bad
    lis.publish(topics.edge_info(0), info.SerializeToString(), retain=True)
    lis.publish(topics.policy_topic(), b"\xff\x00garbage", retain=True)
    ue = f"ue-ret{abs(hash(bad)) % 1000}"
    agent = make_agent(tmp_path, port, ue, policy=FixedPolicy(0)).start()
    try:
        wait_connected(agent)
        publish_edge_info(lis, fleet, 0)  # the operator fixes it: the agent must still be listening
        lis.publish(topics.task(ue), make_task(ue, 0).SerializeToString())
        got = lis.wait_for(topics.telemetry(ue), 1, timeout=20)
        assert got and parse_telemetry(got[0], ue).outcome.round == 0
        assert agent.stats["dropped_payloads"] >= 2
        assert agent.fatal_reason() is None
    finally:
        agent.stop(flush_timeout=3)
        lis.publish(topics.edge_info(0), b"", retain=True)
        lis.publish(topics.policy_topic(), b"", retain=True)
        lis.close()


def test_a_dead_network_thread_is_a_fatal_state(tmp_path, mosquitto, fleet) -> None:
    agent = make_agent(tmp_path, mosquitto.port, "ue-fatal", policy=FixedPolicy(0)).start()
    try:
        wait_connected(agent)
        assert agent.fatal_reason() is None
        agent.client.loop_stop()  # what an escaped exception did to paho's thread
        assert agent.fatal_reason() == "the MQTT network thread ended"
    finally:
        agent.stop(flush_timeout=1)


# -- frame starts and deadlines ------------------------------------------------------------
def test_far_future_frame_start_is_refused_and_the_worker_stays_free(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.all_ues("telemetry")], client_id="lis-frame")
    publish_edge_info(lis, fleet, 0)
    agent = make_agent(tmp_path, port, "ue-frame", policy=FixedPolicy(1)).start()  # offloads to the edge
    try:
        wait_connected(agent)
        far = make_task("ue-frame", 0)
        far.issued_unix_seconds = far.frame_start_unix_seconds = time.time() + 10 * 86400
        lis.publish(topics.task("ue-frame"), far.SerializeToString())
        lis.publish(topics.task("ue-frame"), make_task("ue-frame", 1).SerializeToString())
        got = lis.wait_for(topics.telemetry("ue-frame"), 1, timeout=20)
        assert [parse_telemetry(p).outcome.round for p in got] == [1]
        assert agent.stats["refused_tasks"] == 1
    finally:
        agent.stop(flush_timeout=3)
        lis.close()


def test_task_execution_bounds_calls_without_deadline_and_far_frames() -> None:
    p = PARAMS
    radio = RadioCell(p.channel_bandwidth_hz, p.noise_power_w, p.ue_max_power_w, p.edge_power_w, p.cloud_power_w)
    svc = TaskExecutionService("edge", radio, p.edge_cpu_hz, p.cloud_cpu_hz, EmulationClock(0.01),
                               default_deadline_seconds=0.5, max_deadline_seconds=1.0, max_frame_ahead_seconds=30.0)
    server = EdgeServer(ServerConfig(port=0, max_workers=4, grace_seconds=0.2))
    server.add_service(svc)
    server.start()
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = pb_grpc.TaskExecutionStub(ch)
            t = make_task("ue-x", 0)
            req = pb.ExecuteRequest(ue_id="ue-x", round=0, target=pb.OFFLOAD_TARGET_EDGE, input_bits=t.input_bits,
                                    output_bits=t.output_bits, cycles_per_bit=t.cycles_per_bit, channel=0,
                                    transmit_power_ratio=1.0, channel_gain=t.radio.channel_gain,
                                    edge_cloud_gain=t.radio.edge_cloud_gain)
            req.frame_start_unix_seconds = time.time() + 86400
            with pytest.raises(grpc.RpcError) as err:
                stub.Execute(req, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "frame_start" in err.value.details()
            # more calls than workers, none with a deadline, each waiting for a frame 20 s ahead:
            # the server's default deadline frees every worker
            req.frame_start_unix_seconds = time.time() + 20
            futures = [stub.Execute.future(req) for _ in range(6)]
            codes = [f.exception().code() if f.exception() else grpc.StatusCode.OK for f in futures]
            assert set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
            req.frame_start_unix_seconds = time.time()
            assert stub.Execute(req, timeout=10).executed_at == pb.OFFLOAD_TARGET_EDGE
    finally:
        server.stop(0.2)


# -- round numbers ------------------------------------------------------------------------
def test_a_reused_round_number_is_a_new_task_and_a_resent_task_is_not(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.all_ues("telemetry"), topics.all_ues("decision")], client_id="lis-reuse")
    publish_edge_info(lis, fleet, 0)
    agent = make_agent(tmp_path, port, "ue-reuse", policy=FixedPolicy(0)).start()
    try:
        wait_connected(agent)
        first = make_task("ue-reuse", 0, seed=1)
        lis.publish(topics.task("ue-reuse"), first.SerializeToString())
        assert len(lis.wait_for(topics.telemetry("ue-reuse"), 1)) == 1
        other = make_task("ue-reuse", 0, seed=2)  # the same round number, another task
        assert other.input_bits != first.input_bits
        lis.publish(topics.task("ue-reuse"), other.SerializeToString())
        tel = [parse_telemetry(p) for p in lis.wait_for(topics.telemetry("ue-reuse"), 2)]
        assert len(tel) == 2 and tel[0].seq != tel[1].seq
        assert tel[1].decision.decided_unix_seconds > tel[0].decision.decided_unix_seconds  # decided anew
        assert agent.stats["reused_rounds"] == 1
        lis.publish(topics.task("ue-reuse"), other.SerializeToString())  # re-sent: answered from the record
        tel = [parse_telemetry(p) for p in lis.wait_for(topics.telemetry("ue-reuse"), 3)]
        assert len(tel) == 3 and tel[2].SerializeToString() == tel[1].SerializeToString()
        assert agent.stats["duplicates"] == 1 and agent.stats["rounds"] == 2
        decisions = [parse_decision(p) for p in lis.on(topics.decision("ue-reuse"))]
        assert len({d.decided_unix_seconds for d in decisions}) == 2
    finally:
        agent.stop(flush_timeout=3)
        lis.close()


# -- outbox sequence numbers ----------------------------------------------------------------
def test_outbox_never_reuses_a_sequence_number_across_restarts(tmp_path) -> None:
    seen = []
    for _ in range(3):  # three "processes", each acknowledging everything it sent
        box = Outbox(tmp_path / "o")
        for _ in range(5):
            seq = box.put("t", b"x")
            seen.append(seq)
            box._pending.pop(seq)  # acknowledged: the record is gone from disk
            box._path(seq).unlink()
        assert box.backlog == 0 and not list((tmp_path / "o").glob("*.rec"))
    assert len(set(seen)) == len(seen) and seen == sorted(seen)


def test_agent_telemetry_seqs_stay_unique_across_an_agent_restart(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.all_ues("telemetry")], client_id="lis-seq")
    publish_edge_info(lis, fleet, 0)
    try:
        for r in range(2):
            agent = make_agent(tmp_path, port, "ue-seq", policy=FixedPolicy(0)).start()
            try:
                wait_connected(agent)
                lis.publish(topics.task("ue-seq"), make_task("ue-seq", r).SerializeToString())
                assert len(lis.wait_for(topics.telemetry("ue-seq"), r + 1)) == r + 1
            finally:
                agent.stop(flush_timeout=5)
        tel = [parse_telemetry(p) for p in lis.on(topics.telemetry("ue-seq"))]
        # de-duplicating on (UE, seq) keeps both rounds
        assert len({(t.ue_id, t.seq) for t in tel}) == 2 == len({t.outcome.round for t in tel})
    finally:
        lis.close()


# -- the broker ----------------------------------------------------------------------------
def test_mosquitto_kill_9_neither_loses_queued_nor_replays_delivered(tmp_path) -> None:
    broker = MosquittoBroker(workdir=tmp_path / "mq")  # the shipped persistence settings
    port = broker.start()
    try:
        Listener(port, ["fault/#"], client_id="sub", persistent=True).close()  # a session that is away
        pub = Listener(port, [], client_id="pub")
        for i in range(5):
            pub.publish("fault/q", f"m{i}".encode())
        pub.publish("fault/r", b"r1", retain=True)
        pub.close()
        time.sleep(0.3)  # the broker's main loop writes its database after the change
        broker.kill()
        broker.start()
        sub = Listener(port, [], client_id="sub", persistent=True)
        assert sub.wait_for("fault/q", 5, timeout=10) == [f"m{i}".encode() for i in range(5)]  # nothing lost
        assert sub.on("fault/r") == [b"r1"]
        time.sleep(0.3)
        broker.kill()  # delivered and acknowledged, then a crash: nothing may come back
        sub.close()
        broker.start()
        sub = Listener(port, [], client_id="sub", persistent=True)
        probe = Listener(port, ["fault/r"], client_id="probe")
        assert probe.wait_for("fault/r", 1, timeout=10) == [b"r1"]  # the retained message survived
        pub = Listener(port, [], client_id="pub")
        pub.publish("fault/q", b"fresh")  # in order after anything the broker might replay
        got = sub.wait_for("fault/q", 1, timeout=10)
        assert got == [b"fresh"]
        for c in (sub, probe, pub):
            c.close()
    finally:
        broker.cleanup()


def test_mosquitto_refuses_oversized_packets_and_client_id_takeover(tmp_path) -> None:
    from edgepilot.hardware.mosquitto.credentials import generate

    port = free_port()
    users = generate(tmp_path / "conf", ["ue-1", "ue-2"], port=port, bind="127.0.0.1")
    conf = (tmp_path / "conf" / "mosquitto.conf").read_text().splitlines()
    keep = ("password_file", "acl_file", "use_username_as_clientid")
    broker = MosquittoBroker(port=port, workdir=tmp_path / "run", allow_anonymous=False,
                             extra_config=[line for line in conf if line.startswith(keep)])
    broker.start()
    try:
        from edgepilot.hardware.mosquitto.credentials import COORDINATOR_USER

        admin = Listener(port, ["edgepilot/v1/#"], client_id="admin", username=COORDINATOR_USER,
                         password=users[COORDINATOR_USER])
        victim = Listener(port, [], client_id="ue-1", username="ue-1", password=users["ue-1"])
        drops = []
        victim.client.on_disconnect = lambda *a, **k: drops.append(a)
        # ue-2's credentials under ue-1's client id: its own session, ue-1 stays connected
        thief = Listener(port, [], client_id="ue-1", username="ue-2", password=users["ue-2"])
        thief.publish(topics.decision("ue-2"), b"own")
        assert admin.wait_for(topics.decision("ue-2"), 1) == [b"own"]
        assert drops == [] and victim.client.is_connected()
        thief.close()
        # a 2 MB payload (under the sender's own topic, which the ACL allows) is neither
        # forwarded nor retained; a small one after it is
        big = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="big", protocol=mqtt.MQTTv311)
        big.username_pw_set("ue-2", users["ue-2"])
        big.connect("127.0.0.1", port)
        big.loop_start()
        big.publish(topics.status("ue-2"), bytes(2 << 20), qos=1, retain=True)
        admin.publish(topics.status("ue-1"), b"small", retain=True)
        assert admin.wait_for(topics.status("ue-1"), 1) == [b"small"]
        admin.close()  # the same user name is the same client id: one coordinator at a time
        late = Listener(port, [topics.all_ues("status")], client_id="late", username=COORDINATOR_USER,
                        password=users[COORDINATOR_USER])
        assert late.wait_for(topics.status("ue-1"), 1) == [b"small"]
        assert admin.on(topics.status("ue-2")) == [] and late.on(topics.status("ue-2")) == []
        big.loop_stop()
        for c in (victim, late):
            c.close()
    finally:
        broker.cleanup()
