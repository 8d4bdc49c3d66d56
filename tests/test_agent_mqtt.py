"""UE agents against a real Mosquitto on a loopback port and real gRPC edge servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgepilot.emulation.broker import free_port
from edgepilot.edge_agent.fleet import topics
from edgepilot.edge_agent.fleet.payloads import parse_status, parse_telemetry
from edgepilot.edge_agent.system_model import RoundTasks, local_state
from edgepilot.v1 import fleet_pb2 as pb
from tests.fleet_fixtures import (
    PARAMS, FixedPolicy, Fleet, Listener, make_agent, make_task, mosquitto, publish_edge_info, wait_connected,  # noqa: F401
)


@pytest.fixture(scope="module")
def fleet():
    f = Fleet(num_edges=2)
    yield f
    f.close()


def _own_state(task: pb.Task) -> np.ndarray:
    r = task.radio
    one = RoundTasks(edge=[0], gain=[r.channel_gain], edge_cloud_gain=[r.edge_cloud_gain], input_bits=[task.input_bits],
                     output_bits=[task.output_bits], cycles_per_bit=[task.cycles_per_bit], cached=[float(task.cached)])
    return local_state(PARAMS, one)[0, 0]


def test_agents_decide_on_their_own_local_state_only(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.all_ues("decision"), topics.all_ues("telemetry")], client_id="iso-listener")
    publish_edge_info(lis, fleet, 0)
    publish_edge_info(lis, fleet, 1)
    ues = {"ue-a": 0, "ue-b": 0, "ue-c": 1}
    agents = {u: make_agent(tmp_path, port, u, edge_id=k).start() for u, k in ues.items()}
    try:
        for a in agents.values():
            wait_connected(a)
        sent: dict[str, list[pb.Task]] = {u: [] for u in ues}
        for rnd in range(2):
            for u, k in ues.items():
                t = make_task(u, rnd, edge_id=k)
                sent[u].append(t)
                lis.publish(topics.task(u), t.SerializeToString())
            for a in agents.values():
                assert a.wait_rounds(rnd + 1, 30)
        for u, a in agents.items():
            # the broker delivered nothing that belongs to another UE ...
            others = [t for t in a.seen_topics if topics.ue_of(t) not in (None, u)]
            assert others == [], f"{u} received {others}"
            assert set(a.seen_topics) <= {topics.task(u), topics.edge_info(ues[u]), topics.policy_topic()}
            # ... and the policy saw exactly this UE's local state (14), one row per round
            assert [x.shape for x in a.policy_inputs] == [(1, 6), (1, 6)]
            for got, task in zip(a.policy_inputs, sent[u]):
                np.testing.assert_allclose(got[0], _own_state(task), rtol=1e-12)
        for u in ues:
            tel = [parse_telemetry(p) for p in lis.wait_for(topics.telemetry(u), 2)]
            assert [t.outcome.round for t in tel] == [0, 1]
            assert [t.seq for t in tel] == sorted(t.seq for t in tel)
            assert len(lis.wait_for(topics.decision(u), 2)) == 2
            assert all(t.outcome.execution_seconds > 0 and t.outcome.energy_joules > 0 for t in tel)
    finally:
        for a in agents.values():
            a.stop(flush_timeout=5)
        lis.close()


def test_bad_payloads_are_dropped_and_the_agent_keeps_running(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.telemetry("ue-bad")], client_id="bad-listener")
    publish_edge_info(lis, fleet, 0)
    agent = make_agent(tmp_path, port, "ue-bad", policy=FixedPolicy(0)).start()
    try:
        wait_connected(agent)
        bad_range = make_task("ue-bad", 0)
        bad_range.input_bits = -5.0
        wrong_ue = make_task("ue-other", 0)
        for raw in (b"\xff\x00garbage", bad_range.SerializeToString(), wrong_ue.SerializeToString(), b""):
            lis.publish(topics.task("ue-bad"), raw)
        lis.publish(topics.policy_topic(), b"\x12\x03not-an-announcement", retain=False)
        lis.publish(topics.task("ue-bad"), make_task("ue-bad", 1).SerializeToString())
        assert agent.wait_rounds(1, 30)
        assert agent.stats["dropped_payloads"] >= 4
        tel = [parse_telemetry(p) for p in lis.wait_for(topics.telemetry("ue-bad"), 1)]
        assert [t.outcome.round for t in tel] == [1]
    finally:
        agent.stop(flush_timeout=5)
        lis.close()


def test_offload_runs_on_the_edge_server_and_falls_back_when_unreachable_or_late(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.all_ues("telemetry")], client_id="offload-listener")
    publish_edge_info(lis, fleet, 0)
    dead = f"127.0.0.1:{free_port()}"
    publish_edge_info(lis, fleet, 1, address=dead)  # edge server 1 is down
    edge_ok = make_agent(tmp_path, port, "ue-edge", edge_id=0, policy=FixedPolicy(1)).start()
    cloud_ok = make_agent(tmp_path, port, "ue-cloud", edge_id=0, policy=FixedPolicy(2, channel=1)).start()
    unreachable = make_agent(tmp_path, port, "ue-unreach", edge_id=1, policy=FixedPolicy(1)).start()
    late = make_agent(tmp_path, port, "ue-late", edge_id=0, policy=FixedPolicy(2, channel=2)).start()
    try:
        for a in (edge_ok, cloud_ok, unreachable, late):
            wait_connected(a)
        for a in (edge_ok, cloud_ok, unreachable):
            k = a.config.edge_id
            lis.publish(topics.task(a.config.ue_id), make_task(a.config.ue_id, 0, edge_id=k).SerializeToString())
        t = make_task("ue-late", 0, edge_id=0, deadline=1e-3)  # 1 ms emulated: no offload can make it
        t.radio.edge_cloud_gain = 1e-13  # a slow backhaul on top
        lis.publish(topics.task("ue-late"), t.SerializeToString())
        out = {}
        for u in ("ue-edge", "ue-cloud", "ue-unreach", "ue-late"):
            got = lis.wait_for(topics.telemetry(u), 1)
            assert got, f"no telemetry from {u}"
            out[u] = parse_telemetry(got[0]).outcome
        assert out["ue-edge"].executed == pb.OFFLOAD_TARGET_EDGE and not out["ue-edge"].fallback_reason
        assert out["ue-edge"].uplink_rate_bps > 0 and out["ue-edge"].result_bytes == int(np.ceil(make_task("ue-edge", 0).output_bits / 8))
        assert out["ue-cloud"].executed == pb.OFFLOAD_TARGET_CLOUD and out["ue-cloud"].communication_seconds > 0
        assert out["ue-unreach"].requested == pb.OFFLOAD_TARGET_EDGE
        assert out["ue-unreach"].executed == pb.OFFLOAD_TARGET_LOCAL and "UNAVAILABLE" in out["ue-unreach"].fallback_reason
        assert out["ue-late"].executed == pb.OFFLOAD_TARGET_LOCAL and "DEADLINE" in out["ue-late"].fallback_reason
    finally:
        for a in (edge_ok, cloud_ok, unreachable, late):
            a.stop(flush_timeout=5)
        lis.close()


def test_broker_outage_agent_keeps_deciding_and_flushes_in_order(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.telemetry("ue-out"), topics.decision("ue-out")], client_id="outage-listener",
                   persistent=True)  # the agent may reconnect and flush before the listener is back
    publish_edge_info(lis, fleet, 0)
    agent = make_agent(tmp_path, port, "ue-out", policy=FixedPolicy(1)).start()
    try:
        wait_connected(agent)
        lis.publish(topics.task("ue-out"), make_task("ue-out", 0).SerializeToString())
        assert len(lis.wait_for(topics.telemetry("ue-out"), 1)) == 1
        mosquitto.stop()  # broker gone
        for rnd in range(1, 6):  # the UE's own workload keeps coming (local task source)
            agent.submit_task(make_task("ue-out", rnd))
        assert agent.wait_rounds(6, 60), agent.stats
        assert agent.outbox.backlog >= 10  # 5 decisions + 5 telemetry records wait on disk
        assert len(list((tmp_path / "ue-out" / "outbox").glob("*.rec"))) == agent.outbox.backlog
        mosquitto.start()  # same port: agent and listener reconnect with backoff
        tel = [parse_telemetry(p) for p in lis.wait_for(topics.telemetry("ue-out"), 6, timeout=60)]
        rounds = [t.outcome.round for t in tel]
        assert sorted(set(rounds)) == list(range(6)), rounds  # nothing lost
        firsts = [rounds.index(r) for r in range(6)]
        assert firsts == sorted(firsts)  # flushed in order
        assert len({parse_telemetry(p).decision.round for p in lis.on(topics.telemetry("ue-out"))}) == 6
        assert agent.outbox.wait_empty(20)
        assert all(t.outcome.executed == pb.OFFLOAD_TARGET_EDGE for t in tel)  # gRPC needs no broker
    finally:
        agent.stop(flush_timeout=5)
        lis.close()


def test_status_is_retained_and_last_will_marks_a_dead_agent_offline(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.status("ue-will")], client_id="will-listener")
    publish_edge_info(lis, fleet, 0)
    spec = {"broker_port": port, "state_root": str(tmp_path / "host"), "keepalive_s": 1,
            "agents": [{"ue_id": "ue-will", "edge_id": 0}], "policy": {"kind": "local"}}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "edgepilot.emulation.host", str(spec_path)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline().strip() == b"ready"
        states = lambda: [parse_status(p).state for p in lis.on(topics.status("ue-will")) if p]  # noqa: E731
        end = time.time() + 20
        while pb.AgentStatus.STATE_ONLINE not in states() and time.time() < end:
            time.sleep(0.05)
        assert pb.AgentStatus.STATE_ONLINE in states()
        proc.send_signal(signal.SIGKILL)  # no goodbye: the broker publishes the will
        proc.wait(10)
        end = time.time() + 20
        while (not states() or states()[-1] != pb.AgentStatus.STATE_OFFLINE) and time.time() < end:
            time.sleep(0.05)
        assert states()[-1] == pb.AgentStatus.STATE_OFFLINE
        # retained: a newcomer learns the state at once
        late = Listener(port, [topics.status("ue-will")], client_id="late-listener")
        got = late.wait_for(topics.status("ue-will"), 1, timeout=10)
        late.close()
        assert parse_status(got[-1]).state == pb.AgentStatus.STATE_OFFLINE
    finally:
        if proc.poll() is None:
            proc.kill()
        lis.close()


def test_edgepilot_agent_command_runs_one_ue(tmp_path, mosquitto, fleet) -> None:
    port = mosquitto.port
    lis = Listener(port, [topics.telemetry("ue-cli"), topics.status("ue-cli")], client_id="cli-listener")
    publish_edge_info(lis, fleet, 0)
    exe = os.path.join(os.path.dirname(sys.executable), "edgepilot")
    proc = subprocess.Popen([exe, "agent", "--ue-id", "ue-cli", "--edge-id", "0", "--broker", f"127.0.0.1:{port}",
                             "--state-dir", str(tmp_path / "state"), "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        end = time.time() + 30
        while not any(p and parse_status(p).state == pb.AgentStatus.STATE_ONLINE for p in lis.on(topics.status("ue-cli"))):
            assert time.time() < end and proc.poll() is None, proc.stderr.read().decode() if proc.poll() is not None else "no status"
            time.sleep(0.05)
        time.sleep(0.3)
        lis.publish(topics.task("ue-cli"), make_task("ue-cli", 0).SerializeToString())
        got = lis.wait_for(topics.telemetry("ue-cli"), 1)
        assert got and parse_telemetry(got[0]).decision.policy_version == "local-threshold"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert summary["ue_id"] == "ue-cli" and summary["rounds"] == 1 and summary["outbox_backlog"] == 0
        assert (tmp_path / "state" / "edge_info.pb").exists()  # read once, cached for an offline start
    finally:
        if proc.poll() is None:
            proc.kill()
        lis.close()


def test_edge_server_times_a_request_against_its_own_frame(fleet) -> None:
    """Two coordinators (or a restarted one) may reuse a round number with another frame
    start: each request is served on its own frame, never before its own frame opens."""
    from edgepilot.edge_agent.fleet.execution import TaskExecutionClient

    client = TaskExecutionClient(fleet.edges[0].address)
    try:
        replies = []
        for delay in (0.05, 0.4):  # same round, the second frame opens 0.35 s after the first
            t = make_task("ue-frame", 7)
            start = time.time() + delay
            req = pb.ExecuteRequest(ue_id="ue-frame", round=7, target=pb.OFFLOAD_TARGET_EDGE, input_bits=t.input_bits,
                                    output_bits=t.output_bits, cycles_per_bit=t.cycles_per_bit, channel=0,
                                    transmit_power_ratio=1.0, channel_gain=t.radio.channel_gain, edge_id=0,
                                    edge_cloud_gain=t.radio.edge_cloud_gain, frame_start_unix_seconds=start)
            replies.append((client.execute(req, timeout=30), time.time(), start))
        for reply, done, start in replies:
            assert done >= start  # served on its own frame, not on the earlier one of round 7
            assert reply.queue_seconds == 0.0  # alone on its frame: nobody ahead in the queue
            assert reply.execution_seconds > 0
    finally:
        client.close()
