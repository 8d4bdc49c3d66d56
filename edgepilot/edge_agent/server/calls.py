"""Per-call bookkeeping shared by every service of the edge server: one server
interceptor wraps each RPC's handler, whatever its service (split inference, health,
reflection, later ones), and

- accounts it in the metrics (started / handled by code / failures by kind, including
  requests that fail to deserialize and streams the client cancels or lets expire);
- bounds the open streams: a streaming call beyond ``max_streams`` is refused at once
  with RESOURCE_EXHAUSTED, so streams can never hold every worker thread and unary calls
  and health checks always find one;
- records activity of every stream (a request read, a response sent), so the server's
  watchdog can cancel a stream that has been idle for ``idle_seconds`` (a client that
  neither sends nor reads), which frees its worker even when it is blocked in gRPC's
  flow control.

The sync gRPC server runs one worker thread per call for the call's whole life; these
rules are what keep a worker pool of fixed size from being used up by clients."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, Optional

import grpc

from edgepilot.edge_agent.server.metrics import ServerMetrics


#: gRPC reports a call without a deadline as an (almost) infinite time remaining (~9e18 s)
NO_DEADLINE_SECONDS = 1e6


def check_deadline_bounds(default_seconds: float, max_seconds: float) -> None:
    """The default deadline (for calls without one) must be positive and within the maximum."""
    if not 0 < default_seconds <= max_seconds:
        raise ValueError("default_deadline_seconds must be > 0 and <= max_deadline_seconds, got "
                         f"{default_seconds} / {max_seconds}")


def grpc_deadline_seconds(time_remaining: Optional[float]) -> Optional[float]:
    """Seconds left of a call's gRPC deadline (``context.time_remaining()``), or None when
    the call has none. Every service that bounds its waits reads deadlines through this."""
    if time_remaining is None or not math.isfinite(time_remaining) or time_remaining > NO_DEADLINE_SECONDS:
        return None
    return time_remaining

log = logging.getLogger("edgepilot.server")


class _Call:
    __slots__ = ("method", "context", "started", "last_activity", "streaming", "cut")

    def __init__(self, method: str, context, streaming: bool):
        self.method = method
        self.context = context
        self.started = self.last_activity = time.monotonic()
        self.streaming = streaming
        self.cut = False

    def touch(self) -> None:
        self.last_activity = time.monotonic()


def _code_of(context) -> grpc.StatusCode:
    code = getattr(context, "code", None)
    try:
        value = code() if callable(code) else None
    except Exception:  # pragma: no cover - older grpc without ServicerContext.code()
        value = None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.OK


class CallTracker(grpc.ServerInterceptor):
    def __init__(self, metrics: ServerMetrics, max_streams: int, idle_seconds: float):
        self.metrics = metrics
        self.max_streams = max_streams
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._calls: set = set()
        self._streams = 0

    # --- state the watchdog reads -----------------------------------------------------------
    def active(self) -> int:
        with self._lock:
            return len(self._calls)

    def streams(self) -> int:
        with self._lock:
            return self._streams

    def cut_idle_streams(self, now: Optional[float] = None) -> int:
        """Cancel every stream idle for longer than ``idle_seconds``; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [c for c in self._calls if c.streaming and not c.cut and now - c.last_activity > self.idle_seconds]
            for c in idle:
                c.cut = True
        for c in idle:
            log.info("cutting %s: idle for %.1f s", c.method, now - c.last_activity)
            self.metrics.failure(c.method, "idle")
            c.context.cancel()
        return len(idle)

    # --- admission -------------------------------------------------------------------------------
    def _enter(self, method: str, context, streaming: bool) -> Optional[_Call]:
        with self._lock:
            if streaming:
                if self._streams >= self.max_streams:
                    return None
                self._streams += 1
            call = _Call(method, context, streaming)
            self._calls.add(call)
        self.metrics.call_entered(method)
        if streaming:
            self.metrics.streams_open.inc()
        return call

    def _leave(self, call: _Call, code: grpc.StatusCode, failure: Optional[str] = None) -> None:
        with self._lock:
            if call not in self._calls:
                return
            self._calls.discard(call)
            if call.streaming:
                self._streams -= 1
        if call.streaming:
            self.metrics.streams_open.dec()
        if failure and not call.cut:
            self.metrics.failure(call.method, failure)
        self.metrics.call_left(call.method)
        self.metrics.call_handled(call.method, code.name)

    # --- the interceptor -------------------------------------------------------------------------
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        self.metrics.call_started(method)
        streaming = bool(handler.request_streaming or handler.response_streaming)
        if handler.request_streaming and handler.response_streaming:
            inner, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            inner, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            inner, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            inner, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        behavior = self._wrap(method, inner, streaming, handler.request_streaming, handler.response_streaming)
        return factory(behavior, request_deserializer=self._deserializer(method, handler.request_deserializer),
                       response_serializer=handler.response_serializer)

    def _deserializer(self, method: str, deserialize: Optional[Callable]):
        if deserialize is None:
            return None

        def wrapped(data: bytes):
            try:
                return deserialize(data)
            except Exception:
                # gRPC answers INTERNAL "Exception deserializing request!" without a handler
                self.metrics.failure(method, "deserialize")
                self.metrics.call_handled(method, grpc.StatusCode.INTERNAL.name)
                raise

        return wrapped

    def _wrap(self, method: str, inner: Callable, streaming: bool, request_streaming: bool, response_streaming: bool):
        tracker = self

        def requests(call: _Call, iterator):
            try:
                for item in iterator:
                    call.touch()
                    yield item
            except Exception:
                if not call.cut:
                    raise
                return

        def refuse(context):
            tracker.metrics.failure(method, "refused")
            tracker.metrics.call_handled(method, grpc.StatusCode.RESOURCE_EXHAUSTED.name)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many open streams ({tracker.max_streams}); retry later or use unary calls")

        if not response_streaming:
            def unary_response(request, context):
                call = tracker._enter(method, context, streaming)
                if call is None:
                    refuse(context)
                code, failure = grpc.StatusCode.OK, None
                try:
                    arg = requests(call, request) if request_streaming else request
                    response = inner(arg, context)
                    code = _code_of(context)
                    return response
                except Exception:
                    code = _code_of(context)
                    if code == grpc.StatusCode.OK:
                        code = grpc.StatusCode.CANCELLED if not context.is_active() else grpc.StatusCode.UNKNOWN
                        failure = "stream" if streaming else None
                    raise
                finally:
                    tracker._leave(call, code, failure)

            return unary_response

        def stream_response(request, context):
            call = tracker._enter(method, context, True)
            if call is None:
                refuse(context)
            code, failure = grpc.StatusCode.OK, None
            try:
                arg = requests(call, request) if request_streaming else request
                for response in inner(arg, context):
                    call.touch()
                    yield response
                    call.touch()
                code = _code_of(context)
                if not context.is_active():
                    code, failure = grpc.StatusCode.CANCELLED, "stream"
            except GeneratorExit:   # gRPC stopped the call: cancelled, deadline, or cut
                code, failure = grpc.StatusCode.CANCELLED, "stream"
                raise
            except Exception:
                code = _code_of(context)
                if code == grpc.StatusCode.OK:
                    code = grpc.StatusCode.CANCELLED if not context.is_active() else grpc.StatusCode.UNKNOWN
                failure = "stream"
                raise
            finally:
                tracker._leave(call, code, failure)

        return stream_response
