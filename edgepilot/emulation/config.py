"""Settings of ``edgepilot emulate``: one pydantic model, loadable from YAML with
:func:`edgepilot.config.load_config` and overridden with ``--set key=value``.

Each field is named after its command-line option (``edges`` is ``--edges``,
``broker_kind`` is ``--broker-kind``; ``trusted_keys`` is the repeatable
``--trusted-key``); ``round_timeout_s``, ``resend_after_s`` and ``plot`` have no option
of their own (``--set``). Bounds are field constraints, rules between fields the
validators below; an error names the field.

Imported by the CLI module of ``edgepilot agent`` too (for the options' defaults), so:
pydantic, typing annotations (Python 3.8) and nothing heavy at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgepilot.emulation.hardware import DEFAULT_TIME_SCALE

POLICIES = ("dtac", "threshold", "local", "centralized")
BROKER_KINDS = ("embedded", "mosquitto", "external")
#: the scenario schema's bounds: K edge servers, UEs per edge server
MAX_EDGES = 64
MAX_UES_PER_EDGE = 64


def parse_host_port(value: str) -> Tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError naming the form otherwise."""
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (port 0-65535), got {value!r}")
    return host, int(port)


class EmulateConfig(BaseModel):
    """An emulated fleet: broker, ``edges`` edge servers, ``ues`` UE agents, ``rounds`` rounds."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("fig5", description="scenario preset or YAML the tasks and channels are drawn from")
    policy: Literal["dtac", "threshold", "local", "centralized"] = Field(
        "dtac", description="dtac (the UEs decide alone), threshold, local, or centralized (the baseline)")
    bundle: Optional[str] = Field(
        None, description="signed DTAC bundle; none: the shipped DTAC bundle, signed on the spot with a key made here")
    trusted_keys: List[str] = Field(default_factory=list, description="public keys the bundle may be signed with")
    ues: int = Field(12, ge=1, le=MAX_EDGES * MAX_UES_PER_EDGE, description="N, UE agents")
    edges: int = Field(3, ge=1, le=MAX_EDGES, description="K, edge servers (N must be a multiple of K)")
    rounds: int = Field(10, ge=1, description="R, rounds")
    time_scale: float = Field(DEFAULT_TIME_SCALE, gt=0, le=10, description="wall seconds per emulated second")
    wire_scale: float = Field(1.0, ge=0, le=1, description="fraction of each task's bytes that really travel over gRPC")
    decision_window_ms: Optional[float] = Field(
        None, ge=1, description="task issue -> uplink frame, wall ms; none: 200 + 8 per UE (centralized 500 + 25 per UE)")
    # task deadline = factor x the UE's local time T1*(0); past it the UE gives up on the
    # offload and computes locally. 0 (default): no deadline, like the system model, so the
    # measured rounds compare like for like with its prediction (with 5 UEs on an edge
    # server, 10 x T1*(0) sent ~4% of the shipped DTAC's offloads local and put 23 of 50
    # rounds more than 10% off the prediction)
    deadline_factor: float = Field(0.0, ge=0, allow_inf_nan=False,
                                   description="task deadline = factor x the UE's local time; 0: none")
    broker_kind: Literal["embedded", "mosquitto", "external"] = Field(
        "embedded", description="embedded (amqtt, in-process), mosquitto (started here) or external (--broker)")
    broker: Optional[str] = Field(
        None, description="HOST:PORT: where an embedded / Mosquitto broker listens (default 127.0.0.1:0, a free "
                          "port) or where the external one is")
    username: Optional[str] = Field(
        None, description="MQTT user name of the coordinator on an external broker (the shipped config's is "
                          "edgepilot-coordinator); the agents connect as their UE id")
    password_file: Optional[str] = Field(
        None, description="JSON file of MQTT user name -> password (credentials.json of "
                          "python -m edgepilot.hardware.mosquitto.credentials): the coordinator's and every UE's")
    tls_ca: Optional[str] = Field(None, description="CA certificate of the broker (enables TLS to it)")
    agent_procs: int = Field(2, ge=0, description="agent-host processes (0 = threads in this process)")
    profile: str = Field("jetson-nano", description="hardware profile the UEs emulate")
    seed: int = Field(0, ge=0, description="seed of placements, tasks and fading")
    out: str = Field("runs/emulate", description="run directory (summary.json, summary.png)")
    restart_broker_at: Optional[int] = Field(None, ge=0, description="restart Mosquitto before this round (fault drill)")
    round_timeout_s: float = Field(60.0, gt=0, description="wall seconds before a round gives up on missing UEs")
    resend_after_s: float = Field(3.0, gt=0, description="wall seconds before re-sending a task that got no decision")
    plot: bool = Field(True, description="write summary.png")

    @field_validator("broker")
    @classmethod
    def _host_port(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            parse_host_port(value)
        return value

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        from edgepilot.cloud_trainer.scenario import ScenarioError, load_scenario

        try:
            load_scenario(value)
        except ScenarioError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        from edgepilot.hardware.profiles import ProfileError, load_profile

        try:
            load_profile(value)
        except ProfileError as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "EmulateConfig":
        if self.ues % self.edges:
            raise ValueError(f"ues ({self.ues}) must be a multiple of edges ({self.edges}): "
                             "every edge server gets the same number of UEs")
        if self.ues // self.edges > MAX_UES_PER_EDGE:
            raise ValueError(f"at most {MAX_UES_PER_EDGE} UEs per edge server (scenario schema), "
                             f"got ues {self.ues} / edges {self.edges}")
        if self.bundle is not None and self.policy != "dtac":
            raise ValueError(f"bundle is the policy of --policy dtac, not of --policy {self.policy}")
        if self.bundle is not None and not self.trusted_keys:
            raise ValueError("bundle needs trusted_keys (--trusted-key): the public key it is signed with")
        if self.bundle is None and self.trusted_keys:
            raise ValueError("trusted_keys (--trusted-key) needs bundle (--bundle): the default bundle is signed "
                             "with a key made on the spot")
        if self.broker_kind == "external" and (self.broker is None or self.broker_port == 0):
            raise ValueError("broker_kind external needs broker HOST:PORT with a port (--broker)")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file (--password-file) needs username (--username): the coordinator's user")
        if self.username is not None and self.password_file is None:
            raise ValueError("username (--username) needs password_file (--password-file)")
        if (self.username or self.tls_ca) and self.broker_kind != "external":
            raise ValueError("username / tls_ca (--username, --tls-ca) are for broker_kind external (--broker-kind "
                             "external): the brokers started here are local and anonymous")
        for name in ("password_file", "tls_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if self.restart_broker_at is not None:
            if self.broker_kind != "mosquitto":
                raise ValueError("restart_broker_at needs broker_kind mosquitto (--broker-kind mosquitto)")
            if self.restart_broker_at >= self.rounds:
                raise ValueError(f"restart_broker_at ({self.restart_broker_at}) must be a round before rounds "
                                 f"({self.rounds})")
        return self

    @property
    def broker_host(self) -> str:
        return parse_host_port(self.broker)[0] if self.broker else "127.0.0.1"

    @property
    def broker_port(self) -> int:
        return parse_host_port(self.broker)[1] if self.broker else 0

    @property
    def window_s(self) -> float:
        """Wall seconds from task issue to the uplink frame."""
        if self.decision_window_ms is not None:
            return self.decision_window_ms / 1e3
        if self.policy == "centralized":  # every state to the controller, then every command back
            return 0.5 + 0.025 * self.ues
        return 0.2 + 0.008 * self.ues
