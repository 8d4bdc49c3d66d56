"""Shared pieces of the fleet tests: a real Mosquitto on a loopback port, real gRPC edge
servers, a listening MQTT client, and agents. Imported by the other test_fleet_* /
test_agent_* / test_broker_* / test_emulate_* files (this file holds no tests)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edgepilot.emulation.broker import MosquittoBroker
from edgepilot.edge_agent.fleet import topics
from edgepilot.edge_agent.fleet.agent import AgentConfig, UEAgent
from edgepilot.edge_agent.fleet.execution import TaskExecutionService
from edgepilot.edge_agent.server import EdgeServer, ServerConfig
from edgepilot.edge_agent.system_model import NetworkParams
from edgepilot.v1 import fleet_pb2 as pb
from edgepilot.emulation.hardware import EmulationClock, RadioCell

# Fig. 5-like network (SI units)
PARAMS = NetworkParams(channel_bandwidth_hz=20e6, noise_power_w=10 ** (-165 / 10) / 1000 * 20e6,
                       ue_max_power_w=10 ** (23.9 / 10) / 1000, edge_power_w=1.0, cloud_power_w=10.0,
                       ue_max_cpu_hz=1.43e9, edge_cpu_hz=8.64e9, cloud_cpu_hz=43.2e9, kappa=1e-27,
                       w_time=1.0, w_energy=0.1)
NUM_CHANNELS = 4
TIME_SCALE = 0.01


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory):
    broker = MosquittoBroker(workdir=tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.cleanup()


class Fleet:
    """Edge servers (TaskExecution over real gRPC) and the edge info they announce."""

    def __init__(self, num_edges: int = 2, time_scale: float = TIME_SCALE) -> None:
        p = PARAMS
        radio = RadioCell(p.channel_bandwidth_hz, p.noise_power_w, p.ue_max_power_w, p.edge_power_w, p.cloud_power_w)
        clock = EmulationClock(time_scale)
        self.time_scale = time_scale
        self.servers = []
        self.cloud = self._server(TaskExecutionService("cloud", radio, p.edge_cpu_hz, p.cloud_cpu_hz, clock))
        self.edges = [self._server(TaskExecutionService("edge", radio, p.edge_cpu_hz, p.cloud_cpu_hz, clock, edge_id=k,
                                                        cloud_address=self.cloud.address)) for k in range(num_edges)]

    def _server(self, svc) -> EdgeServer:
        s = EdgeServer(ServerConfig(port=0, max_workers=16, max_message_bytes=64 << 20, grace_seconds=0.5))
        s.add_service(svc)
        s.start()
        self.servers.append(s)
        return s

    def info(self, k: int, address: str | None = None) -> pb.EdgeServerInfo:
        p = PARAMS
        return pb.EdgeServerInfo(edge_id=k, grpc_address=address or self.edges[k].address, edge_cpu_hz=p.edge_cpu_hz,
                                 cloud_cpu_hz=p.cloud_cpu_hz, num_channels=NUM_CHANNELS,
                                 channel_bandwidth_hz=p.channel_bandwidth_hz, noise_power_w=p.noise_power_w,
                                 edge_power_w=p.edge_power_w, cloud_power_w=p.cloud_power_w,
                                 time_scale=self.time_scale, w_time=p.w_time, w_energy=p.w_energy)

    def close(self) -> None:
        for s in self.servers:
            s.stop(0.2)


class Listener:
    """An MQTT client that records every message on the topics it subscribes to."""

    def __init__(self, port: int, subscriptions: list[str], client_id: str = "test-listener",
                 username: str | None = None, password: str | None = None, tls_ca: str | None = None,
                 persistent: bool = False) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        # persistent: the broker keeps the subscription and queues QoS 1 messages while the
        # listener is away (e.g. reconnecting after a broker restart later than the agents)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.reconnect_delay_set(0.1, 1.0)
        subs = [(s, 1) for s in subscriptions]
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(subs) if subs else self.subscribed.set()
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10), "listener could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]

    def wait_for(self, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
        end = time.time() + timeout
        while time.time() < end:
            got = self.on(topic)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.on(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_task(ue_id: str, round_: int, edge_id: int = 0, seed: int = 0, deadline: float = 0.0) -> pb.Task:
    rng = np.random.default_rng([seed, round_, int.from_bytes(ue_id.encode()[-2:], "big")])
    now = time.time()
    return pb.Task(ue_id=ue_id, round=round_, task_type=int(rng.integers(0, 200)),
                   input_bits=float(rng.uniform(5e6, 20e6)), output_bits=float(rng.uniform(2e6, 40e6)),
                   cycles_per_bit=float(rng.uniform(600, 1200)), cached=False, deadline_seconds=deadline,
                   issued_unix_seconds=now, frame_start_unix_seconds=now + 0.05,
                   radio=pb.RadioMeasurement(edge_id=edge_id, channel_gain=float(10 ** rng.uniform(-12, -9)),
                                             edge_cloud_gain=float(10 ** rng.uniform(-11, -9))))


def make_agent(tmp: Path, port: int, ue_id: str, edge_id: int = 0, policy=None, **kw) -> UEAgent:
    cfg = AgentConfig(ue_id=ue_id, edge_id=edge_id, state_dir=tmp / ue_id, broker_port=port, **kw)
    agent = UEAgent(cfg, policy=policy)
    agent.record_inputs = True
    return agent


class FixedPolicy:
    """Always the same decision (a policy, not a stand-in for any component)."""

    def __init__(self, offload: int, channel: int = 0, version: str = "fixed") -> None:
        self.offload, self.channel, self.version = offload, channel, version

    def decide(self, local_states):
        n = np.asarray(local_states).reshape(-1, 6).shape[0]
        return {"offload": np.full(n, self.offload), "channel": np.full(n, self.channel),
                "transmit_power_ratio": np.ones(n), "cpu_freq_ratio": np.ones(n)}


def publish_edge_info(listener: Listener, fleet: Fleet, k: int, address: str | None = None) -> None:
    listener.publish(topics.edge_info(k), fleet.info(k, address).SerializeToString(), retain=True)


def wait_connected(agent: UEAgent, timeout: float = 15.0) -> None:
    end = time.time() + timeout
    while agent.stats["connects"] < 1 and time.time() < end:
        time.sleep(0.02)
    assert agent.stats["connects"] >= 1, f"{agent.config.ue_id} did not connect"
    assert agent.wait_subscribed(timeout), f"{agent.config.ue_id}: the broker never acknowledged its subscriptions"
