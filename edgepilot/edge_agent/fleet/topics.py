"""The fleet's MQTT topic tree, versioned by its first two levels (``edgepilot/v1``).

=================================  =========  ======  =====================================
topic                              payload    QoS     who publishes
=================================  =========  ======  =====================================
edgepilot/v1/ue/{ue}/task          Task       1       the UE's task source (coordinator)
edgepilot/v1/ue/{ue}/decision      Decision   1       the agent
edgepilot/v1/ue/{ue}/telemetry     Telemetry  1       the agent (decision + outcome, in order)
edgepilot/v1/ue/{ue}/status        AgentStatus 1, retained; last will = OFFLINE
edgepilot/v1/ue/{ue}/state         LocalStateReport 1  the agent, centralized policy only
edgepilot/v1/ue/{ue}/command       Decision   1       the central controller (centralized only)
edgepilot/v1/edge/{k}/info         EdgeServerInfo 1, retained; read once by the agent
edgepilot/v1/policy                PolicyAnnouncement 1, retained
=================================  =========  ======  =====================================

The Mosquitto ACL (``hardware/mosquitto/acl``) lets a UE publish only under
``edgepilot/v1/ue/{its id}/...`` and read only its own task / command topics.
"""

from __future__ import annotations

import re

VERSION = "v1"
ROOT = f"edgepilot/{VERSION}"
POLICY = f"{ROOT}/policy"

#: UE ids become topic levels and broker user names: keep them plain.
UE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_ue_id(ue_id: str) -> str:
    if not isinstance(ue_id, str) or not UE_ID_PATTERN.match(ue_id):
        raise ValueError(f"ue_id must match {UE_ID_PATTERN.pattern}, got {ue_id!r}")
    return ue_id


def ue(ue_id: str, leaf: str) -> str:
    return f"{ROOT}/ue/{check_ue_id(ue_id)}/{leaf}"


def task(ue_id: str) -> str:
    return ue(ue_id, "task")


def decision(ue_id: str) -> str:
    return ue(ue_id, "decision")


def telemetry(ue_id: str) -> str:
    return ue(ue_id, "telemetry")


def status(ue_id: str) -> str:
    return ue(ue_id, "status")


def state(ue_id: str) -> str:
    return ue(ue_id, "state")


def command(ue_id: str) -> str:
    return ue(ue_id, "command")


def edge_info(edge_id: int) -> str:
    return f"{ROOT}/edge/{int(edge_id)}/info"


def all_ues(leaf: str) -> str:
    """Wildcard subscription over every UE's ``leaf`` (coordinator / dashboards)."""
    return f"{ROOT}/ue/+/{leaf}"


def ue_of(topic: str) -> str | None:
    """The UE id of an ``edgepilot/v1/ue/{ue}/...`` topic, else None."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[0] == "edgepilot" and parts[1] == VERSION and parts[2] == "ue":
        return parts[3]
    return None
def policy_topic() -> str:
    return POLICY
