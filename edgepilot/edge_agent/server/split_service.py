"""``edgepilot.v1.SplitInference``: decode the device's bitstream, run the tail in a
micro-batch, answer with logits and server-side timings.

Endpoints are keyed by (model_id, version, split_point). From a bundle the service
registers two: the bundle's split point (the tail; codec ``ep-factorized-range``) and
split point 0 (the full model on an encoded image; codecs ``image/png``, ``image/jpeg``,
``image/webp``: the paper's edge-only baselines).

Every malformed request is answered INVALID_ARGUMENT with the field named in the details
(also in the ``edgepilot-field`` trailing metadata); a full queue RESOURCE_EXHAUSTED; an
expired deadline DEADLINE_EXCEEDED. Nothing a client sends can stop the server.

Integrity: ``bitstream_crc32`` (CRC-32 of ``bitstream``, zlib / IEEE 802.3) is required;
a payload whose checksum differs is refused (field ``bitstream``) before it is decoded,
so a corrupted latent cannot decode to a confident wrong class.

Deadlines: a call without a gRPC deadline and without ``deadline`` gets
``default_deadline_seconds``; no deadline is honoured beyond ``max_deadline_seconds``.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import zlib
from dataclasses import dataclass, field

import grpc
import numpy as np

from edgepilot.edge_agent.server.batcher import DeadlineExpired, MicroBatcher, QueueFull
from edgepilot.edge_agent.server.calls import check_deadline_bounds, grpc_deadline_seconds
from edgepilot.edge_agent.server.errors import RequestError, bounded, clip, invalid
from edgepilot.edge_agent.server.metrics import ServerMetrics
from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.codec import IMAGE_CODEC_IDS, CodecError, ImageCodec
from edgepilot.v1 import common_pb2, split_inference_pb2 as pb, split_inference_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SplitInference"].full_name
MAX_REQUEST_ID = 128
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
TIMESTAMP_MIN_SECONDS, TIMESTAMP_MAX_SECONDS = -62135596800, 253402300799


@dataclass
class BatchingConfig:
    max_batch: int = 16
    max_wait_seconds: float = 0.002
    queue_capacity: int = 256
    max_bitstream_bytes: int = 256 * 1024   # larger payloads: INVALID_ARGUMENT (field bitstream)
    default_deadline_seconds: float = 30.0  # for calls that carry no deadline at all
    max_deadline_seconds: float = 300.0     # later deadlines are cut to this

    def __post_init__(self):
        check_deadline_bounds(self.default_deadline_seconds, self.max_deadline_seconds)

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1


@dataclass
class Endpoint:
    model_id: str
    version: str
    split_point: int
    latent_shape: tuple[int, ...]
    codecs: dict                            # codec_id -> codec (decode(bytes, shape) -> array)
    batcher: MicroBatcher
    codec_versions: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model_id}@{self.version}/split{self.split_point}"


class SplitInferenceService(pb_grpc.SplitInferenceServicer):
    service_name = SERVICE_NAME

    def __init__(self, metrics: ServerMetrics | None = None, batching: BatchingConfig | None = None):
        self.metrics = metrics or ServerMetrics()
        self.batching = batching or BatchingConfig()
        self.endpoints: dict[tuple[str, str, int], Endpoint] = {}

    # --- registration -------------------------------------------------------------------------
    def add_endpoint(self, model_id: str, version: str, split_point: int, latent_shape, codecs: dict,
                     run_batch) -> Endpoint:
        b = self.batching
        name = f"{model_id}@{version}/split{split_point}"
        batcher = MicroBatcher(name, run_batch, b.max_batch, b.max_wait_seconds, b.queue_capacity, self.metrics)
        ep = Endpoint(model_id, str(version), int(split_point), tuple(int(d) for d in latent_shape), codecs, batcher,
                      {cid: getattr(c, "version", "1") for cid, c in codecs.items()})
        self.endpoints[(ep.model_id, ep.version, ep.split_point)] = ep
        return ep

    def add_bundle(self, bundle: SplitBundle, edge_only: bool = True) -> None:
        tail, full = bundle.model("tail"), (bundle.model("full") if edge_only else None)
        self.add_endpoint(bundle.model_id, bundle.version, bundle.split_point, bundle.latent_shape,
                          {bundle.codec.codec_id: bundle.codec}, tail.run)
        if edge_only:
            self.add_endpoint(bundle.model_id, bundle.version, 0, bundle.input_shape,
                              {cid: ImageCodec(cid) for cid in IMAGE_CODEC_IDS}, full.run)

    # --- ServiceRegistration -----------------------------------------------------------------
    def add_to_server(self, server: grpc.Server) -> None:
        pb_grpc.add_SplitInferenceServicer_to_server(self, server)

    def start(self) -> None:
        for ep in self.endpoints.values():
            ep.batcher.start()

    def stop(self) -> None:
        for ep in self.endpoints.values():
            ep.batcher.stop()

    # --- request handling ------------------------------------------------------------------------
    def _endpoint(self, req: pb.InferRequest) -> Endpoint:
        if not req.model.model_id:
            raise invalid("model.model_id", "is empty")
        models = {k[0] for k in self.endpoints}
        if req.model.model_id not in models:
            raise invalid("model.model_id", f"unknown model {clip(req.model.model_id)}; served: {sorted(models)}")
        versions = {k[1] for k in self.endpoints if k[0] == req.model.model_id}
        if req.model.version not in versions:
            raise invalid("model.version", f"unknown version {clip(req.model.version)} of {clip(req.model.model_id)}; "
                          f"served: {sorted(versions)}")
        key = (req.model.model_id, req.model.version, req.split_point)
        if key not in self.endpoints:
            points = sorted(k[2] for k in self.endpoints if k[:2] == key[:2])
            raise invalid("split_point", f"{req.split_point} is not served for this model; served: {points}")
        return self.endpoints[key]

    def _deadline(self, req: pb.InferRequest, context_remaining: float | None) -> float:
        """Absolute monotonic deadline: the earlier of the gRPC deadline and the request's;
        ``default_deadline_seconds`` when neither is set, never beyond ``max_deadline_seconds``.
        (gRPC reports "no deadline" as an infinite or huge time remaining.)"""
        now = time.monotonic()
        b = self.batching
        candidates = []
        left = grpc_deadline_seconds(context_remaining)
        if left is not None:
            candidates.append(now + left)
        if req.HasField("deadline"):
            ts = req.deadline
            if not (TIMESTAMP_MIN_SECONDS <= ts.seconds <= TIMESTAMP_MAX_SECONDS and 0 <= ts.nanos <= 999_999_999):
                raise invalid("deadline", f"is not a valid Timestamp (seconds {clip(ts.seconds, 24)}, nanos "
                              f"{clip(ts.nanos, 24)}; seconds in {TIMESTAMP_MIN_SECONDS}..{TIMESTAMP_MAX_SECONDS}, "
                              "nanos in 0..999999999)")
            candidates.append(now + (ts.seconds + ts.nanos / 1e9 - time.time()))
        deadline = min(candidates) if candidates else now + b.default_deadline_seconds
        if deadline <= now:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already passed on arrival", "deadline")
        return min(deadline, now + b.max_deadline_seconds)

    def _prepare(self, req: pb.InferRequest, context_remaining: float | None):
        """Validate + decode; returns (endpoint, tensor, deadline, decode_seconds)."""
        if len(req.request_id) > MAX_REQUEST_ID:
            raise invalid("request_id", f"longer than {MAX_REQUEST_ID} characters")
        ep = self._endpoint(req)
        codec = ep.codecs.get(req.codec.codec_id)
        if codec is None:
            raise invalid("codec.codec_id", f"unknown codec {clip(req.codec.codec_id)} for {ep.name}; "
                          f"accepted: {sorted(ep.codecs)}")
        if req.codec.version != ep.codec_versions[req.codec.codec_id]:
            raise invalid("codec.version", f"{req.codec.codec_id} version {clip(req.codec.version)} not supported; "
                          f"accepted: {ep.codec_versions[req.codec.codec_id]!r}")
        shape = tuple(req.latent_shape.dims)
        if shape != ep.latent_shape:
            raise invalid("latent_shape", f"{clip(list(shape), 80)} does not match {ep.name}: "
                          f"expected {list(ep.latent_shape)}")
        n = len(req.bitstream)
        if n > self.batching.max_bitstream_bytes:
            raise invalid("bitstream", f"{n} bytes exceeds the limit of {self.batching.max_bitstream_bytes} bytes")
        if not req.HasField("bitstream_crc32"):
            raise invalid("bitstream_crc32", "is missing (CRC-32 of bitstream, required)")
        crc = zlib.crc32(req.bitstream) & 0xFFFFFFFF
        if crc != req.bitstream_crc32:
            raise invalid("bitstream", f"CRC-32 {crc:08x} does not match bitstream_crc32 {req.bitstream_crc32:08x} "
                          "(corrupted in transit)")
        deadline = self._deadline(req, context_remaining)
        t0 = time.monotonic()
        try:
            x = np.asarray(codec.decode(req.bitstream, shape), dtype=np.float32)
        except CodecError as exc:
            raise invalid(exc.field, str(exc)) from exc
        dt = time.monotonic() - t0
        self.metrics.decode.labels(req.codec.codec_id).observe(dt)
        self.metrics.payload.labels(req.codec.codec_id).observe(n)
        return ep, x, deadline, dt

    def stalled(self, seconds: float) -> bool:
        """True when a model run has been going on for more than ``seconds`` (the watchdog
        of :class:`EdgeServer` then reports NOT_SERVING)."""
        return any(ep.batcher.busy_seconds() > seconds for ep in self.endpoints.values())

    def _submit(self, ep: Endpoint, x: np.ndarray, deadline: float | None):
        try:
            return ep.batcher.submit(x, deadline)
        except QueueFull as exc:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), "") from exc

    @staticmethod
    def _finish(req: pb.InferRequest, pending, received: float, decode_seconds: float, context) -> pb.InferResponse:
        # Wait in slices: stop at the deadline, or as soon as the call is over (cancelled).
        deadline = pending.deadline if pending.deadline is not None else math.inf
        while not pending.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or not context.is_active():
                pending.cancelled = True
                raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the model ran",
                                   "deadline")
        if isinstance(pending.error, DeadlineExpired):
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, str(pending.error), "deadline")
        if pending.error is not None:
            raise RequestError(grpc.StatusCode.INTERNAL, f"model run failed: {bounded(str(pending.error), 300)}")
        logits = np.asarray(pending.result, dtype=np.float32).reshape(-1)
        timings = common_pb2.ServerTimings(
            decode_seconds=decode_seconds, queue_seconds=max(0.0, pending.started - pending.enqueued),
            compute_seconds=pending.compute_seconds, total_seconds=time.monotonic() - received,
            batch_size=pending.batch_size)
        return pb.InferResponse(request_id=req.request_id, logits=logits.tolist(),
                                predicted_class=int(np.argmax(logits)), timings=timings)

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self.metrics.requests.labels(method, code.name).inc()
        self.metrics.latency.labels(method).observe(time.monotonic() - started)

    # --- RPCs --------------------------------------------------------------------------------------
    def Infer(self, request, context):
        received = time.monotonic()
        self.metrics.inflight.inc()
        code = grpc.StatusCode.OK
        try:
            ep, x, deadline, dec = self._prepare(request, context.time_remaining())
            return self._finish(request, self._submit(ep, x, deadline), received, dec, context)
        except RequestError as exc:
            code = exc.code
            if exc.field:
                context.set_trailing_metadata((("edgepilot-field", exc.field),))
            context.abort(exc.code, exc.details)
        except Exception as exc:  # never let a bug in one request take the server down
            code = grpc.StatusCode.INTERNAL
            context.abort(grpc.StatusCode.INTERNAL, bounded(f"internal error: {type(exc).__name__}: {exc}", 300))
        finally:
            self.metrics.inflight.dec()
            self._record("Infer", code, received)

    def InferStream(self, request_iterator, context):
        """Requests are decoded and queued as they arrive (pipelined); responses come back
        in request order. A bad item gets a response with ``error`` set.

        A reader thread consumes the requests; this handler thread sends the answers. Both
        stop as soon as the call is over (the client cancelled, its deadline passed, the
        server cut it as idle or is stopping): every wait here has a timeout and checks the
        call, so no stream can hold a worker after it ended."""
        results: queue.Queue = queue.Queue(maxsize=self.batching.queue_capacity)
        done = object()
        over = threading.Event()

        def active() -> bool:
            return not over.is_set() and context.is_active()

        def put(item) -> bool:
            # Blocking put = backpressure on a fast sender; give up once the call is over.
            while active():
                try:
                    results.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader():
            try:
                for req in request_iterator:
                    received = time.monotonic()
                    try:
                        ep, x, deadline, dec = self._prepare(req, context.time_remaining())
                        item = (req, received, self._submit(ep, x, deadline), dec, None)
                    except RequestError as exc:
                        item = (req, received, None, 0.0, exc)
                    if not put(item):
                        if item[2] is not None:
                            item[2].cancelled = True
                        return
            except Exception:  # client went away / cancelled / cut
                pass
            finally:
                put(done)

        threading.Thread(target=reader, name="stream-reader", daemon=True).start()
        try:
            while True:
                try:
                    item = results.get(timeout=0.1)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if item is done:
                    return
                req, received, pending, dec, err = item
                if err is None:
                    try:
                        response = self._finish(req, pending, received, dec, context)
                        self._record("InferStream", grpc.StatusCode.OK, received)
                        yield response
                        continue
                    except RequestError as exc:
                        err = exc
                self._record("InferStream", err.code, received)
                yield pb.InferResponse(request_id=req.request_id[:MAX_REQUEST_ID],
                                       error=common_pb2.ErrorDetail(code=err.code.value[0], message=err.details,
                                                                    field=err.field))
        finally:
            over.set()
            while True:   # whatever was queued will not be answered: do not run it
                try:
                    item = results.get_nowait()
                except queue.Empty:
                    break
                if item is not done and item[2] is not None:
                    item[2].cancelled = True

    def ListModels(self, request, context):
        out = pb.ListModelsResponse()
        for ep in self.endpoints.values():
            e = out.endpoints.add(split_point=ep.split_point)
            e.model.model_id, e.model.version = ep.model_id, ep.version
            e.latent_shape.dims.extend(ep.latent_shape)
            for cid, ver in sorted(ep.codec_versions.items()):
                e.codecs.add(codec_id=cid, version=ver)
        return out


def build_split_server(bundles: list[SplitBundle], config=None, batching: BatchingConfig | None = None,
                       edge_only: bool = True):
    """An :class:`EdgeServer` serving split inference for ``bundles`` (not started)."""
    from edgepilot.edge_agent.server.app import EdgeServer

    server = EdgeServer(config)
    service = SplitInferenceService(server.metrics, batching)
    for b in bundles:
        service.add_bundle(b, edge_only=edge_only)
    server.add_service(service)
    return server
