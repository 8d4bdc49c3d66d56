"""Run one or more UE agents in this process until SIGTERM / SIGINT.

``python -m edgepilot.emulation.host SPEC.json``: the spec names the broker, the state
root, the policy and the agents (``[{"ue_id": ..., "edge_id": ...}]``). ``edgepilot
emulate`` starts a few of these hosts to run a fleet on a laptop; on a device one host
runs one agent (``edgepilot agent``). Prints ``ready`` once every agent has started,
writes the agents' summaries to ``summary_path`` (when given) on exit.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

from edgepilot.edge_agent.fleet.agent import AgentConfig, UEAgent, write_summary
from edgepilot.edge_agent.fleet.policy import AlwaysLocalPolicy, LocalThresholdPolicy, Policy, load_bundle_policy

log = logging.getLogger("edgepilot.fleet.host")


class LockedPolicy:
    """One runtime shared by the agents of a host process; each call still carries one
    UE's own local state only. The lock serializes calls (IO bindings are per session)."""

    def __init__(self, policy: Policy) -> None:
        self.inner = policy
        self.version = policy.version
        self._lock = threading.Lock()

    def decide(self, local_states):
        with self._lock:
            return self.inner.decide(local_states)


def make_policy(spec: dict, ue_id: str, num_channels: int | None, shared: dict) -> Policy | None:
    kind = spec.get("kind", "threshold")
    if kind in ("dtac", "bundle"):
        if "runtime" not in shared:
            shared["runtime"] = LockedPolicy(load_bundle_policy(spec["bundle"], spec.get("trusted_keys", []),
                                                                profile=spec.get("profile")))
        return shared["runtime"]
    if kind == "threshold":
        return LocalThresholdPolicy(num_channels, ue_id=ue_id) if num_channels else None
    if kind == "local":
        return AlwaysLocalPolicy()
    raise ValueError(f"unknown policy kind {kind!r} (dtac, threshold, local)")


def build_agents(spec: dict) -> list[UEAgent]:
    root = Path(spec["state_root"])
    shared: dict = {}
    agents = []
    # the agents' passwords stay in the credentials file (never copied into the spec)
    creds = json.loads(Path(spec["password_file"]).read_text()) if spec.get("password_file") else {}
    for a in spec["agents"]:
        if creds and a["ue_id"] not in creds:
            raise ValueError(f"{spec['password_file']}: no password for {a['ue_id']}")
        if creds:
            a = {**a, "username": a["ue_id"], "password": creds[a["ue_id"]]}
        cfg = AgentConfig(
            ue_id=a["ue_id"], edge_id=int(a["edge_id"]), state_dir=root / a["ue_id"],
            broker_host=spec.get("broker_host", "127.0.0.1"), broker_port=int(spec.get("broker_port", 1883)),
            username=a.get("username") or spec.get("username"), password=a.get("password") or spec.get("password"),
            tls_ca=spec.get("tls_ca"), tls_cert=a.get("tls_cert"), tls_key=a.get("tls_key"),
            hardware_profile=spec.get("hardware_profile", "jetson-nano"), mode=spec.get("mode", "decentralized"),
            wire_scale=float(spec.get("wire_scale", 1.0)), command_timeout_s=float(spec.get("command_timeout_s", 5.0)),
            trusted_keys=list(spec.get("policy", {}).get("trusted_keys", [])),
            keepalive_s=int(spec.get("keepalive_s", 10)),
        )
        updater = None
        if spec.get("ota_root") or spec.get("policy", {}).get("ota"):
            from edgepilot.edge_agent.fleet.ota import PolicyUpdater

            updater = PolicyUpdater(cfg.state_dir / "bundles", cfg.trusted_keys, profile=spec.get("runtime_profile"))
        policy = make_policy(spec.get("policy", {}), cfg.ue_id, spec.get("num_channels"), shared)
        agents.append(UEAgent(cfg, policy=policy, updater=updater))
    return agents


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgepilot.emulation.host SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    # many agents share one interpreter: hand the GIL over sooner than every 5 ms, so a
    # task that arrives is decided without waiting behind the other agents' threads
    sys.setswitchinterval(float(spec.get("switch_interval_s", 0.0005)))
    logging.basicConfig(level=getattr(logging, spec.get("log_level", "WARNING")),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    agents = build_agents(spec)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    for a in agents:
        a.start()
    print("ready", flush=True)
    done.wait()
    threads = [threading.Thread(target=a.stop, kwargs={"flush_timeout": float(spec.get("flush_timeout_s", 10))})
               for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if spec.get("summary_path"):
        write_summary(agents, Path(spec["summary_path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
