"""Dynamic micro-batching: concurrent requests for one model endpoint are queued in a
bounded queue and run together, up to ``max_batch`` items, waiting at most
``max_wait_seconds`` after the first item of a batch for more to arrive.
``max_batch=1`` turns batching off (same queue, same bounds).

A full queue refuses at once (:class:`QueueFull`, RESOURCE_EXHAUSTED to the caller) —
bounded memory, and the caller learns immediately rather than timing out. Items whose
deadline passed while queued are dropped before they run."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgepilot.edge_agent.server.metrics import ServerMetrics


class QueueFull(Exception):
    pass


class DeadlineExpired(Exception):
    pass


@dataclass
class Pending:
    x: np.ndarray
    deadline: float | None                   # time.monotonic() seconds, or None
    enqueued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    started: float = 0.0
    compute_seconds: float = 0.0
    batch_size: int = 0
    cancelled: bool = False

    def wait(self, timeout: float | None) -> bool:
        return self.done.wait(timeout)


class MicroBatcher:
    def __init__(self, name: str, run_batch: Callable[[np.ndarray], np.ndarray], max_batch: int = 16,
                 max_wait_seconds: float = 0.002, queue_capacity: int = 256, metrics: ServerMetrics | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_seconds < 0:
            raise ValueError(f"max_wait_seconds must be >= 0, got {max_wait_seconds}")
        if queue_capacity < 1:
            raise ValueError(f"queue_capacity must be >= 1, got {queue_capacity}")
        self.name = name
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_seconds = max_wait_seconds
        self.metrics = metrics
        self._queue: queue.Queue[Pending] = queue.Queue(maxsize=queue_capacity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None   # monotonic start of the batch now running

    def start(self) -> "MicroBatcher":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the queue is drained (items already accepted still run)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def busy_seconds(self) -> float:
        """How long the batch now running has been running (0 when idle)."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, x: np.ndarray, deadline: float | None = None) -> Pending:
        if self._stop.is_set():
            raise QueueFull(f"{self.name} is shutting down")
        item = Pending(x, deadline)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if self.metrics:
                self.metrics.rejected.labels(self.name).inc()
            raise QueueFull(f"queue of {self.name} is full ({self._queue.maxsize} waiting)") from None
        if self.metrics:
            self.metrics.queue_depth.labels(self.name).set(self._queue.qsize())
        return item

    def _collect(self, first: Pending) -> list[Pending]:
        batch = [first]
        until = time.monotonic() + self.max_wait_seconds
        while len(batch) < self.max_batch:
            remaining = until - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = self._collect(first) if self.max_batch > 1 else [first]
            if self.metrics:
                self.metrics.queue_depth.labels(self.name).set(self._queue.qsize())
            now = time.monotonic()
            live = []
            for item in batch:
                if item.cancelled or (item.deadline is not None and now >= item.deadline):
                    item.error = DeadlineExpired("deadline passed while queued")
                    item.done.set()
                else:
                    live.append(item)
            if not live:
                continue
            for item in live:
                item.started = now
            self._busy_since = now
            try:
                out = self.run_batch(np.stack([item.x for item in live]))
                seconds = time.monotonic() - now
                for i, item in enumerate(live):
                    item.result = out[i]
            except Exception as exc:  # a failing batch fails its items, never the loop
                seconds = time.monotonic() - now
                for item in live:
                    item.error = exc
            finally:
                self._busy_since = None
            for item in live:
                item.compute_seconds = seconds
                item.batch_size = len(live)
                item.done.set()
            if self.metrics:
                self.metrics.batch_size.labels(self.name).observe(len(live))
                self.metrics.compute.labels(self.name).observe(seconds)
