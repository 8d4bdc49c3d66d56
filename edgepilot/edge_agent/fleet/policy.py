"""What the agent asks for a decision: the ``Policy`` protocol.

A policy maps local states (14), shaped (B, 6), to the decision dict of
:func:`edgepilot.edge_agent.actions.decode_actions` (``offload``, ``channel``,
``transmit_power_ratio``, ``cpu_freq_ratio``, each (B,)). The DTAC actor runs through
:class:`edgepilot.edge_agent.runtime.PolicyRuntime` (onnxruntime) from a signed bundle; this
module only adapts it (:func:`load_bundle_policy`) and adds one model-free policy, a
threshold rule on the local state, for tests and for a fleet without a trained bundle.
"""

from __future__ import annotations

import logging
import zlib
from typing import Protocol, runtime_checkable

import numpy as np

from edgepilot.edge_agent.actions import MIN_RATIO
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, LOCAL_STATE_DIM

log = logging.getLogger("edgepilot.fleet.policy")

DECISION_KEYS = ("offload", "channel", "transmit_power_ratio", "cpu_freq_ratio")


@runtime_checkable
class Policy(Protocol):
    version: str

    def decide(self, local_states: np.ndarray) -> dict[str, np.ndarray]: ...


def check_decisions(decisions: dict, batch: int, num_channels: int) -> dict[str, np.ndarray]:
    """Raise ValueError unless ``decisions`` is a well-formed decision dict."""
    out = {}
    for key in DECISION_KEYS:
        if key not in decisions:
            raise ValueError(f"policy output lacks {key!r}")
        arr = np.asarray(decisions[key]).reshape(-1)
        if arr.shape[0] != batch:
            raise ValueError(f"policy output {key!r} has {arr.shape[0]} rows, expected {batch}")
        if not np.all(np.isfinite(arr.astype(np.float64))):
            raise ValueError(f"policy output {key!r} is not finite")
        out[key] = arr
    if np.any((out["offload"] < LOCAL) | (out["offload"] > CLOUD)):
        raise ValueError("policy output 'offload' outside {0, 1, 2}")
    if np.any((out["channel"] < 0) | (out["channel"] >= num_channels)):
        raise ValueError(f"policy output 'channel' outside [0, {num_channels - 1}]")
    for key in ("transmit_power_ratio", "cpu_freq_ratio"):
        if np.any((out[key] <= 0) | (out[key] > 1)):
            raise ValueError(f"policy output {key!r} outside (0, 1]")
    return out


class LocalThresholdPolicy:
    """Model-free rule on the local state alone: offload to the edge (or the cloud) when
    its lower-bound time (T1*(x) + T21*(1) [+ T22*(2)]) is below ``margin`` times the local
    time T1*(0). The margin leaves room for the queue the UE cannot see. The channel is
    a hash of the UE id (spreads a cell's UEs over the L channels); a = b = 1."""

    def __init__(self, num_channels: int, margin: float = 0.25, ue_id: str = "", version: str = "local-threshold") -> None:
        self.num_channels = num_channels
        self.margin = margin
        self.channel = zlib.crc32(ue_id.encode()) % num_channels if ue_id else 0
        self.version = version

    def decide(self, local_states: np.ndarray) -> dict[str, np.ndarray]:
        s = np.asarray(local_states, dtype=np.float64).reshape(-1, LOCAL_STATE_DIM)
        local_t = s[:, 1]
        edge_t = s[:, 2] + s[:, 3]
        cloud_t = s[:, 4] + s[:, 3] + s[:, 5]
        offload = np.full(len(s), LOCAL)
        best_remote = np.where(edge_t <= cloud_t, EDGE, CLOUD)
        remote_t = np.minimum(edge_t, cloud_t)
        offload = np.where(remote_t < self.margin * local_t, best_remote, offload)
        n = len(s)
        return {
            "offload": offload.astype(np.int64),
            "channel": np.full(n, self.channel, dtype=np.int64),
            "transmit_power_ratio": np.ones(n),
            "cpu_freq_ratio": np.ones(n),
        }


class AlwaysLocalPolicy:
    """x = 0, b = 1 for every UE (the paper's Local baseline in LAMBO's terms)."""

    version = "always-local"

    def decide(self, local_states: np.ndarray) -> dict[str, np.ndarray]:
        n = np.asarray(local_states).reshape(-1, LOCAL_STATE_DIM).shape[0]
        return {"offload": np.zeros(n, np.int64), "channel": np.zeros(n, np.int64),
                "transmit_power_ratio": np.ones(n), "cpu_freq_ratio": np.ones(n)}


class RuntimePolicy:
    """Adapter over :class:`edgepilot.edge_agent.runtime.PolicyRuntime` (the onnxruntime actor)."""

    def __init__(self, runtime, version: str) -> None:
        self.runtime = runtime
        self.version = version

    def decide(self, local_states: np.ndarray) -> dict[str, np.ndarray]:
        out = self.runtime.decide(np.asarray(local_states, dtype=np.float32).reshape(-1, LOCAL_STATE_DIM))
        if not isinstance(out, dict):  # a runtime returning the raw actor outputs
            from edgepilot.edge_agent.actions import decode_actions

            out = decode_actions(*out)
        out = dict(out)
        for key in ("transmit_power_ratio", "cpu_freq_ratio"):
            out[key] = np.clip(np.asarray(out[key], dtype=np.float64), MIN_RATIO, 1.0)
        return out


def bundle_version(path) -> str:
    """The version string a bundle's manifest declares (``version`` or ``bundle_version``)."""
    import json
    from pathlib import Path

    p = Path(path)
    manifest = p / "manifest.json" if p.is_dir() else p
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return p.name
    for key in ("version", "bundle_version", "policy_version"):
        if key in data:
            return str(data[key])
    return p.name


def load_bundle_policy(path, trusted_keys, profile: str | None = None) -> RuntimePolicy:
    """A signed DTAC bundle through the device runtime (verification included)."""
    from edgepilot.edge_agent.runtime import PolicyRuntime  # the device runtime (issue: runtime / bundle)

    runtime = PolicyRuntime.from_bundle(path, trusted_keys, profile=profile)
    manifest = getattr(runtime, "manifest", None)
    version = getattr(manifest, "version", None) or bundle_version(path)
    return RuntimePolicy(runtime, str(version))


def self_test(policy: Policy, num_channels: int, states: np.ndarray | None = None) -> None:
    """Run a policy on fixed local states; raise ValueError unless its output is sane."""
    if states is None:
        rng = np.random.default_rng(1234)
        # plausible local states (14): received power, and the five lower-bound times
        states = np.column_stack([
            10 ** rng.uniform(-12, -8, 16),
            rng.uniform(1, 15, 16),
            rng.uniform(0.1, 3, 16),
            rng.uniform(0.05, 2, 16),
            rng.uniform(0.05, 1, 16),
            rng.uniform(0.5, 10, 16),
        ])
    check_decisions(policy.decide(states), len(states), num_channels)
