"""``edgepilot emulate``: the emulated fleet on a laptop, and its round coordinator.

Starts an MQTT broker (embedded amqtt by default, or Mosquitto), K gRPC edge servers
and a cloud tier running ``TaskExecution``, and N UE agents (in a few agent-host
processes, or as threads). Each round the coordinator draws every UE's task and channel
from a scenario of the simulator, publishes each UE its own task (its own radio
measurement inside), and waits for every UE's decision and outcome. It then evaluates
the same round with the system model under the decisions the agents published (the
simulator's prediction) and compares: round time, energy, offload mix, decision latency,
MQTT messages and bytes per round.

``--policy dtac`` (the default: the shipped DTAC bundle unless ``--bundle`` names
another; or ``threshold`` / ``local``) decides on the UEs from their local
state alone; ``--policy centralized`` is the baseline that needs every UE's state: each
agent sends its local state to the controller here, which decides for all of them and
sends each its command. The messages / bytes columns show the signalling each needs.

The coordinator runs on the laptop and may use cloud_trainer; the agents never do.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import paho.mqtt.client as mqtt

from edgepilot.cloud_trainer.envs.simulator import BatchSimulator
from edgepilot.cloud_trainer.scenario import Scenario, load_scenario
from edgepilot.edge_agent.fleet import payloads, topics
from edgepilot.edge_agent.fleet.agent import publish_packet_bytes
from edgepilot.edge_agent.fleet.execution import TaskExecutionService
from edgepilot.edge_agent.server import EdgeServer, ServerConfig
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, Decision, evaluate_round
from edgepilot.v1 import fleet_pb2 as pb
from edgepilot.emulation.config import POLICIES, EmulateConfig  # noqa: F401  (EmulateConfig is part of this API)
from edgepilot.emulation.hardware import EmulationClock, RadioCell, device_cpu_hz

log = logging.getLogger("edgepilot.fleet.coordinator")

def fleet_scenario(cfg: EmulateConfig) -> Scenario:
    """The named scenario with K edge servers of N / K UEs each and the UE's compute speed."""
    base = load_scenario(cfg.scenario)
    data = base.model_dump(mode="json")
    per_edge = cfg.ues // cfg.edges
    data["topology"].update(num_edge_servers=cfg.edges, ues_per_edge_min=per_edge, ues_per_edge_max=per_edge)
    data["compute"]["ue_max_cpu_hz"] = device_cpu_hz(cfg.profile, base.compute.ue_max_cpu_hz)
    data["name"] = f"{base.name}-fleet-{cfg.ues}x{cfg.edges}"
    return Scenario.model_validate(data)


def ue_name(i: int) -> str:
    return f"ue-{i:03d}"


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.msgs: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def add(self, leaf: str, nbytes: int) -> None:
        with self.lock:
            self.msgs[leaf] = self.msgs.get(leaf, 0) + 1
            self.bytes[leaf] = self.bytes.get(leaf, 0) + nbytes

    def snapshot(self) -> tuple[dict, dict]:
        with self.lock:
            return dict(self.msgs), dict(self.bytes)


class Coordinator:
    """MQTT side of the emulation: tasks out, decisions / telemetry in, central controller."""

    def __init__(self, cfg: EmulateConfig, port: int, ues: list[str]) -> None:
        self.cfg = cfg
        self.ues = ues
        self.counter = _Counter()
        self.cond = threading.Condition()
        self.decisions: dict[int, dict[str, pb.Decision]] = {}
        self.telemetry: dict[int, dict[str, pb.Telemetry]] = {}
        self.states: dict[int, dict[str, pb.LocalStateReport]] = {}
        self.online: set[str] = set()
        self.seen_seqs: dict[str, set] = {}
        self.out_of_order = 0
        self.duplicates = 0
        self.duplicate_decisions = 0
        self.dropped = 0
        self.unknown_senders = 0  # messages on the topics of UE ids not in this run: logged, ignored
        self.telemetry_messages = 0  # every telemetry message taken (duplicates included)
        self.heard: dict[str, list] = {}  # UE -> (wall time, leaf) of every message taken from it
        self._known = frozenset(ues)
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edgepilot-coordinator",
                                  protocol=mqtt.MQTTv311, clean_session=False)  # the broker queues for it
        if cfg.username:  # an external broker with the shipped config: the coordinator's user
            creds = json.loads(Path(cfg.password_file).read_text())
            if cfg.username not in creds:
                raise RuntimeError(f"{cfg.password_file}: no password for {cfg.username}")
            self.client.username_pw_set(cfg.username, creds[cfg.username])
        if cfg.tls_ca:
            self.client.tls_set(ca_certs=cfg.tls_ca)
        self.client.reconnect_delay_set(0.1, 2.0)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a, **k: self.connected.clear()
        self.client.on_message = self._on_message
        self.retained: list[tuple[str, bytes]] = []
        self.client.connect_async(cfg.broker_host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        subs = [(topics.all_ues(leaf), 1) for leaf in ("decision", "telemetry", "status")]
        if self.cfg.policy == "centralized":
            subs.append((topics.all_ues("state"), 1))
        client.subscribe(subs)
        for topic, payload in self.retained:  # retained info survives a broker without persistence
            client.publish(topic, payload, qos=1, retain=True)
        self.connected.set()

    def publish(self, topic: str, payload: bytes, retain: bool = False, count: bool = True) -> None:
        if retain:
            self.retained = [(t, p) for t, p in self.retained if t != topic] + [(topic, payload)]
        self.client.publish(topic, payload, qos=1, retain=retain)
        if count:
            self.counter.add(topic.rsplit("/", 1)[-1], publish_packet_bytes(topic, payload, 1))

    def _on_message(self, client, userdata, msg) -> None:
        # Runs on paho's network thread: nothing may escape it (an exception here would end
        # the coordinator's MQTT loop). Every payload is bound to its sender: the UE id of
        # the topic (the broker's ACL lets a UE publish only under its own id) must be the
        # one inside, and the sender must be one of this run's UEs.
        try:
            self._handle(msg)
        except payloads.PayloadError as err:
            self.dropped += 1
            log.warning("coordinator dropped a payload on %s: %s", msg.topic[:200], err)
        except Exception:  # noqa: BLE001 - logged, the loop goes on
            self.dropped += 1
            log.exception("coordinator: unexpected error handling a message on %s", msg.topic[:200])

    def _handle(self, msg) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        sender = topics.ue_of(msg.topic)
        if sender not in self._known:
            self.unknown_senders += 1
            log.warning("coordinator ignored a message from unknown sender %r on %s", (sender or "")[:64],
                        msg.topic[:200])
            return
        if leaf != "status":
            self.counter.add(leaf, publish_packet_bytes(msg.topic, msg.payload, msg.qos))
        self.heard.setdefault(sender, []).append((time.time(), leaf))
        if leaf == "decision":
            d = payloads.parse_decision(msg.payload, sender)
            self._check_round(d.round)
            with self.cond:
                if d.ue_id in self.decisions.get(d.round, {}):
                    self.duplicate_decisions += 1
                self.decisions.setdefault(d.round, {})[d.ue_id] = d
                self.cond.notify_all()
        elif leaf == "telemetry":
            t = payloads.parse_telemetry(msg.payload, sender, self.cfg.rounds - 1)
            with self.cond:
                self.telemetry_messages += 1
                # the outbox numbers decisions and telemetry together, and never reuses a
                # number (across restarts too): (UE, seq) is the dedup key; a repeat is an
                # at-least-once duplicate, counted once and not taken again
                seen = self.seen_seqs.setdefault(t.ue_id, set())
                if t.seq in seen:
                    self.duplicates += 1
                    return
                if seen and t.seq < max(seen):
                    self.out_of_order += 1
                seen.add(t.seq)
                self.telemetry.setdefault(t.outcome.round, {})[t.ue_id] = t
                self.cond.notify_all()
        elif leaf == "status":
            if msg.payload:
                st = payloads.parse_status(msg.payload, sender)
                with self.cond:
                    if st.state == pb.AgentStatus.STATE_ONLINE:
                        self.online.add(st.ue_id)
                    else:
                        self.online.discard(st.ue_id)
                    self.cond.notify_all()
        elif leaf == "state":
            r = payloads.parse_state_report(msg.payload, sender)
            self._check_round(r.round)
            with self.cond:
                self.states.setdefault(r.round, {})[r.ue_id] = r
                self.cond.notify_all()

    def _check_round(self, round_: int) -> None:
        if round_ >= self.cfg.rounds:
            raise payloads.PayloadError(f"round = {round_} is beyond this run's rounds (last {self.cfg.rounds - 1})",
                                        "round")

    def wait_online(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.online >= set(self.ues), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def central_decide(states: np.ndarray, edge_id: np.ndarray, num_edges: int, num_channels: int) -> Decision:
    """The centralized baseline's controller: it sees every UE's local state (N, 6) and
    fills the edge queues (12) greedily: a UE goes to its edge server (or the cloud)
    while the queue it would join, with it, still ends before its local time T1*(0)."""
    n = len(states)
    offload = np.zeros(n, dtype=np.int64)
    local_t = states[:, 1]
    edge_t = states[:, 2] + states[:, 3]
    cloud_t = states[:, 4] + states[:, 3]
    backhaul = states[:, 5]
    edge_queue = np.zeros(num_edges)
    cloud_queue = 0.0
    for i in np.argsort(-local_t):  # the slowest local tasks first
        k = edge_id[i]
        e, c = edge_queue[k] + edge_t[i], cloud_queue + cloud_t[i] + backhaul[i]
        if min(e, c) < local_t[i]:
            if e <= c:
                offload[i], edge_queue[k] = EDGE, e
            else:
                offload[i], cloud_queue = CLOUD, cloud_queue + cloud_t[i]
    per_cell = np.zeros(num_edges, dtype=np.int64)
    channel = np.zeros(n, dtype=np.int64)
    for i in range(n):  # spread each cell's offloaders over the channels
        if offload[i] != LOCAL:
            channel[i] = per_cell[edge_id[i]] % num_channels
            per_cell[edge_id[i]] += 1
    return Decision(offload[None], channel[None], np.ones((1, n)), np.ones((1, n)))


_OFFLOAD_NAME = {LOCAL: "local", EDGE: "edge", CLOUD: "cloud"}


def run_emulation(cfg: EmulateConfig, progress: Callable[[str], None] = print,
                  chaos: Callable[[int, dict], None] | None = None) -> dict:
    """``chaos(round, fleet)`` (fault drills, benchmarks/fleet_chaos.py) runs on its own
    thread at the start of each round and is joined before the next; ``fleet`` holds the
    broker, the coordinator, the agent-host processes and functions that restart them."""
    sc = fleet_scenario(cfg)
    params = sc.network_params
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.policy == "dtac" and cfg.bundle is None:  # the default policy: the shipped DTAC bundle
        from edgepilot.emulation.policy import signed_shipped_bundle

        bundle, pub = signed_shipped_bundle(out / "policy", progress=progress)
        cfg = cfg.model_copy(update={"bundle": str(bundle), "trusted_keys": [str(pub)]})
    for stale in ("agents", "mosquitto"):  # a fresh fleet: no outbox, cache or broker sessions of an earlier run
        shutil.rmtree(out / stale, ignore_errors=True)
    ues = [ue_name(i) for i in range(cfg.ues)]
    per_edge = cfg.ues // cfg.edges
    edge_of = {ue: i // per_edge for i, ue in enumerate(ues)}  # slot order of the simulator
    clock = EmulationClock(cfg.time_scale)
    radio = RadioCell(params.channel_bandwidth_hz, params.noise_power_w, params.ue_max_power_w,
                      params.edge_power_w, params.cloud_power_w)
    stack: list[Callable[[], None]] = []
    try:
        # -- broker ------------------------------------------------------------------
        broker = None
        if cfg.broker_kind == "embedded":
            from edgepilot.emulation.broker import EmbeddedBroker

            broker = EmbeddedBroker(cfg.broker_host, cfg.broker_port)
            port = broker.start()
        elif cfg.broker_kind == "mosquitto":
            from edgepilot.emulation.broker import MosquittoBroker

            broker = MosquittoBroker(cfg.broker_port, cfg.broker_host, workdir=out / "mosquitto")
            port = broker.start()
        else:
            port = cfg.broker_port
        if broker is not None:
            stack.append(broker.stop)
        progress(f"broker: {cfg.broker_kind} on {cfg.broker_host}:{port}")

        # -- cloud tier and edge servers ----------------------------------------------
        def server(service, port: int = 0) -> EdgeServer:
            s = EdgeServer(ServerConfig(port=port, max_workers=cfg.ues + 8, max_message_bytes=64 << 20, grace_seconds=1.0))
            s.add_service(service)
            s.start()
            stack.append(lambda: s.stop(0.5))
            return s

        cloud = server(TaskExecutionService("cloud", radio, params.edge_cpu_hz, params.cloud_cpu_hz, clock,
                                            wire_scale=cfg.wire_scale))
        def edge_server(k: int, port: int = 0) -> EdgeServer:
            return server(TaskExecutionService("edge", radio, params.edge_cpu_hz, params.cloud_cpu_hz, clock, edge_id=k,
                                               cloud_address=cloud.address, wire_scale=cfg.wire_scale), port)

        edges = [edge_server(k) for k in range(cfg.edges)]
        progress(f"edge servers: {', '.join(e.address for e in edges)}; cloud tier {cloud.address}")

        # -- coordinator, edge info ------------------------------------------------------
        coord = Coordinator(cfg, port, ues)
        stack.append(coord.close)
        if not coord.connected.wait(15):
            raise RuntimeError("coordinator could not connect to the broker")
        for k, e in enumerate(edges):
            info = pb.EdgeServerInfo(
                edge_id=k, grpc_address=e.address, edge_cpu_hz=params.edge_cpu_hz, cloud_cpu_hz=params.cloud_cpu_hz,
                num_channels=sc.radio.num_channels, channel_bandwidth_hz=params.channel_bandwidth_hz,
                noise_power_w=params.noise_power_w, edge_power_w=params.edge_power_w, cloud_power_w=params.cloud_power_w,
                time_scale=cfg.time_scale, w_time=params.w_time, w_energy=params.w_energy)
            coord.publish(topics.edge_info(k), info.SerializeToString(), retain=True, count=False)

        # -- agents ------------------------------------------------------------------
        spec = {
            "broker_host": cfg.broker_host, "broker_port": port, "state_root": str(out / "agents"),
            "hardware_profile": cfg.profile, "wire_scale": cfg.wire_scale,
            "password_file": cfg.password_file, "tls_ca": cfg.tls_ca,
            "mode": "centralized" if cfg.policy == "centralized" else "decentralized",
            "num_channels": sc.radio.num_channels, "command_timeout_s": 30.0,
            "policy": {"kind": "threshold" if cfg.policy == "centralized" else cfg.policy, "bundle": cfg.bundle,
                       "trusted_keys": [str(k) for k in cfg.trusted_keys]},
        }
        agent_summaries: list[dict] = []
        if cfg.agent_procs <= 0:
            from edgepilot.emulation.host import build_agents

            agents = build_agents({**spec, "agents": [{"ue_id": u, "edge_id": edge_of[u]} for u in ues]})
            for a in agents:
                a.start()

            def stop_threads() -> None:
                for a in agents:
                    a.stop(flush_timeout=10)
                agent_summaries.extend(a.summary() for a in agents)
            stack.append(stop_threads)
        else:
            procs = []
            host_cmds = []
            for p in range(min(cfg.agent_procs, cfg.ues)):
                mine = ues[p::cfg.agent_procs]
                host_spec = {**spec, "agents": [{"ue_id": u, "edge_id": edge_of[u]} for u in mine],
                             "summary_path": str(out / f"agents-{p}.json")}
                spec_path = out / f"agent-host-{p}.json"
                spec_path.write_text(json.dumps(host_spec))
                env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
                host_cmds.append(([sys.executable, "-m", "edgepilot.emulation.host", str(spec_path)], env, mine))
                procs.append(subprocess.Popen(host_cmds[-1][0], stdout=subprocess.DEVNULL,
                                              stderr=open(out / f"agent-host-{p}.log", "ab"), env=env))

            def stop_procs() -> None:
                for pr in procs:
                    if pr.poll() is None:
                        pr.terminate()
                for p, pr in enumerate(procs):
                    try:
                        pr.wait(60)
                    except subprocess.TimeoutExpired:
                        pr.kill()
                    f = out / f"agents-{p}.json"
                    if f.exists():
                        agent_summaries.extend(json.loads(f.read_text()))
            stack.append(stop_procs)
        if not coord.wait_online(120):
            missing = sorted(set(ues) - coord.online)
            raise RuntimeError(f"agents not online after 120 s: {missing[:10]}")
        progress(f"{cfg.ues} agents online ({cfg.policy}); {cfg.rounds} rounds on scenario {sc.name}, "
                 f"time scale {cfg.time_scale:g} wall s per emulated s")

        # -- rounds ------------------------------------------------------------------
        sim = BatchSimulator(sc, batch_size=1, seed=cfg.seed)
        obs = sim.reset()
        rounds = []
        fleet: dict = {"broker": broker, "coordinator": coord, "edges": edges, "progress": progress}
        if cfg.agent_procs > 0:
            def restart_host(p: int) -> None:
                cmd, env, _ = host_cmds[p]
                procs[p] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(out / f"agent-host-{p}.log", "ab"),
                                            env=env)

            def restart_edge(k: int) -> EdgeServer:
                port_k = int(edges[k].address.rsplit(":", 1)[1])
                edges[k] = edge_server(k, port_k)
                return edges[k]

            fleet.update(procs=procs, hosts=[h[2] for h in host_cmds], restart_host=restart_host,
                         restart_edge=restart_edge)
        for t in range(cfg.rounds):
            drill = threading.Thread(target=chaos, args=(t, fleet), daemon=True) if chaos is not None else None
            if drill is not None:
                drill.start()
            restart = None
            if cfg.restart_broker_at is not None and t == cfg.restart_broker_at:
                progress(f"round {t}: restarting the broker while the round runs")
                restart = broker.restart
            rounds.append(_run_round(cfg, coord, sim, obs, t, ues, params, sc.radio.num_channels, clock, restart))
            r = rounds[-1]
            progress(f"round {t + 1}/{cfg.rounds}: measured {r['measured_round_time_s']:.2f} s, predicted "
                     f"{r['predicted_round_time_s']:.2f} s, offload L/E/C {r['offload_mix']['local']}/"
                     f"{r['offload_mix']['edge']}/{r['offload_mix']['cloud']}, {r['messages']} msgs")
            obs = sim.step(r.pop("_decision")).observation
            if drill is not None:
                drill.join()
    finally:
        for fn in reversed(stack):
            try:
                fn()
            except Exception as err:  # keep tearing down
                log.warning("teardown: %s", err)
    summary = summarize(cfg, sc, rounds, agent_summaries, coord)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.plot:
        try:
            plot_summary(summary, out / "summary.png")
            summary["png"] = str(out / "summary.png")
        except ImportError:
            progress("matplotlib not installed: no PNG")
    return summary


def _run_round(cfg, coord: Coordinator, sim, obs, t: int, ues, params, num_channels: int, clock,
               restart: Callable | None = None) -> dict:
    tasks = obs.tasks
    n = len(ues)
    state = obs.local_state[0]
    msgs0, bytes0 = coord.counter.snapshot()
    issued = time.time()
    frame = issued + cfg.window_s
    task_msgs = {}
    for i, ue in enumerate(ues):
        deadline = cfg.deadline_factor * float(state[i, 1]) if cfg.deadline_factor > 0 else 0.0
        task_msgs[ue] = pb.Task(
            ue_id=ue, round=t, task_type=int(obs.task_id[0, i]), input_bits=float(tasks.input_bits[0, i]),
            output_bits=float(tasks.output_bits[0, i]), cycles_per_bit=float(tasks.cycles_per_bit[0, i]),
            cached=bool(tasks.cached[0, i]), deadline_seconds=deadline, issued_unix_seconds=issued,
            frame_start_unix_seconds=frame,
            radio=pb.RadioMeasurement(edge_id=int(tasks.edge[0, i]), channel_gain=float(tasks.gain[0, i]),
                                      edge_cloud_gain=float(tasks.edge_cloud_gain[0, tasks.edge[0, i]])))
        coord.publish(topics.task(ue), task_msgs[ue].SerializeToString())
    if restart is not None:  # fault drill: the broker goes down while the UEs decide and execute
        time.sleep(cfg.window_s / 3)
        restart(down_seconds=1.0)
    commanded = False
    last_send = time.time()
    end = issued + cfg.round_timeout_s
    resends = 0
    while True:
        with coord.cond:
            coord.cond.wait_for(lambda commanded=commanded: len(coord.telemetry.get(t, {})) >= n
                                or (cfg.policy == "centralized" and not commanded and len(coord.states.get(t, {})) >= n),
                                timeout=0.2)
            have_tel = {u: v for u, v in coord.telemetry.get(t, {}).items() if u in task_msgs}
            states = {u: v for u, v in coord.states.get(t, {}).items() if u in task_msgs}
        if cfg.policy == "centralized" and not commanded and len(states) >= n:
            joint = np.array([states[u].local_state for u in ues])
            d = central_decide(joint, tasks.edge[0], sim.num_edges, num_channels)
            for i, ue in enumerate(ues):
                cmd = pb.Decision(ue_id=ue, round=t, offload=int(d.offload[0, i]), channel=int(d.channel[0, i]),
                                  transmit_power_ratio=float(d.transmit_power_ratio[0, i]),
                                  cpu_freq_ratio=float(d.cpu_freq_ratio[0, i]), policy_version="central-greedy")
                coord.publish(topics.command(ue), cmd.SerializeToString())
            commanded = True
        if len(have_tel) >= n:
            break
        now = time.time()
        if now > end:
            raise RuntimeError(f"round {t}: no outcome from {sorted(set(ues) - set(have_tel))[:10]} after "
                               f"{cfg.round_timeout_s} s")
        if now - last_send > cfg.resend_after_s + clock.wall(3 * float(state[:, 1].max())):
            missing = [u for u in ues if u not in have_tel]
            for ue in missing:  # lost in a broker restart: the agent answers a duplicate from its records
                coord.publish(topics.task(ue), task_msgs[ue].SerializeToString(), count=False)
            resends += len(missing)
            last_send = now
    with coord.cond:  # a decision message may trail its telemetry after a broker restart: wait a little
        coord.cond.wait_for(lambda: len(coord.decisions.get(t, {})) >= n, timeout=2.0)
        decisions = dict(coord.decisions.get(t, {}))
        tel = dict(coord.telemetry.get(t, {}))
    msgs1, bytes1 = coord.counter.snapshot()
    dec = [decisions.get(u) or tel[u].decision for u in ues]
    decision = Decision(
        offload=np.array([[int(d.offload) for d in dec]]), channel=np.array([[d.channel for d in dec]]),
        transmit_power_ratio=np.array([[d.transmit_power_ratio for d in dec]]),
        cpu_freq_ratio=np.array([[d.cpu_freq_ratio for d in dec]]))
    predicted = evaluate_round(params, tasks, decision)
    outcomes = [tel[u].outcome for u in ues]
    exec_s = np.array([o.execution_seconds for o in outcomes])
    energy = np.array([o.energy_joules for o in outcomes])
    measured_rt = float(exec_s.max())
    measured_e = float(energy.sum())
    offload = decision.offload[0]
    leaf_msgs = {k: msgs1.get(k, 0) - msgs0.get(k, 0) for k in msgs1}
    leaf_bytes = {k: bytes1.get(k, 0) - bytes0.get(k, 0) for k in bytes1}
    return {
        "round": t,
        "measured_round_time_s": measured_rt,
        "predicted_round_time_s": float(predicted.round_time_s[0]),
        "measured_energy_j": measured_e,
        "predicted_energy_j": float(predicted.total_energy_j[0]),
        "measured_objective": params.w_time * measured_rt + params.w_energy * measured_e,
        "predicted_objective": float(predicted.objective[0]),
        "offload_mix": {name: int((offload == x).sum()) for x, name in _OFFLOAD_NAME.items()},
        "fallbacks": int(sum(1 for o in outcomes if o.fallback_reason)),
        "decision_latency_s": [float(d.decision_wall_seconds) for d in dec],
        "end_to_end_decision_s": [float(d.decided_unix_seconds - issued) for d in dec],
        "per_ue_measured_s": exec_s.tolist(),
        "per_ue_predicted_s": predicted.execution_time_s[0].tolist(),
        "per_ue_offload": offload.tolist(),
        "per_ue_fallback": [o.fallback_reason for o in outcomes],
        "per_ue_late": [bool(d.decided_unix_seconds > frame) for d in dec],
        "wall_seconds": time.time() - issued,
        "messages": int(sum(leaf_msgs.values())),
        "bytes": int(sum(leaf_bytes.values())),
        "messages_by_topic": leaf_msgs,
        "bytes_by_topic": leaf_bytes,
        "resent_tasks": resends,
        "late_decisions": int(sum(1 for d in dec if d.decided_unix_seconds > frame)),
        "decisions_received": len(decisions),
        "_decision": decision,
    }


def summarize(cfg: EmulateConfig, sc: Scenario, rounds: list[dict], agents: list[dict], coord) -> dict:
    lat = np.concatenate([r["decision_latency_s"] for r in rounds]) if rounds else np.zeros(1)
    e2e = np.concatenate([r["end_to_end_decision_s"] for r in rounds]) if rounds else np.zeros(1)
    meas = np.array([r["measured_round_time_s"] for r in rounds])
    pred = np.array([r["predicted_round_time_s"] for r in rounds])
    rel = (meas - pred) / np.maximum(pred, 1e-12)
    mix = {k: int(sum(r["offload_mix"][k] for r in rounds)) for k in ("local", "edge", "cloud")}
    expected = cfg.ues * len(rounds)
    received = sum(r["decisions_received"] for r in rounds)
    return {
        "config": cfg.model_dump(mode="json"),
        "scenario": sc.name,
        "rounds": len(rounds),
        "ues": cfg.ues,
        "decisions_expected": expected,
        "decisions_received": received,
        # a decision is lost when it reached the coordinator neither on the decision topic
        # nor inside the UE's telemetry; every round ends only when all telemetry is in
        "lost_decisions": expected - sum(len(r["per_ue_measured_s"]) for r in rounds),
        "decision_messages_missing": expected - received,
        "mean_measured_round_time_s": float(meas.mean()) if len(meas) else 0.0,
        "mean_predicted_round_time_s": float(pred.mean()) if len(pred) else 0.0,
        "round_time_rel_error_mean": float(np.mean(np.abs(rel))) if len(rel) else 0.0,
        "round_time_rel_error_max": float(np.max(np.abs(rel))) if len(rel) else 0.0,
        "rounds_within_10pct": int(np.sum(np.abs(rel) <= 0.10)),
        "mean_measured_energy_j": float(np.mean([r["measured_energy_j"] for r in rounds])),
        "mean_predicted_energy_j": float(np.mean([r["predicted_energy_j"] for r in rounds])),
        "offload_mix": mix,
        "fallbacks": int(sum(r["fallbacks"] for r in rounds)),
        "decision_latency_p50_s": float(np.percentile(lat, 50)),
        "decision_latency_p99_s": float(np.percentile(lat, 99)),
        "end_to_end_decision_p50_s": float(np.percentile(e2e, 50)),
        "end_to_end_decision_p99_s": float(np.percentile(e2e, 99)),
        "messages_per_round": float(np.mean([r["messages"] for r in rounds])),
        "bytes_per_round": float(np.mean([r["bytes"] for r in rounds])),
        "messages_by_topic_per_round": _mean_dict([r["messages_by_topic"] for r in rounds]),
        "bytes_by_topic_per_round": _mean_dict([r["bytes_by_topic"] for r in rounds]),
        "telemetry_duplicates": coord.duplicates,
        "decision_duplicates": coord.duplicate_decisions,
        "telemetry_out_of_order": coord.out_of_order,
        "coordinator_dropped_payloads": coord.dropped,
        "unknown_senders": coord.unknown_senders,
        "resent_tasks": int(sum(r["resent_tasks"] for r in rounds)),
        "late_decisions": int(sum(r["late_decisions"] for r in rounds)),
        "decision_window_s": cfg.window_s,
        "wall_seconds_per_round": float(np.mean([r["wall_seconds"] for r in rounds])),
        "agents": agents,
        "per_round": rounds,
    }


def _mean_dict(ds: list[dict]) -> dict:
    keys = sorted({k for d in ds for k in d})
    return {k: float(np.mean([d.get(k, 0) for d in ds])) for k in keys}


def format_table(summary: dict) -> str:
    rows = [
        ("rounds x UEs", f"{summary['rounds']} x {summary['ues']}", ""),
        ("round time (s)", f"{summary['mean_measured_round_time_s']:.3f}", f"{summary['mean_predicted_round_time_s']:.3f}"),
        ("  |rel. error| mean / max", f"{summary['round_time_rel_error_mean']:.1%} / {summary['round_time_rel_error_max']:.1%}",
         f"{summary['rounds_within_10pct']}/{summary['rounds']} rounds within 10%"),
        ("energy per round (J)", f"{summary['mean_measured_energy_j']:.3f}", f"{summary['mean_predicted_energy_j']:.3f}"),
        ("offload mix L/E/C", "/".join(str(summary["offload_mix"][k]) for k in ("local", "edge", "cloud")), "same decisions"),
        ("fallbacks to local", str(summary["fallbacks"]), ""),
        ("decided after the uplink frame", str(summary["late_decisions"]), f"frame {summary['decision_window_s'] * 1e3:.0f} ms after issue"),
        ("decision latency p50 / p99 (ms)",
         f"{summary['decision_latency_p50_s'] * 1e3:.2f} / {summary['decision_latency_p99_s'] * 1e3:.2f}", "0 (instant)"),
        ("task issued -> decision p50 / p99 (ms)",
         f"{summary['end_to_end_decision_p50_s'] * 1e3:.2f} / {summary['end_to_end_decision_p99_s'] * 1e3:.2f}", ""),
        ("MQTT messages / round", f"{summary['messages_per_round']:.1f}", ""),
        ("MQTT bytes / round", f"{summary['bytes_per_round']:.0f}", ""),
        ("lost decisions", str(summary["lost_decisions"]),
         f"{summary['decision_messages_missing']} decision messages only in telemetry"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "measured", "")])
    lines = [f"{'':<{w0}}  {'measured':>{w1}}  simulator", "-" * (w0 + w1 + 30)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def plot_summary(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = summary["per_round"]
    x = [r["round"] for r in rounds]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.plot(x, [r["measured_round_time_s"] for r in rounds], "o-", label="measured (emulated)")
    ax.plot(x, [r["predicted_round_time_s"] for r in rounds], "x--", label="simulator")
    ax.set_xlabel("round")
    ax.set_ylabel("round time T_t (s)")
    ax.legend()
    ax = axes[1]
    for k, c in (("local", "tab:blue"), ("edge", "tab:orange"), ("cloud", "tab:green")):
        bottom = [sum(r["offload_mix"][j] for j in ("local", "edge", "cloud")[: ("local", "edge", "cloud").index(k)]) for r in rounds]
        ax.bar(x, [r["offload_mix"][k] for r in rounds], bottom=bottom, label=k, color=c)
    ax.set_xlabel("round")
    ax.set_ylabel("UEs")
    ax.set_title("offload mix")
    ax.legend()
    ax = axes[2]
    lat = np.concatenate([r["decision_latency_s"] for r in rounds]) * 1e3
    ax.hist(lat, bins=40)
    ax.set_xlabel("decision latency (ms)")
    ax.set_title(f"p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms")
    fig.suptitle(f"edgepilot emulate: {summary['ues']} UEs, policy {summary['config']['policy']}, "
                 f"{summary['messages_per_round']:.0f} msgs / {summary['bytes_per_round'] / 1e3:.1f} kB per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
