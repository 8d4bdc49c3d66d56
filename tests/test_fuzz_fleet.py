"""Property-based fuzzing (hypothesis) of every protobuf message a UE agent accepts over
MQTT (tasks, its edge server's info, policy announcements), through a real Mosquitto:
random bytes, and valid messages with one field (or a nested one) set to a hostile
value (NaN, infinities, huge or negative numbers, long or odd strings, unknown enum
values). After each case the agent must have handled the message (it arrives in order on
the agent's one network thread), nothing may have escaped a callback, the agent must be
in no fatal state, and at the end it must still answer a valid task.

The number of cases tried is kept in ``CASES`` (printed at the end of the module)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings, strategies as st

from edgepilot.edge_agent.fleet import topics
from edgepilot.edge_agent.fleet.payloads import parse_telemetry
from edgepilot.v1 import fleet_pb2 as pb
from tests.fleet_fixtures import FixedPolicy, Fleet, Listener, make_agent, make_task, mosquitto, wait_connected  # noqa: F401

CASES: Counter = Counter()
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                database=None, derandomize=True, max_examples=200)

HOSTILE_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                           st.sampled_from([0.0, -0.0, -1.0, 1e300, -1e300, 5e-324, 1e10, 1e11 + 1]))


def _value(field, data):
    t = field.type
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return data.draw(HOSTILE_FLOATS)
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return data.draw(st.one_of(st.integers(0, 2 ** 64 - 1), st.sampled_from([0, 1, 2 ** 63, 2 ** 64 - 1])))
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return data.draw(st.integers(0, 2 ** 32 - 1))
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return data.draw(st.integers(-2 ** 63, 2 ** 63 - 1))
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_ENUM):
        return data.draw(st.integers(-2 ** 31, 2 ** 31 - 1))
    if t == FD.TYPE_BOOL:
        return data.draw(st.booleans())
    if t == FD.TYPE_STRING:
        return data.draw(st.one_of(st.text(max_size=80), st.sampled_from(["", "x" * 5000, "ue/+/#", "127.0.0.1:\u00b2"])))
    if t == FD.TYPE_BYTES:
        return data.draw(st.binary(max_size=64))
    raise AssertionError(f"no strategy for {field.full_name}")


def mutate(msg, data) -> bytes:
    """``msg`` with one field, possibly nested, set to a hostile value."""
    target = msg
    while True:
        field = data.draw(st.sampled_from(list(target.DESCRIPTOR.fields)))
        if field.type == FD.TYPE_MESSAGE:
            if field.label == FD.LABEL_REPEATED:
                return msg.SerializeToString()
            target = getattr(target, field.name)
            continue
        if field.label == FD.LABEL_REPEATED:
            getattr(target, field.name).append(_value(field, data))
        else:
            setattr(target, field.name, _value(field, data))
        return msg.SerializeToString()


@pytest.fixture(scope="module")
def fleet():
    f = Fleet(num_edges=1, time_scale=1e-4)  # emulated compute a thousand times faster: many cases
    yield f
    f.close()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nfleet fuzz cases tried: {dict(CASES)}, total {sum(CASES.values())}")


def _delivered(agent, count: int, timeout: float = 10.0) -> None:
    """Wait until the agent has handled ``count`` messages (whatever became of them)."""
    end = time.time() + timeout
    while agent.stats["handled"] < count and time.time() < end:
        time.sleep(0.002)
    assert agent.stats["handled"] >= count, "the agent stopped handling messages"


def _healthy(agent) -> None:
    assert agent.stats["callback_errors"] == 0
    assert agent.fatal_reason() is None


def _answers_a_valid_task(lis, agent, ue: str, round_: int) -> None:
    lis.publish(topics.task(ue), make_task(ue, round_).SerializeToString())
    end = time.time() + 30
    while time.time() < end:
        rounds = [parse_telemetry(p).outcome.round for p in lis.on(topics.telemetry(ue))]
        if round_ in rounds:
            return
        time.sleep(0.02)
    raise AssertionError(f"{ue} did not answer a valid task after the fuzzing")


def test_fuzz_tasks(tmp_path_factory, mosquitto, fleet) -> None:
    port = mosquitto.port
    ue = "ue-fuzz-task"
    lis = Listener(port, [topics.telemetry(ue)], client_id="fuzz-task-lis")
    lis.publish(topics.edge_info(0), fleet.info(0).SerializeToString(), retain=True)
    agent = make_agent(tmp_path_factory.mktemp("fz"), port, ue, policy=FixedPolicy(0)).start()
    agent.record_inputs = False
    try:
        wait_connected(agent)
        _delivered(agent, 1)  # the retained edge info
        sent = [agent.stats["handled"]]

        @FUZZ
        @given(data=st.data(), kind=st.sampled_from(["bytes", "mutated"]))
        def case(data, kind):
            if kind == "bytes":
                raw = data.draw(st.binary(max_size=300))
            else:
                raw = mutate(make_task(ue, data.draw(st.integers(0, 2 ** 64 - 1))), data)
            lis.publish(topics.task(ue), raw)
            sent[0] += 1
            CASES[f"task/{kind}"] += 1
            _delivered(agent, sent[0])
            _healthy(agent)

        case()
        _answers_a_valid_task(lis, agent, ue, 123456789)
        _healthy(agent)
    finally:
        agent.stop(flush_timeout=3)
        lis.publish(topics.edge_info(0), b"", retain=True)
        lis.close()


def test_fuzz_edge_info_and_policy_announcements(tmp_path_factory, mosquitto, fleet) -> None:
    port = mosquitto.port
    ue = "ue-fuzz-info"
    lis = Listener(port, [topics.telemetry(ue)], client_id="fuzz-info-lis")
    agent = make_agent(tmp_path_factory.mktemp("fz"), port, ue, policy=FixedPolicy(0)).start()
    try:
        wait_connected(agent)
        sent = [agent.stats["handled"]]
        valid_ann = pb.PolicyAnnouncement(version="v2", bundle_uri="http://127.0.0.1:1/b.tar", manifest_sha256="0" * 64)

        @FUZZ
        @given(data=st.data(), which=st.sampled_from(["edge_info", "policy"]), kind=st.sampled_from(["bytes", "mutated"]))
        def case(data, which, kind):
            if kind == "bytes":
                raw = data.draw(st.binary(min_size=1, max_size=300))
            elif which == "edge_info":
                raw = mutate(fleet.info(0), data)
            else:
                msg = pb.PolicyAnnouncement()
                msg.CopyFrom(valid_ann)
                raw = mutate(msg, data)
            topic = topics.edge_info(0) if which == "edge_info" else topics.policy_topic()
            lis.publish(topic, raw, retain=data.draw(st.booleans()))
            sent[0] += 1
            CASES[f"{which}/{kind}"] += 1
            _delivered(agent, sent[0])
            _healthy(agent)
            if agent.edge_info is not None:  # accepted (and unsubscribed: read once): listen again
                lis.publish(topics.edge_info(0), b"", retain=True)  # else it comes again on subscribing
                agent.edge_info = None
                agent._edge_info_ready.clear()
                agent._subscribed.clear()
                agent.client.subscribe(topics.edge_info(0), 1)
                assert agent.wait_subscribed(10)
                sent[0] = agent.stats["handled"]

        case()
        lis.publish(topics.policy_topic(), b"", retain=True)
        lis.publish(topics.edge_info(0), fleet.info(0).SerializeToString(), retain=True)
        _answers_a_valid_task(lis, agent, ue, 987654321)
        _healthy(agent)
    finally:
        agent.stop(flush_timeout=3)
        lis.publish(topics.edge_info(0), b"", retain=True)
        lis.publish(topics.policy_topic(), b"", retain=True)
        lis.close()
