"""A disk-backed, ordered, bounded outbox: what the agent publishes goes here first.

Each record is one file ``{seq:016d}.rec`` (written to a temp file, then renamed, so a
crash never leaves half a record); it is deleted when the broker acknowledges it (QoS 1
PUBACK). While the broker is gone, records pile up on disk up to ``max_records``; past
that the oldest are dropped and counted. When the connection returns, the pump re-sends
every record not yet acknowledged, oldest first, so subscribers see them in order
(at-least-once: a record acknowledged just before a crash may come twice; consumers
dedupe on (ue_id, seq)).

Sequence numbers never repeat, across restarts and crashes too, so (ue_id, seq) is a
safe de-duplication key: numbers are reserved in blocks of ``SEQ_BLOCK`` in the file
``next_seq`` (written and fsynced before any number of the block is used); a restart
continues after the last reservation (or after the highest record on disk), so a crash
leaves a gap in the numbers, never a repeat. Only deleting the outbox directory resets
them.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

log = logging.getLogger("edgepilot.fleet.outbox")

_HEADER = struct.Struct("!BBH")  # qos, retain, topic length
SEQ_BLOCK = 256  # sequence numbers reserved on disk at a time


class Outbox:
    """Ordered records on disk, published by a pump thread through ``publish``.

    ``publish(topic, payload, qos, retain) -> mid or None`` is called from the pump
    thread; return None when the record cannot be sent now (not connected). Call
    :meth:`acked` with the mid when the broker acknowledges it, :meth:`connection_lost`
    when the connection drops and :meth:`kick` when it is back.
    """

    def __init__(self, directory: str | os.PathLike, max_records: int = 10_000, max_inflight: int = 32,
                 fsync: bool = False) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.max_inflight = max_inflight
        self.fsync = fsync
        self._cond = threading.Condition()
        self._pending: OrderedDict[int, None] = OrderedDict()  # seq -> None, ascending, not yet acked
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._sent: set[int] = set()
        self._early_acks: set[int] = set()
        self._epoch = 0
        self.dropped = 0
        self.published = 0
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        existing = sorted(int(p.stem) for p in self.directory.glob("*.rec"))
        for seq in existing:
            self._pending[seq] = None
        self._next_seq = max((existing[-1] + 1) if existing else 0, self._load_seq_floor())
        self._reserved = self._next_seq  # numbers below this are reserved on disk
        self._publish: Callable | None = None
        self._connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- sequence numbers survive restarts --------------------------------------------
    def _seq_file(self) -> Path:
        return self.directory / "next_seq"

    def _load_seq_floor(self) -> int:
        try:
            text = self._seq_file().read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return int(text or 0)
        except ValueError:
            # a torn write cannot happen (temp file + rename); refuse to guess
            raise RuntimeError(f"{self._seq_file()}: not a sequence number: {text[:40]!r}") from None

    def _reserve_locked(self, upto: int) -> None:
        """Record on disk that every number below ``upto`` may be in use."""
        tmp = self._seq_file().with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(upto))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._seq_file())
        self._reserved = upto

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:016d}.rec"

    # -- producer side ----------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
            make_payload: Callable[[int], bytes] | None = None, send_now: bool = False) -> int:
        """Append a record; returns its sequence number. ``make_payload(seq)`` (when
        given) builds the payload from the sequence number (telemetry carries it).
        ``send_now``: when nothing older waits, publish from the calling thread at once
        (no hop to the pump thread; the record is on disk first all the same)."""
        with self._cond:
            seq = self._next_seq
            if seq >= self._reserved:
                self._reserve_locked(seq + SEQ_BLOCK)
            self._next_seq += 1
            if make_payload is not None:
                payload = make_payload(seq)
            t = topic.encode()
            tmp = self.directory / f"{seq:016d}.tmp"
            with open(tmp, "wb") as f:
                f.write(_HEADER.pack(qos, int(retain), len(t)) + t + payload)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self._path(seq))
            self._pending[seq] = None
            while len(self._pending) > self.max_records:
                self._drop_oldest()
            now = (send_now and self._publish is not None and self._connected
                   and len(self._inflight) < self.max_inflight and self._next_unsent() == seq)
            if now:
                self._sent.add(seq)
                epoch = self._epoch
                t_str, body = topic, payload
            else:
                self._cond.notify_all()
        if now:
            self._send_claimed(seq, t_str, body, qos, retain, epoch)
        return seq

    @property
    def backlog_unlocked(self) -> int:
        return len(self._pending)

    def _send_claimed(self, seq: int, topic: str, payload: bytes, qos: int, retain: bool, epoch: int) -> None:
        """Publish a record already marked sent (outside the lock), then record its mid."""
        mid = self._publish(topic, payload, qos, retain)
        with self._cond:
            if epoch != self._epoch:  # the connection dropped meanwhile: resent on reconnect
                return
            if mid is None:
                self._sent.discard(seq)
                self._connected = False
                return
            self.published += 1
            if qos == 0 or mid in self._early_acks:
                self._early_acks.discard(mid)
                self._sent.discard(seq)
                if seq in self._pending:
                    del self._pending[seq]
                    self._path(seq).unlink(missing_ok=True)
                self._cond.notify_all()
            else:
                self._inflight[mid] = seq

    def _drop_oldest(self) -> None:
        seq, _ = self._pending.popitem(last=False)
        self._path(seq).unlink(missing_ok=True)
        self._sent.discard(seq)
        for mid, s in list(self._inflight.items()):
            if s == seq:
                del self._inflight[mid]
        self.dropped += 1
        log.warning("outbox full (%d records): dropped record %d", self.max_records, seq)

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._pending)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def read(self, seq: int) -> tuple[str, bytes, int, bool]:
        data = self._path(seq).read_bytes()
        qos, retain, tlen = _HEADER.unpack_from(data)
        off = _HEADER.size
        return data[off:off + tlen].decode(), data[off + tlen:], qos, bool(retain)

    def pending_seqs(self) -> list[int]:
        with self._cond:
            return list(self._pending)

    # -- connection side ----------------------------------------------------------------
    def start(self, publish: Callable[[str, bytes, int, bool], int | None]) -> None:
        self._publish = publish
        self._thread = threading.Thread(target=self._pump, name=f"outbox-{self.directory.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def kick(self) -> None:
        """The connection is up (again): resend everything not yet acknowledged."""
        with self._cond:
            self._connected = True
            self._reset_locked()
            self._cond.notify_all()

    def connection_lost(self) -> None:
        with self._cond:
            self._connected = False
            self._reset_locked()

    def _reset_locked(self) -> None:
        self._epoch += 1
        self._inflight.clear()
        self._sent.clear()
        self._early_acks.clear()

    def acked(self, mid: int) -> None:
        with self._cond:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early_acks.add(mid)  # acknowledged before the pump recorded the mid
                return
            self._sent.discard(seq)
            if seq in self._pending:
                del self._pending[seq]
                self._path(seq).unlink(missing_ok=True)
            self._cond.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def _next_unsent(self) -> int | None:
        for seq in self._pending:
            if seq not in self._sent:
                return seq
        return None

    def _pump(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stop.is_set()
                    or (self._connected and len(self._inflight) < self.max_inflight and self._next_unsent() is not None),
                    timeout=1.0,
                )
                if self._stop.is_set():
                    return
                if not (self._connected and len(self._inflight) < self.max_inflight):
                    continue
                seq = self._next_unsent()
                if seq is None:
                    continue
                try:
                    topic, payload, qos, retain = self.read(seq)
                except FileNotFoundError:
                    self._pending.pop(seq, None)
                    continue
                self._sent.add(seq)
                epoch = self._epoch
            # publish outside the lock: the client's network thread holds its own lock
            # while it reports a PUBACK to acked(), which takes ours.
            self._send_claimed(seq, topic, payload, qos, retain, epoch)
