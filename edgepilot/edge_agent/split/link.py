"""Link emulation for the latency-vs-rate experiment (paper Fig. 3): a link of a given
rate (bytes per second) and round-trip time. ``transfer`` really sleeps, so a client
using it sees the delay end to end; ``*_seconds`` give the same delay as a number."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatedLink:
    uplink_bytes_per_second: float
    downlink_bytes_per_second: float | None = None   # None: same as uplink
    rtt_seconds: float = 0.0

    def __post_init__(self):
        if self.uplink_bytes_per_second <= 0:
            raise ValueError(f"uplink_bytes_per_second must be > 0, got {self.uplink_bytes_per_second}")
        if self.downlink_bytes_per_second is not None and self.downlink_bytes_per_second <= 0:
            raise ValueError(f"downlink_bytes_per_second must be > 0, got {self.downlink_bytes_per_second}")
        if self.rtt_seconds < 0:
            raise ValueError(f"rtt_seconds must be >= 0, got {self.rtt_seconds}")

    @property
    def downlink(self) -> float:
        return self.downlink_bytes_per_second or self.uplink_bytes_per_second

    def uplink_seconds(self, n_bytes: int) -> float:
        return n_bytes / self.uplink_bytes_per_second + self.rtt_seconds / 2

    def downlink_seconds(self, n_bytes: int) -> float:
        return n_bytes / self.downlink + self.rtt_seconds / 2

    def transfer(self, n_bytes: int, direction: str = "up") -> float:
        seconds = self.uplink_seconds(n_bytes) if direction == "up" else self.downlink_seconds(n_bytes)
        time.sleep(seconds)
        return seconds
