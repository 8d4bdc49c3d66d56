"""The shipped Mosquitto config (TLS, per-UE passwords, ACL) on a real Mosquitto, and the
embedded amqtt broker of ``make demo``."""

from __future__ import annotations

import time

import pytest

from edgepilot.emulation.broker import EmbeddedBroker, MosquittoBroker, free_port
from edgepilot.edge_agent.fleet import topics
from edgepilot.edge_agent.fleet.payloads import parse_telemetry
from edgepilot.edge_agent.server.tls import write_dev_pki
from edgepilot.hardware.mosquitto.credentials import COORDINATOR_USER, generate
from tests.fleet_fixtures import Fleet, FixedPolicy, Listener, make_agent, make_task, wait_connected


def _start_shipped_broker(d, ues):
    """Mosquitto with the shipped config (TLS, per-UE passwords, ACL) for ``ues`` under ``d``,
    minus what MosquittoBroker writes itself (listener, persistence): (broker, users, pki)."""
    pki = write_dev_pki(d / "pki")
    port = free_port()
    users = generate(d / "conf", ues, port=port, bind="127.0.0.1", ca_file=pki["ca"],
                     cert_file=pki["server_cert"], key_file=pki["server_key"])
    conf = (d / "conf" / "mosquitto.conf").read_text().splitlines()
    broker = MosquittoBroker(port=port, workdir=d / "run", allow_anonymous=False)
    broker.extra_config = [l for l in conf if l.strip() and not l.startswith(("#", "listener", "allow_anonymous", "persistence",
                                                                             "autosave", "max_", "per_listener"))]
    broker.start()
    return broker, users, pki


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    broker, users, pki = _start_shipped_broker(tmp_path_factory.mktemp("secure"), ["ue-1", "ue-2"])
    yield broker, users, str(pki["ca"])
    broker.cleanup()


def test_shipped_config_tls_passwords_and_acl(tmp_path, secure_broker) -> None:
    broker, users, ca = secure_broker
    port = broker.port
    fleet = Fleet(num_edges=1)
    admin = Listener(port, ["edgepilot/v1/#"], client_id="admin", username=COORDINATOR_USER,
                     password=users[COORDINATOR_USER], tls_ca=ca)
    admin.publish(topics.edge_info(0), fleet.info(0).SerializeToString(), retain=True)
    agent = make_agent(tmp_path, port, "ue-1", policy=FixedPolicy(0), username="ue-1", password=users["ue-1"], tls_ca=ca).start()
    try:
        wait_connected(agent)
        # a UE with the right password over TLS works end to end
        admin.publish(topics.task("ue-1"), make_task("ue-1", 0).SerializeToString())
        got = admin.wait_for(topics.telemetry("ue-1"), 1)
        assert got and parse_telemetry(got[0]).outcome.round == 0
        # ue-2's credentials cannot publish under ue-1, nor read ue-1's tasks
        spy = Listener(port, [topics.task("ue-1"), "edgepilot/v1/ue/+/telemetry"], client_id="ue-2",
                       username="ue-2", password=users["ue-2"], tls_ca=ca)
        spy.publish(topics.decision("ue-1"), b"forged")
        spy.publish(topics.decision("ue-2"), b"own")
        admin.publish(topics.task("ue-1"), make_task("ue-1", 1).SerializeToString())
        assert len(admin.wait_for(topics.telemetry("ue-1"), 2)) == 2
        assert admin.wait_for(topics.decision("ue-2"), 1) == [b"own"]
        time.sleep(0.3)
        assert b"forged" not in admin.on(topics.decision("ue-1"))
        assert spy.messages == []
        spy.close()
        # a wrong password is refused at CONNECT
        import threading

        import paho.mqtt.client as mqtt

        answer, got_answer = [], threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ue-2b", protocol=mqtt.MQTTv311)
        c.username_pw_set("ue-2", "wrong")
        c.tls_set(ca_certs=ca)
        c.on_connect = lambda cl, u, f, rc, p=None: (answer.append(rc), got_answer.set())
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert got_answer.wait(10)
        c.loop_stop()
        assert answer[0].is_failure
    finally:
        agent.stop(flush_timeout=5)
        admin.close()
        fleet.close()


def test_embedded_broker_keeps_retained_messages_per_session(tmp_path) -> None:
    """amqtt 0.12 hands a new client the retained messages of every topic anyone
    subscribed to; the embedded broker must not leak another UE's topics."""
    broker = EmbeddedBroker()
    port = broker.start()
    try:
        watcher = Listener(port, [topics.all_ues("status")], client_id="watcher")
        watcher.publish(topics.status("ue-x"), b"\x0a\x04ue-x\x10\x01", retain=True)
        fleet = Fleet(num_edges=1)
        watcher.publish(topics.edge_info(0), fleet.info(0).SerializeToString(), retain=True)
        agent = make_agent(tmp_path, port, "ue-y", policy=FixedPolicy(0)).start()
        try:
            wait_connected(agent)
            watcher.publish(topics.task("ue-y"), make_task("ue-y", 0).SerializeToString())
            assert agent.wait_rounds(1, 30)
            assert [t for t in agent.seen_topics if topics.ue_of(t) not in (None, "ue-y")] == []
        finally:
            agent.stop(flush_timeout=5)
            fleet.close()
            watcher.close()
    finally:
        broker.stop()


def test_emulate_runs_against_the_shipped_secure_config(tmp_path) -> None:
    """``edgepilot emulate --broker-kind external --username ... --password-file ... --tls-ca``
    against Mosquitto with the shipped config: TLS, per-UE passwords and the ACL."""
    from edgepilot.emulation.config import EmulateConfig
    from edgepilot.emulation.coordinator import run_emulation

    broker, _, pki = _start_shipped_broker(tmp_path, ["ue-000", "ue-001"])
    port = broker.port
    try:
        cfg = EmulateConfig(ues=2, edges=1, rounds=2, policy="threshold", agent_procs=0, broker_kind="external",
                            broker=f"127.0.0.1:{port}", username=COORDINATOR_USER,
                            password_file=str(tmp_path / "conf" / "credentials.json"), tls_ca=str(pki["ca"]),
                            out=str(tmp_path / "emu"), plot=False, time_scale=0.01)
        summary = run_emulation(cfg, progress=lambda m: None)
        assert summary["rounds"] == 2 and summary["lost_decisions"] == 0
        assert summary["decisions_received"] == 4
    finally:
        broker.cleanup()
    # without credentials the secure broker refuses the coordinator: a clear error, no hang
    with pytest.raises(ValueError, match="password_file"):
        EmulateConfig(broker_kind="external", broker=f"127.0.0.1:{port}", username=COORDINATOR_USER)
