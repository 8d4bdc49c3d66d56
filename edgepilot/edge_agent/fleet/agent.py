"""The UE agent: one MQTT client per UE running the DTAC actor on its own local state.

Each round: take the UE's own task and radio measurement, build the local state (14)
with :func:`edgepilot.edge_agent.system_model.local_state` from that task alone, ask the policy
(the DTAC actor through the device runtime), publish the decision, execute it (compute
locally on the emulated hardware, or offload to the edge server / cloud over gRPC),
publish the outcome. Nothing from another UE ever reaches the agent: it subscribes only
to its own task / command topics, its edge server's info and the policy topic.

Everything it publishes goes through a disk-backed outbox first (ordered, bounded), so a
broker outage loses nothing: the agent keeps deciding (DTAC needs nothing from the
others), reconnects with backoff and flushes in order. An edge server that is
unreachable, or that cannot return the result before the task's deadline, means local
execution. A payload that does not parse or is out of range is logged and dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from edgepilot.edge_agent.fleet import payloads, topics
from edgepilot.edge_agent.fleet.execution import TaskExecutionClient
from edgepilot.edge_agent.fleet.outbox import Outbox
from edgepilot.edge_agent.fleet.payloads import PayloadError
from edgepilot.edge_agent.fleet.policy import LocalThresholdPolicy, Policy, check_decisions
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, NetworkParams, RoundTasks, local_state
from edgepilot.v1 import fleet_pb2 as pb
from edgepilot.emulation.hardware import ComputeEmulator, EmulationClock, device_cpu_hz

log = logging.getLogger("edgepilot.fleet.agent")

_TARGET = {LOCAL: pb.OFFLOAD_TARGET_LOCAL, EDGE: pb.OFFLOAD_TARGET_EDGE, CLOUD: pb.OFFLOAD_TARGET_CLOUD}
UE_MAX_POWER_W = 10 ** (23.9 / 10) / 1000  # P_UE, Table I: 23.9 dBm


@dataclass
class AgentConfig:
    ue_id: str
    edge_id: int
    state_dir: Path
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive_s: int = 10
    hardware_profile: str = "jetson-nano"
    cpu_hz: float | None = None  # overrides the profile's emulated compute speed
    ue_max_power_w: float = UE_MAX_POWER_W
    kappa: float = 1e-27
    mode: str = "decentralized"  # or "centralized" (baseline: the controller decides)
    command_timeout_s: float = 5.0  # centralized: wall seconds to wait for the command
    wire_scale: float = 1.0  # fraction of the task's bytes that really travel
    max_outbox_records: int = 10_000
    trusted_keys: list = field(default_factory=list)
    recent_rounds: int = 16  # rounds whose records are kept to answer a re-sent task
    # a task's uplink frame may open at most this many wall seconds from now (a later one
    # is refused with a logged reason: it would hold the agent's only worker)
    max_frame_ahead_s: float = payloads.MAX_FRAME_AHEAD_SECONDS
    offload_timeout_s: float = 60.0  # an offload without a task deadline: gRPC deadline after the frame start

    def __post_init__(self) -> None:
        topics.check_ue_id(self.ue_id)
        self.state_dir = Path(self.state_dir)
        if self.mode not in ("decentralized", "centralized"):
            raise ValueError(f"mode must be 'decentralized' or 'centralized', got {self.mode!r}")
        if not 0 <= self.wire_scale <= 1:
            raise ValueError(f"wire_scale must be in [0, 1], got {self.wire_scale}")
        for name in ("max_frame_ahead_s", "offload_timeout_s", "command_timeout_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {v}")


def _guarded(fn):
    """A paho callback that never raises: an exception escaping a callback ends paho's
    network thread (the agent would stay up, deaf, and never reconnect). It is logged and
    counted instead; a loop that dies all the same is a fatal state (:meth:`UEAgent.fatal_reason`)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - the MQTT loop must go on
            self.stats["callback_errors"] += 1
            log.exception("%s: unexpected error in %s (the MQTT loop goes on)", self.config.ue_id, fn.__name__)
            return None

    return wrapper


class UEAgent:
    def __init__(self, config: AgentConfig, policy: Policy | None = None, updater=None) -> None:
        self.config = c = config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(c.state_dir / "outbox", max_records=c.max_outbox_records)
        self.compute = ComputeEmulator(c.cpu_hz or device_cpu_hz(c.hardware_profile), c.kappa)
        self.policy: Policy | None = policy
        self.updater = updater  # edgepilot.edge_agent.fleet.ota.PolicyUpdater, optional
        self.edge_info: pb.EdgeServerInfo | None = self._load_cached_edge_info()
        self._edge_info_ready = threading.Event()
        if self.edge_info is not None:
            self._edge_info_ready.set()
        self._tasks: queue.Queue = queue.Queue()
        self._decide_lock = threading.RLock()
        self._commands: dict[int, pb.Decision] = {}
        self._command_cond = threading.Condition()
        self._pending_announcement: pb.PolicyAnnouncement | None = None
        self._subscribed = threading.Event()
        # round -> (fingerprint of the task, [(topic, payload)]): a re-sent task (the same
        # bytes) is answered from these records; another task under a used round number
        # is a new task and decided anew (see docs/fleet.md, "Round numbers")
        self._recent: OrderedDict[int, tuple] = OrderedDict()
        self._clients: dict[str, TaskExecutionClient] = {}
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._started = False
        self.rejected_policy = ("", "")
        self.stats = {"rounds": 0, "dropped_payloads": 0, "fallbacks": 0, "duplicates": 0,
                      "published": 0, "published_bytes": 0, "received": 0, "received_bytes": 0,
                      "handled": 0, "connects": 0, "callback_errors": 0, "refused_tasks": 0, "reused_rounds": 0,
                      "decision_wall_seconds": []}
        self.seen_topics: list[str] = []  # every topic a message arrived on (tests)
        self.policy_inputs: list[np.ndarray] = []  # every local-state batch given to the policy (tests)
        self.record_inputs = False
        self.client = self._make_client()

    # -- MQTT ------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = self.config
        # a persistent session: while the agent is away (its link or the broker restarting),
        # the broker keeps its subscriptions and queues its QoS 1 tasks / commands
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=c.ue_id, protocol=mqtt.MQTTv311,
                             clean_session=False)
        if c.username:
            client.username_pw_set(c.username, c.password)
        if c.tls_ca:
            client.tls_set(ca_certs=c.tls_ca, certfile=c.tls_cert, keyfile=c.tls_key)
        client.will_set(topics.status(c.ue_id), self._status(pb.AgentStatus.STATE_OFFLINE).SerializeToString(),
                        qos=1, retain=True)
        client.reconnect_delay_set(min_delay=0.1, max_delay=2.0)
        client.max_inflight_messages_set(64)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _status(self, state: int) -> pb.AgentStatus:
        p = self.policy
        prev = getattr(self.updater, "previous_version", "") if self.updater is not None else ""
        return pb.AgentStatus(
            ue_id=self.config.ue_id, state=state, policy_version=getattr(p, "version", "") if p else "",
            hardware_profile=self.config.hardware_profile, unix_seconds=time.time(),
            rejected_policy_version=self.rejected_policy[0], rejected_reason=self.rejected_policy[1],
            rounds_done=self.stats["rounds"] if hasattr(self, "stats") else 0, previous_policy_version=prev or "",
        )

    def _publish_raw(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if not self.client.is_connected():
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        self.stats["published"] += 1
        self.stats["published_bytes"] += publish_packet_bytes(topic, payload, qos)
        return info.mid

    def publish_status(self) -> None:
        payload = self._status(pb.AgentStatus.STATE_ONLINE).SerializeToString()
        self._publish_raw(topics.status(self.config.ue_id), payload, 1, True)

    @_guarded
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.config.ue_id, reason_code)
            return
        c = self.config
        self.stats["connects"] += 1
        # the retained edge-server info is read once per connection (a cached copy only
        # serves a start without a broker), never per round
        subs = [(topics.task(c.ue_id), 1), (topics.policy_topic(), 1), (topics.edge_info(c.edge_id), 1)]
        if c.mode == "centralized":
            subs.append((topics.command(c.ue_id), 1))
        client.subscribe(subs)
        self.publish_status()
        self.outbox.kick()
        log.info("%s: connected to %s:%d", c.ue_id, c.broker_host, c.broker_port)

    @_guarded
    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        self._subscribed.set()  # SUBACK: from here on the broker routes this UE's tasks to it

    def wait_subscribed(self, timeout: float = 15.0) -> bool:
        """True once the broker has acknowledged this agent's subscriptions."""
        return self._subscribed.wait(timeout)

    @_guarded
    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.outbox.connection_lost()
        if not self._stop.is_set():
            log.warning("%s: broker connection lost (%s); deciding on, telemetry queued on disk",
                        self.config.ue_id, reason_code)

    @_guarded
    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        self.outbox.acked(mid)

    @_guarded
    def _on_message(self, client, userdata, msg) -> None:
        received = time.time()
        self.stats["received"] += 1
        self.stats["received_bytes"] += publish_packet_bytes(msg.topic, msg.payload, msg.qos)
        self.seen_topics.append(msg.topic)
        c = self.config
        try:
            if msg.topic == topics.task(c.ue_id):
                self._accept(payloads.parse_task(msg.payload, c.ue_id), received)
            elif msg.topic == topics.edge_info(c.edge_id):
                if not msg.payload:
                    return
                info = payloads.parse_edge_info(msg.payload)
                if info.edge_id != c.edge_id:
                    raise PayloadError(f"edge_id = {info.edge_id} is not this UE's edge server {c.edge_id}", "edge_id")
                self._set_edge_info(info)
                client.unsubscribe(topics.edge_info(c.edge_id))  # read once, not per round
            elif msg.topic == topics.policy_topic():
                if not msg.payload:
                    return
                self._pending_announcement = payloads.parse_policy_announcement(msg.payload)
            elif msg.topic == topics.command(c.ue_id):
                num_channels = self.edge_info.num_channels if self.edge_info else None
                cmd = payloads.parse_decision(msg.payload, c.ue_id, num_channels)
                with self._command_cond:
                    self._commands[cmd.round] = cmd
                    self._command_cond.notify_all()
            else:
                log.warning("%s: message on unexpected topic %s dropped", c.ue_id, msg.topic)
                self.stats["dropped_payloads"] += 1
        except PayloadError as err:
            self.stats["dropped_payloads"] += 1
            log.warning("%s: dropped payload on %s: %s", c.ue_id, msg.topic[:200], err)
        finally:
            self.stats["handled"] += 1  # every message, whatever became of it (tests wait on it)

    # -- edge-server info (read once, cached on disk for offline restarts) -------------
    def _edge_info_path(self) -> Path:
        return self.config.state_dir / "edge_info.pb"

    def _load_cached_edge_info(self) -> pb.EdgeServerInfo | None:
        try:
            info = payloads.parse_edge_info(self._edge_info_path().read_bytes())
        except (OSError, PayloadError):
            return None
        return info if info.edge_id == self.config.edge_id else None

    def _set_edge_info(self, info: pb.EdgeServerInfo) -> None:
        self.edge_info = info
        tmp = self._edge_info_path().with_suffix(".tmp")
        tmp.write_bytes(info.SerializeToString())
        tmp.replace(self._edge_info_path())
        self._edge_info_ready.set()

    def network_params(self) -> NetworkParams:
        i = self.edge_info
        return NetworkParams(
            channel_bandwidth_hz=i.channel_bandwidth_hz, noise_power_w=i.noise_power_w,
            ue_max_power_w=self.config.ue_max_power_w, edge_power_w=i.edge_power_w, cloud_power_w=i.cloud_power_w,
            ue_max_cpu_hz=self.compute.cpu_hz, edge_cpu_hz=i.edge_cpu_hz, cloud_cpu_hz=i.cloud_cpu_hz,
            kappa=self.config.kappa, w_time=i.w_time, w_energy=i.w_energy,
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "UEAgent":
        c = self.config
        if self.policy is None and self.updater is not None:
            self.policy = self.updater.load_current()
        self.outbox.start(self._publish_raw)
        self.client.connect_async(c.broker_host, c.broker_port, keepalive=c.keepalive_s)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._run, name=f"agent-{c.ue_id}", daemon=True)
        self._worker.start()
        self._started = True
        return self

    def fatal_reason(self) -> str | None:
        """Why this agent can no longer work (its MQTT network thread, its worker or its
        outbox pump died), or None. ``edgepilot agent`` exits non-zero on it, so the service
        manager restarts the process (the unit has Restart=always)."""
        if not self._started or self._stop.is_set():
            return None
        net = getattr(self.client, "_thread", None)
        if net is None or not net.is_alive():
            return "the MQTT network thread ended"
        if self._worker is None or not self._worker.is_alive():
            return "the round worker ended"
        pump = getattr(self.outbox, "_thread", None)
        if pump is None or not pump.is_alive():
            return "the outbox pump ended"
        return None

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Finish the current round, flush the outbox (bounded wait), go offline."""
        self._tasks.put(None)
        self._started = False
        if self._worker is not None:
            self._worker.join(timeout=flush_timeout + 30)
        self.outbox.wait_empty(flush_timeout)
        self._stop.set()
        if self.client.is_connected():
            info = self.client.publish(topics.status(self.config.ue_id),
                                       self._status(pb.AgentStatus.STATE_OFFLINE).SerializeToString(), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.stop()
        for cl in self._clients.values():
            cl.close()

    def submit_task(self, task: pb.Task) -> None:
        """A task from a local source (the device's own workload), broker or not."""
        try:
            payloads.check_task(task, self.config.ue_id)
        except PayloadError as err:
            self.stats["dropped_payloads"] += 1
            log.warning("%s: dropped local task: %s", self.config.ue_id, err)
            return
        self._accept(task, time.time())

    def wait_rounds(self, count: int, timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if self.stats["rounds"] >= count:
                return True
            time.sleep(0.01)
        return self.stats["rounds"] >= count

    # -- the round ---------------------------------------------------------------------
    # Decentralized, the decision is made where the task arrives (the MQTT network thread
    # or the local source's thread) and published at once; executing it (seconds of
    # emulated compute or an offload) happens on the agent's worker thread.
    def _accept(self, task: pb.Task, received: float) -> None:
        ahead = task.frame_start_unix_seconds - received if task.frame_start_unix_seconds else 0.0
        if ahead > self.config.max_frame_ahead_s:
            self.stats["refused_tasks"] += 1
            log.warning("%s: task of round %d refused: its frame starts %.0f s from now (at most %g s)",
                        self.config.ue_id, task.round, ahead, self.config.max_frame_ahead_s)
            return
        if self.config.mode == "centralized" or not self._edge_info_ready.is_set():
            self._tasks.put(("task", task, received))  # decided on the worker
            return
        try:
            made = self._decide_round(task, received)
        except Exception:
            log.exception("%s: deciding round %d failed", self.config.ue_id, task.round)
            return
        if made is not None:
            self._tasks.put(("exec", task, received, made))

    def _run(self) -> None:
        while True:
            try:
                item = self._tasks.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                return
            task, received = item[1], item[2]
            try:
                made = item[3] if item[0] == "exec" else self._decide_round(task, received)
                if made is not None:
                    self._execute_round(task, received, *made)
            except Exception:  # a bad round must not end the agent
                log.exception("%s: round %d failed", self.config.ue_id, task.round)

    def _apply_update(self, ann: pb.PolicyAnnouncement) -> None:
        if self.updater is None:
            log.warning("%s: policy %s announced but this agent has no updater", self.config.ue_id, ann.version)
            return
        if self.policy is not None and getattr(self.policy, "version", None) == ann.version:
            return
        num_channels = self.edge_info.num_channels if self.edge_info else 4
        try:
            self.policy = self.updater.install(ann, num_channels)
            self.rejected_policy = ("", "")
            log.info("%s: now running policy %s", self.config.ue_id, ann.version)
        except Exception as err:  # refused: keep the running policy
            self.rejected_policy = (ann.version, str(err)[:500])
            log.warning("%s: refused policy %s: %s", self.config.ue_id, ann.version, err)
        self.publish_status()

    def _decide_round(self, task: pb.Task, received: float):
        """Local state (14) -> policy -> Decision, published (via the outbox) at once.
        Returns (decision message, decided time) or None (duplicate / unusable task)."""
        c = self.config
        fingerprint = hashlib.sha256(task.SerializeToString(deterministic=True)).digest()
        with self._decide_lock:
            seen = self._recent.get(task.round)
            if seen is not None and seen[0] == fingerprint:  # a re-sent task (e.g. after a broker restart)
                self.stats["duplicates"] += 1
                for topic, payload in list(seen[1]):
                    self.outbox.put(topic, payload, qos=1)
                return None
            if seen is not None:  # the round number of an earlier, different task: a new task
                self.stats["reused_rounds"] += 1
                log.warning("%s: round %d reused by a different task: deciding it anew", c.ue_id, task.round)
                del self._recent[task.round]
            if self._pending_announcement is not None:  # between rounds, never inside one
                ann, self._pending_announcement = self._pending_announcement, None
                self._apply_update(ann)
            if not self._edge_info_ready.wait(timeout=30):
                log.warning("%s: no edge-server info yet; task of round %d dropped", c.ue_id, task.round)
                return None
            if task.radio.edge_id != c.edge_id:
                self.stats["dropped_payloads"] += 1
                log.warning("%s: task for edge %d, but this UE belongs to edge %d: dropped", c.ue_id,
                            task.radio.edge_id, c.edge_id)
                return None
            info = self.edge_info
            state = self.local_state(task, self.network_params())  # (14), from this UE's own task and radio only
            if c.mode == "centralized":
                decision = self._central_decision(task, state, info.num_channels)
            else:
                decision = self._decide(state, info.num_channels)
            decided = time.time()
            policy_version = getattr(self.policy, "version", "") if self.policy else ""
            dmsg = pb.Decision(
                ue_id=c.ue_id, round=task.round, offload=_TARGET[int(decision["offload"])],
                channel=int(decision["channel"]), transmit_power_ratio=float(decision["transmit_power_ratio"]),
                cpu_freq_ratio=float(decision["cpu_freq_ratio"]), policy_version=policy_version,
                decision_wall_seconds=decided - received, decided_unix_seconds=decided,
            )
            record = (topics.decision(c.ue_id), dmsg.SerializeToString())
            self.outbox.put(record[0], record[1], qos=1, send_now=True)
            self._recent[task.round] = (fingerprint, [record])
            while len(self._recent) > c.recent_rounds:
                self._recent.popitem(last=False)
            lat = self.stats["decision_wall_seconds"]
            lat.append(decided - received)
            if len(lat) > 10_000:
                del lat[: len(lat) - 10_000]
            return dmsg, decided

    def _execute_round(self, task: pb.Task, received: float, dmsg: pb.Decision, decided: float) -> None:
        c = self.config
        clock = EmulationClock(self.edge_info.time_scale)
        outcome = self._execute(task, dmsg, received, decided, clock, self.network_params())
        tel_topic = topics.telemetry(c.ue_id)
        built: list[bytes] = []

        def telemetry(seq: int) -> bytes:
            built.append(pb.Telemetry(ue_id=c.ue_id, seq=seq, decision=dmsg, outcome=outcome, created_unix_seconds=time.time(),
                                      queued_records=self.outbox.backlog_unlocked, dropped_records=self.outbox.dropped
                                      ).SerializeToString())
            return built[0]

        self.outbox.put(tel_topic, b"", qos=1, make_payload=telemetry, send_now=True)
        with self._decide_lock:
            seen = self._recent.get(task.round)
            if seen is not None and seen[1] and seen[1][0][1] == dmsg.SerializeToString():  # still this task's record
                seen[1].append((tel_topic, built[0]))
        self.stats["rounds"] += 1

    def local_state(self, task: pb.Task, params: NetworkParams) -> np.ndarray:
        """s_t^n (14) of this UE, (6,), from its own task and radio measurement alone."""
        r = task.radio
        one = RoundTasks(edge=[0], gain=[r.channel_gain], edge_cloud_gain=[r.edge_cloud_gain],
                         input_bits=[task.input_bits], output_bits=[task.output_bits],
                         cycles_per_bit=[task.cycles_per_bit], cached=[float(task.cached)])
        return local_state(params, one)[0, 0]

    def _decide(self, state: np.ndarray, num_channels: int) -> dict:
        if self.policy is None:
            self.policy = LocalThresholdPolicy(num_channels, ue_id=self.config.ue_id)
        batch = state[None, :].astype(np.float64)
        if self.record_inputs:
            self.policy_inputs.append(batch.copy())
        try:
            out = check_decisions(self.policy.decide(batch), 1, num_channels)
        except Exception as err:  # a broken policy must not stop the UE: decide by rule
            log.warning("%s: policy %s failed (%s); threshold rule used", self.config.ue_id,
                        getattr(self.policy, "version", "?"), err)
            out = LocalThresholdPolicy(num_channels, ue_id=self.config.ue_id).decide(batch)
        return {k: v[0] for k, v in out.items()}

    def _central_decision(self, task: pb.Task, state: np.ndarray, num_channels: int) -> dict:
        """Centralized baseline: send the local state, wait for the controller's command."""
        c = self.config
        report = pb.LocalStateReport(ue_id=c.ue_id, round=task.round, edge_id=c.edge_id, local_state=[float(v) for v in state])
        self._publish_raw(topics.state(c.ue_id), report.SerializeToString(), 1, False)
        with self._command_cond:
            got = self._command_cond.wait_for(lambda: task.round in self._commands, timeout=c.command_timeout_s)
            cmd = self._commands.pop(task.round, None) if got else None
            for old in [r for r in self._commands if r < task.round]:
                del self._commands[old]
        if cmd is None:
            self.stats["fallbacks"] += 1
            log.warning("%s: no command for round %d; deciding locally", c.ue_id, task.round)
            return self._decide(state, num_channels)
        return {"offload": int(cmd.offload), "channel": cmd.channel, "transmit_power_ratio": cmd.transmit_power_ratio,
                "cpu_freq_ratio": cmd.cpu_freq_ratio}

    # -- execution -----------------------------------------------------------------------
    def _client(self, address: str) -> TaskExecutionClient:
        cl = self._clients.get(address)
        if cl is None:
            cl = self._clients[address] = TaskExecutionClient(address)
        return cl

    def _run_local(self, task: pb.Task, b: float, clock: EmulationClock) -> tuple[float, float]:
        cycles = task.input_bits * task.cycles_per_bit
        t1 = self.compute.compute_seconds(cycles, b)  # (2)
        clock.sleep_until(time.time() + clock.wall(t1))
        return t1, self.compute.energy_joules(cycles, b)  # (3)

    def _execute(self, task: pb.Task, d: pb.Decision, received: float, decided: float, clock: EmulationClock,
                 params: NetworkParams) -> pb.Outcome:
        c = self.config
        out = pb.Outcome(ue_id=c.ue_id, round=task.round, requested=d.offload)
        if d.offload == pb.OFFLOAD_TARGET_LOCAL:
            start = time.time()
            t1, energy = self._run_local(task, d.cpu_freq_ratio, clock)
            out.executed = pb.OFFLOAD_TARGET_LOCAL
            out.compute_seconds, out.energy_joules = t1, energy
            out.wall_seconds = time.time() - start
            out.execution_seconds = clock.emulated(out.wall_seconds)
            return out
        frame_start = task.frame_start_unix_seconds or decided
        # every offload call carries a gRPC deadline: the task's, else the frame start plus
        # offload_timeout_s (the frame start itself is bounded by max_frame_ahead_s)
        deadline_wall = (received + clock.wall(task.deadline_seconds) if task.deadline_seconds > 0
                         else max(decided, frame_start) + c.offload_timeout_s)
        start = max(decided, frame_start)
        req = pb.ExecuteRequest(
            ue_id=c.ue_id, round=task.round, target=d.offload, input_bits=task.input_bits,
            output_bits=task.output_bits, cycles_per_bit=task.cycles_per_bit, cached=task.cached, channel=d.channel,
            transmit_power_ratio=d.transmit_power_ratio, channel_gain=task.radio.channel_gain, edge_id=c.edge_id,
            edge_cloud_gain=task.radio.edge_cloud_gain, frame_start_unix_seconds=frame_start,
            payload=bytes(int(math.ceil(task.input_bits * c.wire_scale / 8))),
        )
        reason, resp = "", None
        for attempt in range(3):  # a transient UNAVAILABLE (connection reset under load) is retried twice
            timeout = max(0.001, deadline_wall - time.time())
            try:
                resp = self._client(self.edge_info.grpc_address).execute(req, timeout=timeout)
                break
            except Exception as err:  # grpc.RpcError: unreachable, deadline, refused
                code = getattr(err, "code", lambda: None)()
                reason = f"edge server: {getattr(code, 'name', type(err).__name__)}"
                if getattr(code, "name", "") != "UNAVAILABLE" or attempt == 2:
                    break
                time.sleep(0.05)
        if resp is not None:
            out.executed = resp.executed_at
            out.compute_seconds = resp.compute_seconds
            out.communication_seconds = resp.communication_seconds
            out.queue_seconds = resp.queue_seconds
            out.uplink_rate_bps = resp.uplink_rate_bps
            out.result_bytes = len(resp.result)
            tx_w = d.transmit_power_ratio * c.ue_max_power_w
            out.energy_joules = tx_w * task.input_bits / resp.uplink_rate_bps if resp.uplink_rate_bps > 0 else 0.0  # (6)
            out.wall_seconds = time.time() - start
            out.execution_seconds = clock.emulated(out.wall_seconds)
            return out
        # unreachable or past the deadline: compute locally (DTAC needs nobody to do that)
        self.stats["fallbacks"] += 1
        log.warning("%s: round %d offload failed (%s): computing locally", c.ue_id, task.round, reason)
        t1, energy = self._run_local(task, d.cpu_freq_ratio, clock)
        out.executed = pb.OFFLOAD_TARGET_LOCAL
        out.fallback_reason = reason
        out.compute_seconds, out.energy_joules = t1, energy
        out.wall_seconds = max(0.0, time.time() - start)  # a fallback before the frame opened: 0
        out.execution_seconds = clock.emulated(out.wall_seconds)
        return out

    def summary(self) -> dict:
        lat = np.asarray(self.stats["decision_wall_seconds"] or [0.0])
        s = {k: v for k, v in self.stats.items() if k != "decision_wall_seconds"}
        s.update(ue_id=self.config.ue_id, outbox_backlog=self.outbox.backlog, outbox_dropped=self.outbox.dropped,
                 decision_p50_s=float(np.percentile(lat, 50)), decision_p99_s=float(np.percentile(lat, 99)))
        return s


def publish_packet_bytes(topic: str, payload: bytes, qos: int) -> int:
    """Size of the MQTT 3.1.1 PUBLISH packet carrying ``payload`` on ``topic``."""
    body = 2 + len(topic.encode()) + (2 if qos > 0 else 0) + len(payload)
    length_bytes = 1 if body < 128 else 2 if body < 16384 else 3 if body < 2097152 else 4
    return 1 + length_bytes + body


def write_summary(agents: list[UEAgent], path: Path) -> None:
    path.write_text(json.dumps([a.summary() for a in agents], indent=1))
