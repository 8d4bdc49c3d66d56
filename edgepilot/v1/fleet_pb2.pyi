from edgepilot.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OffloadTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFLOAD_TARGET_LOCAL: _ClassVar[OffloadTarget]
    OFFLOAD_TARGET_EDGE: _ClassVar[OffloadTarget]
    OFFLOAD_TARGET_CLOUD: _ClassVar[OffloadTarget]
OFFLOAD_TARGET_LOCAL: OffloadTarget
OFFLOAD_TARGET_EDGE: OffloadTarget
OFFLOAD_TARGET_CLOUD: OffloadTarget

class RadioMeasurement(_message.Message):
    __slots__ = ("edge_id", "channel_gain", "edge_cloud_gain")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_GAIN_FIELD_NUMBER: _ClassVar[int]
    EDGE_CLOUD_GAIN_FIELD_NUMBER: _ClassVar[int]
    edge_id: int
    channel_gain: float
    edge_cloud_gain: float
    def __init__(self, edge_id: _Optional[int] = ..., channel_gain: _Optional[float] = ..., edge_cloud_gain: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("ue_id", "round", "task_type", "input_bits", "output_bits", "cycles_per_bit", "cached", "deadline_seconds", "radio", "issued_unix_seconds", "frame_start_unix_seconds")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_BITS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BITS_FIELD_NUMBER: _ClassVar[int]
    CYCLES_PER_BIT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RADIO_FIELD_NUMBER: _ClassVar[int]
    ISSUED_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAME_START_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    round: int
    task_type: int
    input_bits: float
    output_bits: float
    cycles_per_bit: float
    cached: bool
    deadline_seconds: float
    radio: RadioMeasurement
    issued_unix_seconds: float
    frame_start_unix_seconds: float
    def __init__(self, ue_id: _Optional[str] = ..., round: _Optional[int] = ..., task_type: _Optional[int] = ..., input_bits: _Optional[float] = ..., output_bits: _Optional[float] = ..., cycles_per_bit: _Optional[float] = ..., cached: bool = ..., deadline_seconds: _Optional[float] = ..., radio: _Optional[_Union[RadioMeasurement, _Mapping]] = ..., issued_unix_seconds: _Optional[float] = ..., frame_start_unix_seconds: _Optional[float] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("ue_id", "round", "offload", "channel", "transmit_power_ratio", "cpu_freq_ratio", "policy_version", "decision_wall_seconds", "decided_unix_seconds")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TRANSMIT_POWER_RATIO_FIELD_NUMBER: _ClassVar[int]
    CPU_FREQ_RATIO_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    round: int
    offload: OffloadTarget
    channel: int
    transmit_power_ratio: float
    cpu_freq_ratio: float
    policy_version: str
    decision_wall_seconds: float
    decided_unix_seconds: float
    def __init__(self, ue_id: _Optional[str] = ..., round: _Optional[int] = ..., offload: _Optional[_Union[OffloadTarget, str]] = ..., channel: _Optional[int] = ..., transmit_power_ratio: _Optional[float] = ..., cpu_freq_ratio: _Optional[float] = ..., policy_version: _Optional[str] = ..., decision_wall_seconds: _Optional[float] = ..., decided_unix_seconds: _Optional[float] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("ue_id", "round", "requested", "executed", "fallback_reason", "execution_seconds", "compute_seconds", "communication_seconds", "queue_seconds", "energy_joules", "uplink_rate_bps", "wall_seconds", "result_bytes")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMMUNICATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    UPLINK_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    round: int
    requested: OffloadTarget
    executed: OffloadTarget
    fallback_reason: str
    execution_seconds: float
    compute_seconds: float
    communication_seconds: float
    queue_seconds: float
    energy_joules: float
    uplink_rate_bps: float
    wall_seconds: float
    result_bytes: int
    def __init__(self, ue_id: _Optional[str] = ..., round: _Optional[int] = ..., requested: _Optional[_Union[OffloadTarget, str]] = ..., executed: _Optional[_Union[OffloadTarget, str]] = ..., fallback_reason: _Optional[str] = ..., execution_seconds: _Optional[float] = ..., compute_seconds: _Optional[float] = ..., communication_seconds: _Optional[float] = ..., queue_seconds: _Optional[float] = ..., energy_joules: _Optional[float] = ..., uplink_rate_bps: _Optional[float] = ..., wall_seconds: _Optional[float] = ..., result_bytes: _Optional[int] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("ue_id", "seq", "decision", "outcome", "created_unix_seconds", "queued_records", "dropped_records")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    seq: int
    decision: Decision
    outcome: Outcome
    created_unix_seconds: float
    queued_records: int
    dropped_records: int
    def __init__(self, ue_id: _Optional[str] = ..., seq: _Optional[int] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, _Mapping]] = ..., created_unix_seconds: _Optional[float] = ..., queued_records: _Optional[int] = ..., dropped_records: _Optional[int] = ...) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("ue_id", "state", "policy_version", "hardware_profile", "unix_seconds", "rejected_policy_version", "rejected_reason", "rounds_done", "previous_policy_version")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNKNOWN: _ClassVar[AgentStatus.State]
        STATE_ONLINE: _ClassVar[AgentStatus.State]
        STATE_OFFLINE: _ClassVar[AgentStatus.State]
    STATE_UNKNOWN: AgentStatus.State
    STATE_ONLINE: AgentStatus.State
    STATE_OFFLINE: AgentStatus.State
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REASON_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    state: AgentStatus.State
    policy_version: str
    hardware_profile: str
    unix_seconds: float
    rejected_policy_version: str
    rejected_reason: str
    rounds_done: int
    previous_policy_version: str
    def __init__(self, ue_id: _Optional[str] = ..., state: _Optional[_Union[AgentStatus.State, str]] = ..., policy_version: _Optional[str] = ..., hardware_profile: _Optional[str] = ..., unix_seconds: _Optional[float] = ..., rejected_policy_version: _Optional[str] = ..., rejected_reason: _Optional[str] = ..., rounds_done: _Optional[int] = ..., previous_policy_version: _Optional[str] = ...) -> None: ...

class EdgeServerInfo(_message.Message):
    __slots__ = ("edge_id", "grpc_address", "edge_cpu_hz", "cloud_cpu_hz", "num_channels", "channel_bandwidth_hz", "noise_power_w", "edge_power_w", "cloud_power_w", "time_scale", "w_time", "w_energy")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EDGE_CPU_HZ_FIELD_NUMBER: _ClassVar[int]
    CLOUD_CPU_HZ_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_BANDWIDTH_HZ_FIELD_NUMBER: _ClassVar[int]
    NOISE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    EDGE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    CLOUD_POWER_W_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    W_TIME_FIELD_NUMBER: _ClassVar[int]
    W_ENERGY_FIELD_NUMBER: _ClassVar[int]
    edge_id: int
    grpc_address: str
    edge_cpu_hz: float
    cloud_cpu_hz: float
    num_channels: int
    channel_bandwidth_hz: float
    noise_power_w: float
    edge_power_w: float
    cloud_power_w: float
    time_scale: float
    w_time: float
    w_energy: float
    def __init__(self, edge_id: _Optional[int] = ..., grpc_address: _Optional[str] = ..., edge_cpu_hz: _Optional[float] = ..., cloud_cpu_hz: _Optional[float] = ..., num_channels: _Optional[int] = ..., channel_bandwidth_hz: _Optional[float] = ..., noise_power_w: _Optional[float] = ..., edge_power_w: _Optional[float] = ..., cloud_power_w: _Optional[float] = ..., time_scale: _Optional[float] = ..., w_time: _Optional[float] = ..., w_energy: _Optional[float] = ...) -> None: ...

class PolicyAnnouncement(_message.Message):
    __slots__ = ("version", "bundle_uri", "manifest_sha256", "issued_unix_seconds")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_URI_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    ISSUED_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    bundle_uri: str
    manifest_sha256: str
    issued_unix_seconds: float
    def __init__(self, version: _Optional[str] = ..., bundle_uri: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., issued_unix_seconds: _Optional[float] = ...) -> None: ...

class LocalStateReport(_message.Message):
    __slots__ = ("ue_id", "round", "edge_id", "local_state")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STATE_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    round: int
    edge_id: int
    local_state: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, ue_id: _Optional[str] = ..., round: _Optional[int] = ..., edge_id: _Optional[int] = ..., local_state: _Optional[_Iterable[float]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("ue_id", "round", "target", "input_bits", "output_bits", "cycles_per_bit", "cached", "channel", "transmit_power_ratio", "channel_gain", "edge_id", "payload", "edge_cloud_gain", "frame_start_unix_seconds", "forwarded_ue_edge_seconds")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INPUT_BITS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BITS_FIELD_NUMBER: _ClassVar[int]
    CYCLES_PER_BIT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TRANSMIT_POWER_RATIO_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_GAIN_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    EDGE_CLOUD_GAIN_FIELD_NUMBER: _ClassVar[int]
    FRAME_START_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_UE_EDGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    round: int
    target: OffloadTarget
    input_bits: float
    output_bits: float
    cycles_per_bit: float
    cached: bool
    channel: int
    transmit_power_ratio: float
    channel_gain: float
    edge_id: int
    payload: bytes
    edge_cloud_gain: float
    frame_start_unix_seconds: float
    forwarded_ue_edge_seconds: float
    def __init__(self, ue_id: _Optional[str] = ..., round: _Optional[int] = ..., target: _Optional[_Union[OffloadTarget, str]] = ..., input_bits: _Optional[float] = ..., output_bits: _Optional[float] = ..., cycles_per_bit: _Optional[float] = ..., cached: bool = ..., channel: _Optional[int] = ..., transmit_power_ratio: _Optional[float] = ..., channel_gain: _Optional[float] = ..., edge_id: _Optional[int] = ..., payload: _Optional[bytes] = ..., edge_cloud_gain: _Optional[float] = ..., frame_start_unix_seconds: _Optional[float] = ..., forwarded_ue_edge_seconds: _Optional[float] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("ue_id", "round", "executed_at", "uplink_rate_bps", "compute_seconds", "communication_seconds", "queue_seconds", "execution_seconds", "result", "error", "timings")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPLINK_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMMUNICATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    round: int
    executed_at: OffloadTarget
    uplink_rate_bps: float
    compute_seconds: float
    communication_seconds: float
    queue_seconds: float
    execution_seconds: float
    result: bytes
    error: _common_pb2.ErrorDetail
    timings: _common_pb2.ServerTimings
    def __init__(self, ue_id: _Optional[str] = ..., round: _Optional[int] = ..., executed_at: _Optional[_Union[OffloadTarget, str]] = ..., uplink_rate_bps: _Optional[float] = ..., compute_seconds: _Optional[float] = ..., communication_seconds: _Optional[float] = ..., queue_seconds: _Optional[float] = ..., execution_seconds: _Optional[float] = ..., result: _Optional[bytes] = ..., error: _Optional[_Union[_common_pb2.ErrorDetail, _Mapping]] = ..., timings: _Optional[_Union[_common_pb2.ServerTimings, _Mapping]] = ...) -> None: ...
