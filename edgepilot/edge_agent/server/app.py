"""The edge server shell: one ``grpc.server`` that any number of services register onto.

It serves gRPC health checking (``grpc.health.v1.Health``, overall and per service) and
server reflection for every registered service, optional TLS / mTLS, a maximum message
size, Prometheus metrics, and a graceful shutdown: health flips to NOT_SERVING, new calls
are refused, in-flight calls are drained for up to ``grace_seconds``, then each service's
``stop()`` runs (e.g. its micro-batchers).

Bounded resources (see docs/split-inference.md, "Limits"): at most ``max_concurrent_rpcs``
calls at once (more: RESOURCE_EXHAUSTED from gRPC, never an unbounded queue), at most
``max_concurrent_streams`` of them streams (:mod:`edgepilot.edge_agent.server.calls`), a
stream idle for ``stream_idle_seconds`` is cancelled, and a watchdog sets health to
NOT_SERVING while the worker pool stays saturated, or a service reports itself stalled,
for longer than ``wedge_seconds`` (SERVING again once it recovers).

Adding a service (a later issue adds task execution for the MQTT fleet)::

    class TaskService:                     # satisfies ServiceRegistration
        service_name = "edgepilot.v1.TaskExecution"
        def add_to_server(self, server): task_execution_pb2_grpc.add_TaskExecutionServicer_to_server(self, server)
        def start(self): ...
        def stop(self): ...

    server = EdgeServer(config); server.add_service(TaskService()); server.start()
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgepilot.edge_agent.server.calls import CallTracker
from edgepilot.edge_agent.server.metrics import ServerMetrics
from edgepilot.edge_agent.server.tls import TLSConfig

log = logging.getLogger("edgepilot.server")


@runtime_checkable
class ServiceRegistration(Protocol):
    service_name: str  # fully qualified, e.g. "edgepilot.v1.SplitInference"

    def add_to_server(self, server: grpc.Server) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051                      # 0 picks a free port
    max_workers: int = 64                  # handler threads (concurrent calls being served)
    max_message_bytes: int = 4 * 1024 * 1024   # gRPC transport limit, both directions
    grace_seconds: float = 10.0            # drain time on shutdown
    metrics_port: int | None = None        # Prometheus /metrics on 127.0.0.1:port; None = off
    tls: TLSConfig | None = None
    max_concurrent_rpcs: Optional[int] = None     # None: max_workers (no call waits for a thread)
    max_concurrent_streams: Optional[int] = None  # None: max_workers // 2 (at least 1)
    stream_idle_seconds: float = 30.0      # a stream with no request read / response sent for this long is cut
    wedge_seconds: float = 10.0            # saturated / stalled this long -> health NOT_SERVING

    @property
    def rpc_limit(self) -> int:
        return self.max_concurrent_rpcs if self.max_concurrent_rpcs is not None else self.max_workers

    @property
    def stream_limit(self) -> int:
        return self.max_concurrent_streams if self.max_concurrent_streams is not None else max(1, self.max_workers // 2)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.grace_seconds < 0:
            raise ValueError(f"grace_seconds must be >= 0, got {self.grace_seconds}")
        if not 1 <= self.rpc_limit <= self.max_workers:
            raise ValueError(f"max_concurrent_rpcs must be in 1..max_workers ({self.max_workers}), got {self.rpc_limit}")
        if not 1 <= self.stream_limit < max(2, self.rpc_limit):
            raise ValueError(f"max_concurrent_streams must be >= 1 and below max_concurrent_rpcs ({self.rpc_limit}) "
                             f"so unary calls and health keep a worker, got {self.stream_limit}")
        if self.stream_idle_seconds <= 0:
            raise ValueError(f"stream_idle_seconds must be > 0, got {self.stream_idle_seconds}")
        if self.wedge_seconds <= 0:
            raise ValueError(f"wedge_seconds must be > 0, got {self.wedge_seconds}")


class EdgeServer:
    def __init__(self, config: ServerConfig | None = None, metrics: ServerMetrics | None = None):
        self.config = config or ServerConfig()
        self.config.validate()
        self.metrics = metrics or ServerMetrics()
        self.services: list[ServiceRegistration] = []
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._stopped = threading.Event()
        self.calls = CallTracker(self.metrics, self.config.stream_limit, self.config.stream_idle_seconds)
        self._watchdog: threading.Thread | None = None
        self._saturated_since: float | None = None
        self.wedged = False

    def add_service(self, service: ServiceRegistration) -> "EdgeServer":
        if self._server is not None:
            raise RuntimeError("add services before start()")
        if not isinstance(service, ServiceRegistration):
            raise TypeError(f"{service!r} lacks service_name / add_to_server / start / stop")
        self.services.append(service)
        return self

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self) -> int:
        c = self.config
        opts = [("grpc.max_receive_message_length", c.max_message_bytes),
                ("grpc.max_send_message_length", c.max_message_bytes),
                ("grpc.so_reuseport", 0)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=c.max_workers, thread_name_prefix="grpc"),
                                   options=opts, interceptors=[self.calls], maximum_concurrent_rpcs=c.rpc_limit)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        for s in self.services:
            s.add_to_server(self._server)
            s.start()
            names.append(s.service_name)
        reflection.enable_server_reflection(names, self._server)
        bind = f"{c.host}:{c.port}"
        if c.tls is not None:
            self.port = self._server.add_secure_port(bind, c.tls.server_credentials())
        else:
            self.port = self._server.add_insecure_port(bind)
        if not self.port:
            raise OSError(f"could not bind {bind}")
        self._server.start()
        for s in self.services:
            self.health.set(s.service_name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.metrics.serving.set(1)
        self._watchdog = threading.Thread(target=self._watch, name="edge-watchdog", daemon=True)
        self._watchdog.start()
        if c.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(c.metrics_port)
        log.info("edge server on %s (%s), services: %s", self.address, "TLS" if c.tls else "plaintext",
                 ", ".join(s.service_name for s in self.services))
        return self.port

    # --- watchdog ------------------------------------------------------------------------------
    def check(self, now: float | None = None) -> bool:
        """One watchdog pass: cut idle streams, then decide whether the server is wedged
        (all call slots busy, or a service stalled, for longer than ``wedge_seconds``) and
        set health accordingly. Returns ``wedged``."""
        now = time.monotonic() if now is None else now
        c = self.config
        self.calls.cut_idle_streams(now)
        if self.calls.active() >= c.rpc_limit:
            self._saturated_since = self._saturated_since if self._saturated_since is not None else now
        else:
            self._saturated_since = None
        saturated = self._saturated_since is not None and now - self._saturated_since > c.wedge_seconds
        stalled = [s.service_name for s in self.services
                   if callable(getattr(s, "stalled", None)) and s.stalled(c.wedge_seconds)]
        wedged = saturated or bool(stalled)
        if wedged != self.wedged and not self._stopped.is_set():
            self.wedged = wedged
            status = health_pb2.HealthCheckResponse.NOT_SERVING if wedged else health_pb2.HealthCheckResponse.SERVING
            if wedged:
                log.warning("edge server wedged (%s): health NOT_SERVING",
                            "worker pool saturated" if saturated else "stalled: " + ", ".join(stalled))
            else:
                log.info("edge server recovered: health SERVING")
            for s in self.services:
                self.health.set(s.service_name, status)
            self.health.set("", status)
            self.metrics.serving.set(0 if wedged else 1)
        return self.wedged

    def _watch(self) -> None:
        period = max(0.05, min(1.0, self.config.wedge_seconds / 4, self.config.stream_idle_seconds / 4))
        while not self._stopped.wait(period):
            try:
                self.check()
            except Exception:  # the watchdog must outlive any bug in a service's stalled()
                log.exception("edge server watchdog")

    def stop(self, grace: float | None = None) -> None:
        """Graceful: NOT_SERVING, refuse new calls, drain in-flight ones for ``grace``
        seconds, cancel what is left, stop services. Returns within about ``grace`` + 5 s."""
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        self.metrics.serving.set(0)
        self.health.enter_graceful_shutdown()
        grace = self.config.grace_seconds if grace is None else grace
        if not self._server.stop(grace).wait(grace + 5.0):
            log.warning("edge server: calls still running %.1f s after the grace period", 5.0)
        for s in self.services:
            s.stop()
        self.metrics.shutdown_http()
        log.info("edge server stopped")

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT -> graceful stop (main thread only)."""
        def handler(signum, frame):
            log.info("signal %s: draining", signum)
            threading.Thread(target=self.stop, daemon=True).start()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def __enter__(self) -> "EdgeServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
