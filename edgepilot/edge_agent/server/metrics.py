"""Prometheus metrics of the edge server, in a registry of its own (several servers can
live in one process, e.g. in tests), optionally exposed over HTTP on 127.0.0.1.

Every RPC is accounted by the server's interceptor, whatever its service, in the style of
go-grpc-prometheus: ``edgepilot_rpcs_started_total`` when the call arrives,
``edgepilot_rpcs_handled_total{code}`` when the server answers it, and
``edgepilot_rpc_failures_total{kind}`` for failures outside the handlers' own errors:
``deserialize`` (a request that is not the message), ``stream`` (a stream the client
cancelled or that hit its deadline), ``idle`` (a stream the server cut for inactivity),
``refused`` (the open-stream limit). ``edgepilot_rpcs_unhandled`` is started minus
handled minus in flight: calls the transport ended before a handler saw them (an
oversized message, the concurrent-RPC limit, a client gone before dispatch)."""

from __future__ import annotations

import threading
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
BYTES_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144, 1048576)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("edgepilot_requests", "Requests handled, by gRPC method and status code",
                                ["method", "code"], registry=r)
        self.latency = Histogram("edgepilot_request_seconds", "Server-side latency of a request, seconds",
                                 ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.decode = Histogram("edgepilot_decode_seconds", "Bitstream decode time, seconds",
                                ["codec"], buckets=LATENCY_BUCKETS, registry=r)
        self.payload = Histogram("edgepilot_payload_bytes", "Bitstream size, bytes", ["codec"],
                                 buckets=BYTES_BUCKETS, registry=r)
        self.batch_size = Histogram("edgepilot_batch_size", "Micro-batch size", ["endpoint"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.compute = Histogram("edgepilot_batch_compute_seconds", "Model run time per micro-batch, seconds",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgepilot_queue_depth", "Requests waiting for a micro-batch", ["endpoint"], registry=r)
        self.rejected = Counter("edgepilot_queue_rejected", "Requests refused because the queue was full",
                                ["endpoint"], registry=r)
        self.inflight = Gauge("edgepilot_inflight_requests", "Requests being handled", registry=r)
        self.rpcs_started = Counter("edgepilot_rpcs_started", "RPCs that arrived, by method", ["method"], registry=r)
        self.rpcs_handled = Counter("edgepilot_rpcs_handled", "RPCs answered, by method and status code",
                                    ["method", "code"], registry=r)
        self.rpc_failures = Counter("edgepilot_rpc_failures", "RPC failures outside the handlers "
                                    "(deserialize, stream, idle, refused)", ["method", "kind"], registry=r)
        self.rpcs_active = Gauge("edgepilot_rpcs_active", "RPCs being handled, by method", ["method"], registry=r)
        self.streams_open = Gauge("edgepilot_streams_open", "Streaming RPCs open", registry=r)
        self.serving = Gauge("edgepilot_serving", "1 while health says SERVING, 0 when wedged or stopping", registry=r)
        self._lock = threading.Lock()
        self._started: dict = defaultdict(int)
        self._finished: dict = defaultdict(int)   # handled + in flight are counted apart
        self._active: dict = defaultdict(int)
        r.register(_Unhandled(self))
        self._http = None

    # --- per-call accounting (the interceptor) ----------------------------------------------
    def call_started(self, method: str) -> None:
        self.rpcs_started.labels(method).inc()
        with self._lock:
            self._started[method] += 1

    def call_entered(self, method: str) -> None:
        self.rpcs_active.labels(method).inc()
        with self._lock:
            self._active[method] += 1

    def call_left(self, method: str) -> None:
        self.rpcs_active.labels(method).dec()
        with self._lock:
            self._active[method] -= 1

    def call_handled(self, method: str, code_name: str) -> None:
        self.rpcs_handled.labels(method, code_name).inc()
        with self._lock:
            self._finished[method] += 1

    def failure(self, method: str, kind: str) -> None:
        self.rpc_failures.labels(method, kind).inc()

    def unhandled(self) -> dict:
        with self._lock:
            return {m: max(0, n - self._finished[m] - self._active[m]) for m, n in self._started.items()}

    def serve_http(self, port: int, addr: str = "127.0.0.1") -> int:
        """Expose /metrics; returns the bound port (``port`` 0 picks one)."""
        result = start_http_server(port, addr=addr, registry=self.registry)
        self._http = result
        if isinstance(result, tuple):
            return result[0].server_port
        return port

    def shutdown_http(self) -> None:
        if isinstance(self._http, tuple):
            self._http[0].shutdown()
        self._http = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Unhandled:
    """``edgepilot_rpcs_unhandled{method}``: started - handled - in flight."""

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    def describe(self):
        return [GaugeMetricFamily("edgepilot_rpcs_unhandled", "RPCs the transport ended before a handler answered",
                                  labels=["method"])]

    def collect(self):
        g = GaugeMetricFamily("edgepilot_rpcs_unhandled", "RPCs the transport ended before a handler answered",
                              labels=["method"])
        for method, n in sorted(self.metrics.unhandled().items()):
            g.add_metric([method], n)
        yield g
