"""Prometheus metrics of the edge server, in a registry of its own (several servers can
live in one process, e.g. in tests), optionally exposed over HTTP on 127.0.0.1."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

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
        self._http = None

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
