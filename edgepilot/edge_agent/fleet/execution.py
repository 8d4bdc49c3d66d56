"""``edgepilot.v1.TaskExecution``: the edge server (and the cloud tier) run offloaded tasks.

The agent sends the task's input bytes; the service holds each task as long as the
emulated hardware would take and sends the output bytes back. Timing follows the system
model (eq. 2-12):

* the round's uplink frame opens at ``frame_start`` (the task's issue time plus the
  decision window); the rates of the round's offloading UEs are computed then, with the
  interference (5) of the other UEs of the same edge server on the same channel;
* the edge server serves its edge tasks one after another (12), each for
  T1 (edge compute, zero when the result is cached) + T21 (uplink + downlink), and, as
  eq. 12 has it, every task of the queue completes when the whole queue has been served;
* a cloud task is forwarded to the cloud tier, which serves every edge server's cloud
  tasks one after another for T1 (cloud compute) + T21 (all complete at the end of that
  queue), and the edge server adds the task's backhaul T22 (9) on the way back.

One role per instance: ``role="edge"`` (with a ``cloud_address`` to forward to) or
``role="cloud"``. Both register on :class:`edgepilot.edge_agent.server.EdgeServer`, so
every call passes the server's call interceptor (:mod:`edgepilot.edge_agent.server.calls`:
metrics, stream caps) and its TLS / mutual-TLS credentials when the server has them.

Bounded like the split service: a call without a gRPC deadline gets
``default_deadline_seconds`` (30 s), none is honoured beyond ``max_deadline_seconds``
(300 s), and a frame start more than ``max_frame_ahead_seconds`` (60 s) from now is
refused (INVALID_ARGUMENT): every wait of a call (the frame start, the queue, the cloud
tier) ends at the call's deadline or as soon as the client goes away, so no request can
hold a worker for longer.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

import grpc

from edgepilot.edge_agent.fleet.payloads import MAX_TELEMETRY_SECONDS, PayloadError, check_finite
from edgepilot.edge_agent.server.calls import check_deadline_bounds, grpc_deadline_seconds
from edgepilot.v1 import common_pb2, fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc
from edgepilot.emulation.hardware import ComputeEmulator, EmulationClock, RadioCell, SerialTimeline, transfer_seconds

log = logging.getLogger("edgepilot.fleet.execution")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TaskExecution"].full_name
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS = [("grpc.max_receive_message_length", MAX_PAYLOAD_BYTES),
                ("grpc.max_send_message_length", MAX_PAYLOAD_BYTES)]


@dataclass
class _Job:
    request: pb.ExecuteRequest
    arrived: float
    ready: threading.Event = field(default_factory=threading.Event)
    uplink_rate_bps: float = 0.0
    ue_edge_seconds: float = 0.0  # T21


@dataclass
class _Frame:
    """The offloaded tasks of one round at one server."""

    start: float
    jobs: list = field(default_factory=list)
    scheduled: bool = False
    timeline: SerialTimeline = field(default_factory=SerialTimeline)


class TaskExecutionService(pb_grpc.TaskExecutionServicer):
    service_name = SERVICE_NAME

    def __init__(self, role: str, radio: RadioCell, edge_cpu_hz: float, cloud_cpu_hz: float,
                 clock: EmulationClock, edge_id: int = 0, cloud_address: str | None = None,
                 wire_scale: float = 1.0, keep_frames: int = 256, default_deadline_seconds: float = 30.0,
                 max_deadline_seconds: float = 300.0, max_frame_ahead_seconds: float = 60.0,
                 cloud_credentials: grpc.ChannelCredentials | None = None) -> None:
        if role not in ("edge", "cloud"):
            raise ValueError(f"role must be 'edge' or 'cloud', got {role!r}")
        check_deadline_bounds(default_deadline_seconds, max_deadline_seconds)
        if not max_frame_ahead_seconds > 0:
            raise ValueError(f"max_frame_ahead_seconds must be > 0, got {max_frame_ahead_seconds}")
        self.default_deadline_seconds = default_deadline_seconds
        self.max_deadline_seconds = max_deadline_seconds
        self.max_frame_ahead_seconds = max_frame_ahead_seconds
        self.cloud_credentials = cloud_credentials
        self.role = role
        self.radio = radio
        self.edge = ComputeEmulator(edge_cpu_hz)
        self.cloud = ComputeEmulator(cloud_cpu_hz)
        self.clock = clock
        self.edge_id = edge_id
        self.cloud_address = cloud_address
        self.wire_scale = wire_scale
        self.keep_frames = keep_frames  # frames remembered for late joiners; a job holds its own
        self._frames: dict[tuple[int, float], _Frame] = {}
        self._lock = threading.Lock()
        self._cloud: TaskExecutionClient | None = None
        self.served = 0
        self.rejected = 0

    # -- ServiceRegistration ---------------------------------------------------------
    def add_to_server(self, server: grpc.Server) -> None:
        pb_grpc.add_TaskExecutionServicer_to_server(self, server)

    def start(self) -> None:
        if self.role == "edge" and self.cloud_address:
            self._cloud = TaskExecutionClient(self.cloud_address, credentials=self.cloud_credentials)

    def stop(self) -> None:
        if self._cloud is not None:
            self._cloud.close()

    # -- frames ------------------------------------------------------------------------
    def _frame(self, round_: int, announced_start: float, received: float) -> _Frame:
        """The uplink frame of a round. The UEs of one round share the frame start their
        coordinator announced, so a frame is keyed by (round, announced start): a request
        of a round number seen before but with another start (a second coordinator, a
        restarted one, a test) gets a frame of its own instead of being timed against a
        stale one. Without an announced start, the first request of the round starts it."""
        key = (round_, announced_start)
        with self._lock:
            frame = self._frames.get(key)
            if frame is None:
                frame = self._frames[key] = _Frame(start=announced_start or received)
                while len(self._frames) > self.keep_frames:  # oldest first (insertion order)
                    del self._frames[next(iter(self._frames))]
            return frame

    def _schedule_uplinks(self, frame: _Frame, jobs: list[_Job]) -> None:
        """Rates with the interference (5) of the frame's other offloading UEs on the
        same channel, then T21 (8) of each job."""
        with self._lock:
            known = list(frame.jobs)
        for job in jobs:
            r = job.request
            interference = sum(
                o.request.transmit_power_ratio * self.radio.ue_max_power_w * o.request.channel_gain
                for o in known
                if o is not job and o.request.channel == r.channel
            )
            job.uplink_rate_bps = self.radio.uplink_rate_bps(r.transmit_power_ratio, r.channel_gain, interference)
            job.ue_edge_seconds = (transfer_seconds(r.input_bits, job.uplink_rate_bps)
                                   + transfer_seconds(r.output_bits, self.radio.downlink_rate_bps(r.channel_gain)))
            job.ready.set()

    # -- the call ----------------------------------------------------------------------
    def Execute(self, request: pb.ExecuteRequest, context) -> pb.ExecuteResponse:
        received = time.time()
        error = _check_request(request, self.role)
        if error is None:
            ahead = request_frame_start(request) - received
            if ahead > self.max_frame_ahead_seconds:
                error = (f"frame_start_unix_seconds is {min(ahead, 1e12):.0f} s from now "
                         f"(at most {self.max_frame_ahead_seconds:g} s)")
        if error is not None:
            self.rejected += 1
            log.warning("TaskExecution refused a request: %s", error)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
        call = _CallBound(self, context, received)
        frame = self._frame(request.round, request_frame_start(request), received)
        if self.role == "cloud":
            return self._execute_cloud(request, frame, received, context, call)
        job = _Job(request, received)
        with self._lock:
            frame.jobs.append(job)
        if not call.sleep_until(self.clock, frame.start):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the uplink frame opened")
        with self._lock:
            unscheduled = [j for j in frame.jobs if not j.ready.is_set()]
        self._schedule_uplinks(frame, unscheduled)
        if not job.ready.wait(call.remaining()):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the uplink was scheduled")
        r = request
        if r.target == pb.OFFLOAD_TARGET_EDGE:
            compute_s = 0.0 if r.cached else self.edge.compute_seconds(r.input_bits * r.cycles_per_bit)
            service_s = compute_s + job.ue_edge_seconds  # one slot of the edge queue (12)
            start, end = frame.timeline.reserve(frame.start, self.clock.wall(service_s))
            if not _sleep_until_queue_served(self.clock, frame.timeline, call):
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "task deadline passed while queued")
            queue_s = self.clock.emulated(start - frame.start)
            comm_s = job.ue_edge_seconds
            executed = pb.OFFLOAD_TARGET_EDGE
        else:
            if self._cloud is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this edge server has no cloud tier")
            forward = pb.ExecuteRequest()
            forward.CopyFrom(r)
            forward.payload = r.payload
            remaining = call.remaining()
            try:
                reply = self._cloud.execute(forward, timeout=remaining, ue_edge_seconds=job.ue_edge_seconds,
                                            frame_start=frame.start)
            except grpc.RpcError as err:
                context.abort(err.code(), f"cloud tier: {err.details()}")
            backhaul_s = self.radio.backhaul_seconds(r.input_bits, r.output_bits, r.edge_cloud_gain)  # T22 (9)
            # the backhaul follows the task's slot at the cloud (on the emulated timeline, so
            # the real time the forward and the reply took is not counted twice)
            end = frame.start + self.clock.wall(reply.execution_seconds + backhaul_s)
            if not call.sleep_until(self.clock, end):
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "task deadline passed on the backhaul")
            compute_s = reply.compute_seconds
            queue_s = reply.queue_seconds
            comm_s = job.ue_edge_seconds + backhaul_s
            executed = pb.OFFLOAD_TARGET_CLOUD
        self.served += 1
        done = time.time()
        return pb.ExecuteResponse(
            ue_id=r.ue_id, round=r.round, executed_at=executed, uplink_rate_bps=job.uplink_rate_bps,
            compute_seconds=compute_s, communication_seconds=comm_s, queue_seconds=queue_s,
            execution_seconds=self.clock.emulated(done - frame.start),
            result=bytes(result_bytes(r.output_bits, self.wire_scale)),
            timings=common_pb2.ServerTimings(total_seconds=done - received, queue_seconds=max(0.0, done - received)),
        )

    def _execute_cloud(self, r: pb.ExecuteRequest, frame: _Frame, received: float, context,
                       call: "_CallBound") -> pb.ExecuteResponse:
        ue_edge_s = r.forwarded_ue_edge_seconds
        try:
            check_finite("forwarded_ue_edge_seconds", ue_edge_s, 0.0, MAX_TELEMETRY_SECONDS)
        except PayloadError as err:
            self.rejected += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        compute_s = self.cloud.compute_seconds(r.input_bits * r.cycles_per_bit)
        start, end = frame.timeline.reserve(frame.start, self.clock.wall(compute_s + ue_edge_s))  # cloud queue (12)
        if not _sleep_until_queue_served(self.clock, frame.timeline, call):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "task deadline passed while queued at the cloud tier")
        end = frame.timeline.end
        self.served += 1
        done = time.time()
        return pb.ExecuteResponse(
            ue_id=r.ue_id, round=r.round, executed_at=pb.OFFLOAD_TARGET_CLOUD,
            compute_seconds=compute_s, communication_seconds=ue_edge_s,
            queue_seconds=self.clock.emulated(start - frame.start),
            execution_seconds=self.clock.emulated(end - frame.start),  # the slot's end on the timeline
            timings=common_pb2.ServerTimings(total_seconds=done - received),
        )


def request_frame_start(r: pb.ExecuteRequest) -> float:
    return r.frame_start_unix_seconds


def result_bytes(output_bits: float, wire_scale: float) -> bytes:
    return bytes(max(0, int(math.ceil(output_bits * wire_scale / 8))))


class _CallBound:
    """The wall-clock deadline of one call: the client's gRPC deadline, or
    ``default_deadline_seconds`` without one, never beyond ``max_deadline_seconds``; and
    an event set as soon as the call is over (cancelled, expired), which ends any sleep."""

    def __init__(self, svc: "TaskExecutionService", context, received: float) -> None:
        remaining = grpc_deadline_seconds(context.time_remaining() if context is not None else None)
        if remaining is None:
            remaining = svc.default_deadline_seconds
        self.deadline = received + min(max(0.0, remaining), svc.max_deadline_seconds)
        self.ended = threading.Event()
        if context is not None:
            try:
                context.add_callback(self.ended.set)
            except Exception:  # noqa: BLE001 - a context without callbacks (direct calls in tests)
                pass

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.time())

    def sleep_until(self, clock: EmulationClock, wall_end: float) -> bool:
        """Sleep until ``wall_end``; False when the deadline comes first or the call ended."""
        clock.sleep_until(min(wall_end, self.deadline), stop=self.ended)
        return not self.ended.is_set() and time.time() >= wall_end


def _sleep_until_queue_served(clock: EmulationClock, timeline: SerialTimeline, call: _CallBound) -> bool:
    """Sleep until every task booked on ``timeline`` has been served (eq. 12: a queued
    task completes with its queue), or the call's deadline; False on the deadline."""
    while True:
        end = timeline.end
        if not call.sleep_until(clock, end):
            return False
        if timeline.end <= end:  # nobody joined the queue meanwhile
            return True


def _check_request(r: pb.ExecuteRequest, role: str) -> str | None:
    if r.target not in (pb.OFFLOAD_TARGET_EDGE, pb.OFFLOAD_TARGET_CLOUD):
        return f"target must be EDGE or CLOUD, got {r.target}"
    if role == "cloud" and r.target != pb.OFFLOAD_TARGET_CLOUD:
        return "the cloud tier runs CLOUD tasks only"
    checks = (
        ("input_bits", r.input_bits, 0.0, 1e10), ("output_bits", r.output_bits, -1e-9, 1e10),
        ("cycles_per_bit", r.cycles_per_bit, 0.0, 1e6), ("transmit_power_ratio", r.transmit_power_ratio, 0.0, 1.0),
        ("channel_gain", r.channel_gain, 0.0, 1.0),
    )
    try:
        for name, value, lo, hi in checks:
            check_finite(name, value, lo, hi, lo_open=True)
        if r.target == pb.OFFLOAD_TARGET_CLOUD:
            check_finite("edge_cloud_gain", r.edge_cloud_gain, 0.0, 1.0, lo_open=True)
    except PayloadError as err:
        return str(err)
    return None


class TaskExecutionClient:
    """A channel to one TaskExecution server."""

    #: a call never goes out without a gRPC deadline (a server could otherwise hold it forever)
    DEFAULT_TIMEOUT_S = 30.0

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.address = address
        if credentials is None:
            self.channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        else:
            self.channel = grpc.secure_channel(address, credentials, options=GRPC_OPTIONS)
        self.stub = pb_grpc.TaskExecutionStub(self.channel)

    def execute(self, request: pb.ExecuteRequest, timeout: float | None = None, ue_edge_seconds: float | None = None,
                frame_start: float | None = None) -> pb.ExecuteResponse:
        if timeout is None or not math.isfinite(timeout):
            timeout = self.DEFAULT_TIMEOUT_S
        if ue_edge_seconds is not None:
            request.forwarded_ue_edge_seconds = ue_edge_seconds
        if frame_start is not None:
            request.frame_start_unix_seconds = frame_start
        return self.stub.Execute(request, timeout=timeout)

    def close(self) -> None:
        self.channel.close()
