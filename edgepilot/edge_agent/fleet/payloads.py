"""Parse and range-check fleet payloads.

Every ``parse_*`` function takes the raw MQTT payload and returns the protobuf message,
or raises :class:`PayloadError` naming the field and the bound. The agent logs and drops
what raises and keeps running.
"""

from __future__ import annotations

import math
import re

from google.protobuf.message import DecodeError

from edgepilot.edge_agent.fleet.topics import UE_ID_PATTERN
from edgepilot.v1 import fleet_pb2 as pb

#: Bounds of what a task may carry. Table I: S_i in [5, 20] Mbit, S_o in [2, 40] Mbit,
#: C in [600, 1200] cycles/bit; these bounds are wide around that and reject garbage.
MAX_TASK_BITS = 1e10
MAX_CYCLES_PER_BIT = 1e6
#: S_i x C of one task: 40 x Table I's largest (20 Mbit x 1200); more would hold a UE's
#: only worker for hours of emulated (or real) compute
MAX_TASK_CYCLES = 1e12
MAX_DEADLINE_SECONDS = 1e6
MAX_CHANNELS = 256
MAX_EDGE_ID = 4096
MAX_PAYLOAD_BYTES = 1 << 20  # MQTT control payloads are small; tasks travel over gRPC
#: A task's uplink frame opens at most this many seconds after its issue time (the
#: decision window is milliseconds; a later frame start would hold an agent's worker).
MAX_FRAME_AHEAD_SECONDS = 60.0
#: Telemetry bounds: an emulated round longer than a day, or a UE spending more than
#: 1 MJ on one task, is garbage (a 10 W device would need a day).
MAX_TELEMETRY_SECONDS = 86400.0
MAX_TELEMETRY_JOULES = 1e6
MAX_RATE_BPS = 1e12
_PORT = re.compile(r"^[0-9]{1,5}$")  # ASCII digits only ("\u00b2".isdigit() is True, int() of it fails)


class PayloadError(ValueError):
    """A payload that does not parse or carries out-of-range values."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _parse(cls, raw: bytes):
    if not isinstance(raw, (bytes, bytearray)):
        raise PayloadError(f"{cls.__name__}: payload must be bytes")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{cls.__name__}: payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    msg = cls()
    try:
        msg.ParseFromString(bytes(raw))
    except (DecodeError, ValueError, RuntimeError) as err:
        raise PayloadError(f"{cls.__name__}: does not parse: {err}") from None
    return msg


def check_finite(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    """PayloadError naming ``name`` unless ``value`` is finite and in [lo, hi] ((lo, hi] with ``lo_open``)."""
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bound = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise PayloadError(f"{name} = {value!r} is outside {bound}", name)


def _ue_id(name: str, value: str, expected: str | None) -> None:
    if not UE_ID_PATTERN.match(value or ""):
        raise PayloadError(f"{name} = {value!r} is not a valid UE id", name)
    if expected is not None and value != expected:
        raise PayloadError(f"{name} = {value!r} is not this UE ({expected!r})", name)


def check_radio(radio: pb.RadioMeasurement, prefix: str = "radio") -> None:
    if radio.edge_id > MAX_EDGE_ID:
        raise PayloadError(f"{prefix}.edge_id = {radio.edge_id} exceeds {MAX_EDGE_ID}", f"{prefix}.edge_id")
    check_finite(f"{prefix}.channel_gain", radio.channel_gain, 0.0, 1.0, lo_open=True)
    check_finite(f"{prefix}.edge_cloud_gain", radio.edge_cloud_gain, 0.0, 1.0, lo_open=True)


def check_task(task: pb.Task, ue_id: str | None = None) -> pb.Task:
    _ue_id("ue_id", task.ue_id, ue_id)
    check_finite("input_bits", task.input_bits, 0.0, MAX_TASK_BITS, lo_open=True)
    check_finite("output_bits", task.output_bits, 0.0, MAX_TASK_BITS)
    check_finite("cycles_per_bit", task.cycles_per_bit, 0.0, MAX_CYCLES_PER_BIT, lo_open=True)
    check_finite("input_bits x cycles_per_bit", task.input_bits * task.cycles_per_bit, 0.0, MAX_TASK_CYCLES)
    check_finite("deadline_seconds", task.deadline_seconds, 0.0, MAX_DEADLINE_SECONDS)
    check_finite("issued_unix_seconds", task.issued_unix_seconds, 0.0, 1e11)
    if task.frame_start_unix_seconds:
        check_finite("frame_start_unix_seconds", task.frame_start_unix_seconds, task.issued_unix_seconds - MAX_FRAME_AHEAD_SECONDS,
                task.issued_unix_seconds + MAX_FRAME_AHEAD_SECONDS)
    if not task.HasField("radio"):
        raise PayloadError("radio is missing", "radio")
    check_radio(task.radio)
    return task


def parse_task(raw: bytes, ue_id: str | None = None) -> pb.Task:
    return check_task(_parse(pb.Task, raw), ue_id)


def check_decision(d: pb.Decision, ue_id: str | None = None, num_channels: int | None = None) -> pb.Decision:
    _ue_id("ue_id", d.ue_id, ue_id)
    if d.offload not in pb.OffloadTarget.values():
        raise PayloadError(f"offload = {d.offload} is not one of {sorted(pb.OffloadTarget.values())}", "offload")
    limit = MAX_CHANNELS if num_channels is None else num_channels
    if d.channel >= limit:
        raise PayloadError(f"channel = {d.channel} is outside [0, {limit - 1}]", "channel")
    check_finite("transmit_power_ratio", d.transmit_power_ratio, 0.0, 1.0, lo_open=True)
    check_finite("cpu_freq_ratio", d.cpu_freq_ratio, 0.0, 1.0, lo_open=True)
    return d


def parse_decision(raw: bytes, ue_id: str | None = None, num_channels: int | None = None) -> pb.Decision:
    return check_decision(_parse(pb.Decision, raw), ue_id, num_channels)


def check_edge_info(info: pb.EdgeServerInfo) -> pb.EdgeServerInfo:
    if info.edge_id > MAX_EDGE_ID:
        raise PayloadError(f"edge_id = {info.edge_id} exceeds {MAX_EDGE_ID}", "edge_id")
    if not 1 <= info.num_channels <= MAX_CHANNELS:
        raise PayloadError(f"num_channels = {info.num_channels} is outside [1, {MAX_CHANNELS}]", "num_channels")
    for name in ("edge_cpu_hz", "cloud_cpu_hz", "channel_bandwidth_hz"):
        check_finite(name, getattr(info, name), 0.0, 1e15, lo_open=True)
    for name in ("noise_power_w", "edge_power_w", "cloud_power_w"):
        check_finite(name, getattr(info, name), 0.0, 1e6, lo_open=True)
    check_finite("time_scale", info.time_scale, 0.0, 10.0, lo_open=True)
    check_finite("w_time", info.w_time, 0.0, 1e6)
    check_finite("w_energy", info.w_energy, 0.0, 1e6)
    host, _, port = info.grpc_address.rpartition(":")
    if not host or len(info.grpc_address) > 255 or not _PORT.match(port) or not 0 < int(port) < 65536:
        raise PayloadError(f"grpc_address = {info.grpc_address!r} is not host:port", "grpc_address")
    return info


def parse_edge_info(raw: bytes) -> pb.EdgeServerInfo:
    return check_edge_info(_parse(pb.EdgeServerInfo, raw))


def parse_policy_announcement(raw: bytes) -> pb.PolicyAnnouncement:
    ann = _parse(pb.PolicyAnnouncement, raw)
    if not ann.version or len(ann.version) > 128:
        raise PayloadError(f"version = {ann.version!r} must be 1-128 characters", "version")
    if not ann.bundle_uri:
        raise PayloadError("bundle_uri is empty", "bundle_uri")
    if ann.manifest_sha256 and (len(ann.manifest_sha256) != 64 or any(c not in "0123456789abcdef" for c in ann.manifest_sha256)):
        raise PayloadError("manifest_sha256 must be 64 lowercase hex digits", "manifest_sha256")
    return ann


def parse_status(raw: bytes, ue_id: str | None = None) -> pb.AgentStatus:
    st = _parse(pb.AgentStatus, raw)
    _ue_id("ue_id", st.ue_id, ue_id)
    return st


def check_outcome(o: pb.Outcome, ue_id: str | None = None, prefix: str = "outcome") -> pb.Outcome:
    _ue_id(f"{prefix}.ue_id", o.ue_id, ue_id)
    for name in ("requested", "executed"):
        if getattr(o, name) not in pb.OffloadTarget.values():
            raise PayloadError(f"{prefix}.{name} = {getattr(o, name)} is not an offload target", f"{prefix}.{name}")
    for name in ("execution_seconds", "compute_seconds", "communication_seconds", "queue_seconds", "wall_seconds"):
        check_finite(f"{prefix}.{name}", getattr(o, name), 0.0, MAX_TELEMETRY_SECONDS)
    check_finite(f"{prefix}.energy_joules", o.energy_joules, 0.0, MAX_TELEMETRY_JOULES)
    check_finite(f"{prefix}.uplink_rate_bps", o.uplink_rate_bps, 0.0, MAX_RATE_BPS)
    if len(o.fallback_reason) > 1000:
        raise PayloadError(f"{prefix}.fallback_reason is {len(o.fallback_reason)} characters (at most 1000)",
                           f"{prefix}.fallback_reason")
    return o


def check_telemetry(t: pb.Telemetry, ue_id: str | None = None, max_round: int | None = None) -> pb.Telemetry:
    """A UE's telemetry, bound to its sender: ``ue_id`` (the UE of the topic it came on)
    must be the one in the payload, its decision and its outcome; the round must be the
    decision's and the outcome's and (with ``max_round``) within the run; every time,
    energy and rate finite and in range. A round must never close on anything else."""
    _ue_id("ue_id", t.ue_id, ue_id)
    if not t.HasField("decision") or not t.HasField("outcome"):
        raise PayloadError("decision and outcome are required", "decision" if not t.HasField("decision") else "outcome")
    check_decision(t.decision, t.ue_id)
    check_outcome(t.outcome, t.ue_id)
    if t.outcome.round != t.decision.round:
        raise PayloadError(f"outcome.round = {t.outcome.round} is not decision.round = {t.decision.round}", "outcome.round")
    if max_round is not None and t.decision.round > max_round:
        raise PayloadError(f"decision.round = {t.decision.round} is beyond this run's rounds (last {max_round})",
                           "decision.round")
    check_finite("decision.decision_wall_seconds", t.decision.decision_wall_seconds, 0.0, MAX_TELEMETRY_SECONDS)
    check_finite("created_unix_seconds", t.created_unix_seconds, 0.0, 1e11)
    return t


def parse_telemetry(raw: bytes, ue_id: str | None = None, max_round: int | None = None) -> pb.Telemetry:
    return check_telemetry(_parse(pb.Telemetry, raw), ue_id, max_round)


def parse_state_report(raw: bytes, ue_id: str | None = None) -> pb.LocalStateReport:
    r = _parse(pb.LocalStateReport, raw)
    _ue_id("ue_id", r.ue_id, ue_id)
    if len(r.local_state) != 6:
        raise PayloadError(f"local_state has {len(r.local_state)} values, expected 6", "local_state")
    for i, v in enumerate(r.local_state):
        check_finite(f"local_state[{i}]", v, 0.0, 1e12)
    return r
