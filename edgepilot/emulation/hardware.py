"""The emulated-hardware layer: compute and link emulation on a laptop.

An emulated device does not burn cycles; it *holds* the work for as long as the
hardware it stands for would take, on a compressed clock: ``time_scale`` wall seconds
per emulated second (0.1 turns a 5 s task into 500 ms of wall time). Times reported by
the fleet are in emulated seconds, so they compare 1:1 with the system model.

* compute: ``cycles / (b * F)`` (2) at the device's clock ``F`` (a Jetson Nano's
  Cortex-A57 at 1.43 GHz by default) and CPU frequency ratio ``b``;
* link: the uplink / downlink / backhaul rates of the system model (4), with the
  interference of the UEs that share the UE's edge server and channel in the round (5);
  the payload bytes really travel over gRPC and the link then holds the transfer until
  the shaped duration has passed.

stdlib + numpy only: the agent (device side) imports this module.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

#: Default compressed clock: wall seconds per emulated second.
DEFAULT_TIME_SCALE = 0.1


def device_cpu_hz(profile: str, default: float | None = None) -> float:
    """Compute speed of an emulated device (hertz): the ``cpu_hz`` of its hardware
    profile (``hardware/profiles/<profile>.yaml``), else ``default``."""
    from edgepilot.hardware.profiles import ProfileError, load_profile

    try:
        hz = load_profile(profile).cpu_hz
    except ProfileError:
        hz = None
    if hz is not None:
        return hz
    if default is not None:
        return default
    raise KeyError(f"hardware profile {profile!r} is unknown or gives no cpu_hz")


@dataclass(frozen=True)
class EmulationClock:
    """Wall seconds per emulated second, and sleeping on that clock."""

    time_scale: float = DEFAULT_TIME_SCALE

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and 0 < self.time_scale <= 10):
            raise ValueError(f"time_scale must be in (0, 10] wall seconds per emulated second, got {self.time_scale}")

    def wall(self, emulated_seconds: float) -> float:
        return emulated_seconds * self.time_scale

    def emulated(self, wall_seconds: float) -> float:
        return wall_seconds / self.time_scale

    def sleep_until(self, wall_deadline: float, stop: threading.Event | None = None) -> None:
        """Sleep until ``time.time() >= wall_deadline``. No busy-wait: a fleet has a hundred
        sleepers at once, and Linux wakes a sleeping thread within ~0.1 ms anyway."""
        while True:
            remaining = wall_deadline - time.time()
            if remaining <= 0:
                return
            if stop is not None:
                if stop.wait(min(remaining, 1.0)):
                    return
            else:
                time.sleep(min(remaining, 1.0))


@dataclass(frozen=True)
class ComputeEmulator:
    """A processor of ``cpu_hz`` hertz: (2) computation time, (3) energy."""

    cpu_hz: float
    kappa: float = 1e-27

    def compute_seconds(self, cycles: float, cpu_freq_ratio: float = 1.0) -> float:
        return cycles / (cpu_freq_ratio * self.cpu_hz)  # (2)

    def energy_joules(self, cycles: float, cpu_freq_ratio: float = 1.0) -> float:
        f = cpu_freq_ratio * self.cpu_hz
        return self.kappa * cycles * f * f  # (3)


def shannon_rate_bps(bandwidth_hz: float, signal_w: float, noise_plus_interference_w: float) -> float:
    """B log2(1 + S / (sigma^2 + I)), bits per second (4)."""
    if signal_w <= 0:
        return 0.0
    return bandwidth_hz * math.log2(1.0 + signal_w / noise_plus_interference_w)


def transfer_seconds(bits: float, rate_bps: float) -> float:
    if bits <= 0:
        return 0.0
    return math.inf if rate_bps <= 0 else bits / rate_bps


@dataclass(frozen=True)
class RadioCell:
    """The radio of one edge server: the rates of (4) for the UEs it serves."""

    channel_bandwidth_hz: float
    noise_power_w: float
    ue_max_power_w: float
    edge_power_w: float
    cloud_power_w: float

    def uplink_rate_bps(self, transmit_power_ratio: float, gain: float, interference_w: float = 0.0) -> float:
        rx = transmit_power_ratio * self.ue_max_power_w * gain
        return shannon_rate_bps(self.channel_bandwidth_hz, rx, self.noise_power_w + interference_w)

    def downlink_rate_bps(self, gain: float) -> float:
        return shannon_rate_bps(self.channel_bandwidth_hz, self.edge_power_w * gain, self.noise_power_w)

    def backhaul_seconds(self, input_bits: float, output_bits: float, edge_cloud_gain: float) -> float:
        """T22 (9): the edge server forwards the input to the cloud and gets the output back."""
        up = shannon_rate_bps(self.channel_bandwidth_hz, self.edge_power_w * edge_cloud_gain, self.noise_power_w)
        down = shannon_rate_bps(self.channel_bandwidth_hz, self.cloud_power_w * edge_cloud_gain, self.noise_power_w)
        return transfer_seconds(input_bits, up) + transfer_seconds(output_bits, down)


class SerialTimeline:
    """A resource that serves one job after another on the wall clock (a FIFO queue).

    ``reserve(ready_at, duration)`` books the next free slot starting no earlier than
    ``ready_at`` and returns (start, end) wall times. Thread-safe.
    """

    def __init__(self) -> None:
        self._cursor = 0.0
        self._lock = threading.Lock()

    @property
    def end(self) -> float:
        """When the last job booked so far finishes."""
        with self._lock:
            return self._cursor

    def reserve(self, ready_at: float, duration: float) -> tuple[float, float]:
        with self._lock:
            start = max(self._cursor, ready_at)
            end = start + duration
            self._cursor = end
            return start, end
