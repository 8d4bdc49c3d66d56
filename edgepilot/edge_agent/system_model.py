"""The cloud-edge system model of the DTAC paper (section II, eq. 2-13), the vector
reward (17) and the local state (14).

numpy only: this module is the one source of truth for the equations, used by the
simulator in ``cloud_trainer`` and by the UE agent on the device. Everything is
vectorized over a batch of rounds (axis 0) and the UEs of a round (axis 1); there is
no Python loop over UEs. All quantities are SI: seconds, joules, bits, hertz, watts.

Where the paper is loose, this module resolves it as follows (issue #2):

* rates use log base 2 (bits per second); the downlink rate R(k, n) uses the same
  channel gain |h(k, n)|^2 as the uplink;
* interference (5) counts only UEs of the same edge server that offload
  (x in {1, 2}) on the same channel, each weighted by its own gain:
  P_I^n = sum_m a_m P_UE |h(k, m)|^2;
* the round duration (12): a UE computing locally takes T1; a UE offloaded to its
  edge server takes the sum of T1 + T21 over all UEs of the same edge server offloaded
  to the edge (itself included); a UE offloaded to the cloud takes the sum of T1 + T21
  over all cloud-offloaded UEs (of any edge server) plus its own T22. T_t is the
  maximum of these per-UE times T_t^n, which also enter the reward (17);
* a cached result (c = 1) zeroes only the edge computation time of an x = 1 task.

UEs can be padded: ``ue_mask`` marks the UEs that exist in a round; a padded UE never
offloads, interferes, waits or costs anything.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "LOCAL",
    "EDGE",
    "CLOUD",
    "LOCAL_STATE_DIM",
    "LOCAL_STATE_FIELDS",
    "NetworkParams",
    "RoundTasks",
    "Decision",
    "RoundResult",
    "shannon_rate_bps",
    "evaluate_round",
    "local_state",
    "vector_reward",
]

LOCAL, EDGE, CLOUD = 0, 1, 2  # offloading decision x (1)

#: The six entries of the local state s_t^n (14), in order.
LOCAL_STATE_FIELDS = (
    "received_power_w",  # P_UE |h(k, n)|^2
    "local_compute_time_s",  # T1*(0)
    "edge_compute_time_s",  # T1*(1)
    "ue_edge_comm_time_s",  # T21*(1)
    "cloud_compute_time_s",  # T1*(2)
    "edge_cloud_comm_time_s",  # T22*(2)
)
LOCAL_STATE_DIM = len(LOCAL_STATE_FIELDS)


@dataclass(frozen=True)
class NetworkParams:
    """Fixed parameters of the network (SI units).

    Each field may be a float or an array that broadcasts against (batch, UEs), e.g.
    a per-UE maximum CPU frequency for heterogeneous UE types.
    """

    channel_bandwidth_hz: float  # B, bandwidth of one of the L channels
    noise_power_w: float  # sigma^2
    ue_max_power_w: float  # P_UE
    edge_power_w: float  # P_E
    cloud_power_w: float  # P_C
    ue_max_cpu_hz: float  # F_UE
    edge_cpu_hz: float  # F_E
    cloud_cpu_hz: float  # F_C
    kappa: float  # effective capacitance coefficient of the UE chipset (3)
    w_time: float = 1.0  # omega_1 (13)
    w_energy: float = 1.0  # omega_2 (13)


@dataclass
class RoundTasks:
    """What the network looks like in a batch of rounds: who has which task, and the
    channel gains. Arrays are (batch, N) unless noted; a (N,) array is taken as one round.
    """

    edge: np.ndarray  # int, index k of the UE's edge server
    gain: np.ndarray  # |h(k, n)|^2, linear
    edge_cloud_gain: np.ndarray  # (batch, K): |h(k, c)|^2 of each edge server
    input_bits: np.ndarray  # S_i^m
    output_bits: np.ndarray  # S_o^m
    cycles_per_bit: np.ndarray  # C^m
    cached: np.ndarray  # c_t^k(m) in {0, 1} for the UE's task at its edge server
    ue_mask: np.ndarray | None = None  # bool, True where the UE exists

    def __post_init__(self) -> None:
        self.edge = _as_2d(self.edge, np.int64)
        shape = self.edge.shape
        for name in ("gain", "input_bits", "output_bits", "cycles_per_bit", "cached"):
            arr = _as_2d(getattr(self, name), np.float64)
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape} like edge")
            setattr(self, name, arr)
        self.edge_cloud_gain = _as_2d(self.edge_cloud_gain, np.float64)
        if self.edge_cloud_gain.shape[0] != shape[0]:
            raise ValueError(
                f"edge_cloud_gain has {self.edge_cloud_gain.shape[0]} rounds, expected {shape[0]}"
            )
        if shape[1] and self.edge.max(initial=0) >= self.edge_cloud_gain.shape[1]:
            raise ValueError(
                f"edge index {int(self.edge.max())} out of range for {self.edge_cloud_gain.shape[1]} edge servers"
            )
        if self.ue_mask is None:
            self.ue_mask = np.ones(shape, dtype=bool)
        else:
            self.ue_mask = _as_2d(self.ue_mask, bool)
            if self.ue_mask.shape != shape:
                raise ValueError(f"ue_mask has shape {self.ue_mask.shape}, expected {shape}")

    @property
    def num_edges(self) -> int:
        return int(self.edge_cloud_gain.shape[1])

    @property
    def batch_size(self) -> int:
        return int(self.edge.shape[0])

    @property
    def num_ues(self) -> int:
        return int(self.edge.shape[1])


@dataclass
class Decision:
    """The joint action of a batch of rounds: offload x (1), channel l (0-based), and
    the transmit power ratio a and CPU frequency ratio b, both in (0, 1]."""

    offload: np.ndarray  # int in {0, 1, 2}
    channel: np.ndarray  # int in {0, ..., L-1}
    transmit_power_ratio: np.ndarray  # a_t^n
    cpu_freq_ratio: np.ndarray  # b_t^n

    def __post_init__(self) -> None:
        self.offload = _as_2d(self.offload, np.int64)
        self.channel = _as_2d(self.channel, np.int64)
        self.transmit_power_ratio = _as_2d(self.transmit_power_ratio, np.float64)
        self.cpu_freq_ratio = _as_2d(self.cpu_freq_ratio, np.float64)


@dataclass
class RoundResult:
    """Per-UE (batch, N) and per-round (batch,) outcome of :func:`evaluate_round`."""

    compute_time_s: np.ndarray  # T1 (2)
    ue_edge_comm_time_s: np.ndarray  # T21 (8)
    edge_cloud_comm_time_s: np.ndarray  # T22 (9)
    local_energy_j: np.ndarray  # E_c (3)
    transmit_energy_j: np.ndarray  # E_u (6)
    energy_j: np.ndarray  # E = E_u + E_c (7)
    uplink_rate_bps: np.ndarray  # R(n, k) with interference (4)
    interference_w: np.ndarray  # P_I (5)
    execution_time_s: np.ndarray  # T_t^n including queuing (12)
    round_time_s: np.ndarray  # T_t (12)
    total_energy_j: np.ndarray  # sum_n E_t^n
    objective: np.ndarray  # w1 T_t + w2 sum_n E_t^n (13)

    def for_round(self, i: int = 0) -> dict:
        """One round as plain Python values (the ``evaluate-round`` output)."""
        per_ue = ("compute_time_s", "ue_edge_comm_time_s", "edge_cloud_comm_time_s", "energy_j", "execution_time_s")
        n = self.energy_j.shape[1]
        return {
            "ues": [{k: float(getattr(self, k)[i, j]) for k in per_ue} for j in range(n)],
            "round_time_s": float(self.round_time_s[i]),
            "objective": float(self.objective[i]),
        }


def _as_2d(x, dtype) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a (batch, N) or (N,) array, got shape {arr.shape}")
    return arr


def shannon_rate_bps(bandwidth_hz, signal_w, noise_plus_interference_w) -> np.ndarray:
    """B log2(1 + S / (sigma^2 + I)) in bits per second (4)."""
    return bandwidth_hz * np.log2(1.0 + signal_w / noise_plus_interference_w)


def _group_total(values: np.ndarray, flat_group: np.ndarray, num_groups: int) -> np.ndarray:
    """Sum ``values`` (batch, N) over the UEs sharing a group, and give each UE its
    group's total. ``flat_group`` holds round-major group ids (round * groups + group),
    raveled. One bincount, no loop over UEs."""
    totals = np.bincount(flat_group, weights=values.ravel(), minlength=num_groups)
    return totals[flat_group].reshape(values.shape)


def _edge_cloud_rates(params: NetworkParams, edge_cloud_gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R(k, c) and R(c, k) (4) of every edge server, (batch, K)."""
    up = shannon_rate_bps(params.channel_bandwidth_hz, params.edge_power_w * edge_cloud_gain, params.noise_power_w)
    down = shannon_rate_bps(params.channel_bandwidth_hz, params.cloud_power_w * edge_cloud_gain, params.noise_power_w)
    return up, down


def evaluate_round(params: NetworkParams, tasks: RoundTasks, decision: Decision) -> RoundResult:
    """Times, energies and objective of a batch of rounds under a joint decision,
    eq. (2)-(13). A rate that underflows to zero gives an infinite time, never nan."""
    with np.errstate(divide="ignore"):
        return _evaluate_round(params, tasks, decision)


def _evaluate_round(params: NetworkParams, tasks: RoundTasks, decision: Decision) -> RoundResult:
    x = decision.offload
    if x.shape != tasks.edge.shape:
        raise ValueError(f"decision has shape {x.shape}, tasks have {tasks.edge.shape}")
    batch, n = x.shape
    num_edges = tasks.num_edges
    present = tasks.ue_mask
    padded = not present.all()
    a = decision.transmit_power_ratio
    b = decision.cpu_freq_ratio
    s_in, s_out = tasks.input_bits, tasks.output_bits
    work_cycles = s_in * tasks.cycles_per_bit
    if padded:  # a padded UE computes nothing locally: no time, no energy, no interference
        x = np.where(present, x, LOCAL)
        work_cycles = np.where(present, work_cycles, 0.0)
    is_local, is_edge, is_cloud = (x == LOCAL), (x == EDGE), (x == CLOUD)
    offloaded = ~is_local
    # round-major edge-server ids, shared by the gathers and group sums below
    flat_edge = (np.arange(batch)[:, None] * num_edges + tasks.edge).ravel()

    # (2) computation time and (3) local computation energy. Products with 0/1
    # indicators are cheaper than np.where and safe here: every factor is finite.
    f_local, f_edge = is_local.astype(np.float64), is_edge.astype(np.float64)
    local_cpu_hz = b * params.ue_max_cpu_hz
    seconds_per_cycle = (
        f_local / local_cpu_hz
        + f_edge * (1.0 - tasks.cached) / params.edge_cpu_hz
        + is_cloud.astype(np.float64) / params.cloud_cpu_hz
    )
    t1 = work_cycles * seconds_per_cycle
    e_c = (params.kappa * f_local) * work_cycles * local_cpu_hz * local_cpu_hz

    # (5) interference from same-edge, same-channel offloading UEs, each with its own gain
    num_channels = int(decision.channel.max(initial=0)) + 1
    tx_power_w = a * params.ue_max_power_w
    rx_power_w = tx_power_w * tasks.gain
    offloaded_rx_w = (1.0 - f_local) * rx_power_w
    cell_channel = flat_edge * num_channels + decision.channel.ravel()
    interference = _group_total(offloaded_rx_w, cell_channel, batch * num_edges * num_channels) - offloaded_rx_w
    interference = np.maximum(interference, 0.0)  # guard round-off of the subtraction

    # (4) rates
    uplink = shannon_rate_bps(params.channel_bandwidth_hz, rx_power_w, params.noise_power_w + interference)
    downlink = shannon_rate_bps(params.channel_bandwidth_hz, params.edge_power_w * tasks.gain, params.noise_power_w)
    r_kc, r_ck = _edge_cloud_rates(params, tasks.edge_cloud_gain)

    # (6)-(9). np.where, not indicator products, wherever a rate may underflow to 0:
    # the infinite time of an option not taken must not become 0 * inf = nan.
    uplink_time = s_in / uplink
    e_u = np.where(offloaded, tx_power_w * uplink_time, 0.0)
    t21 = np.where(offloaded, uplink_time + s_out / downlink, 0.0)
    backhaul_s = s_in / r_kc.ravel()[flat_edge].reshape(batch, n) + s_out / r_ck.ravel()[flat_edge].reshape(batch, n)
    t22 = np.where(is_cloud, backhaul_s, 0.0)
    energy = e_u + e_c

    # (10)-(12) queuing: edge-offloaded UEs of one edge server serve one after another,
    # cloud-offloaded UEs of all edge servers likewise, each cloud task then adds its T22.
    served = t1 + t21
    edge_queue = _group_total(np.where(is_edge, served, 0.0), flat_edge, batch * num_edges)
    cloud_queue = np.where(is_cloud, served, 0.0).sum(axis=1, keepdims=True)
    t_exec = np.where(is_local, t1, np.where(is_edge, edge_queue, cloud_queue + t22))
    round_time = t_exec.max(axis=1, initial=0.0)
    total_energy = energy.sum(axis=1)
    objective = params.w_time * round_time + params.w_energy * total_energy  # (13)
    if padded:  # padded UEs report no rate and no interference
        uplink = np.where(present, uplink, 0.0)
        interference = np.where(present, interference, 0.0)
    return RoundResult(
        compute_time_s=t1,
        ue_edge_comm_time_s=t21,
        edge_cloud_comm_time_s=t22,
        local_energy_j=e_c,
        transmit_energy_j=e_u,
        energy_j=energy,
        uplink_rate_bps=uplink,
        interference_w=interference,
        execution_time_s=t_exec,
        round_time_s=round_time,
        total_energy_j=total_energy,
        objective=objective,
    )


def vector_reward(params: NetworkParams, result: RoundResult) -> np.ndarray:
    """r_t = {-w1 T_t^n, -w2 E_t^n} (17), shaped (batch, N, 2): [..., 0] time, [..., 1] energy."""
    return np.stack([-params.w_time * result.execution_time_s, -params.w_energy * result.energy_j], axis=-1)


def local_state(params: NetworkParams, tasks: RoundTasks) -> np.ndarray:
    """The local state s_t^n (14) of every UE, (batch, N, 6).

    Lower bounds of each option's times: (2), (8), (9) evaluated with x = option,
    a = b = 1 and no interference or queuing. Entries follow ``LOCAL_STATE_FIELDS``.
    The cached flag of the UE's task enters T1*(1) exactly as in (2).
    """
    s_in, s_out = tasks.input_bits, tasks.output_bits
    work_cycles = s_in * tasks.cycles_per_bit
    rx_power = params.ue_max_power_w * tasks.gain
    uplink = shannon_rate_bps(params.channel_bandwidth_hz, rx_power, params.noise_power_w)
    downlink = shannon_rate_bps(params.channel_bandwidth_hz, params.edge_power_w * tasks.gain, params.noise_power_w)
    r_kc, r_ck = (np.take_along_axis(r, tasks.edge, axis=1) for r in _edge_cloud_rates(params, tasks.edge_cloud_gain))
    state = np.stack(
        [
            rx_power,
            work_cycles / params.ue_max_cpu_hz,
            (1.0 - tasks.cached) * work_cycles / params.edge_cpu_hz,
            s_in / uplink + s_out / downlink,
            work_cycles / params.cloud_cpu_hz,
            s_in / r_kc + s_out / r_ck,
        ],
        axis=-1,
    )
    return np.where(tasks.ue_mask[..., None], state, 0.0)


def retain_freed_heap(trim_threshold_bytes: int = 64 << 20) -> bool:
    """Ask glibc to keep up to ``trim_threshold_bytes`` of freed heap instead of giving
    it back to the kernel at once.

    ``evaluate_round`` on a (256, 30) batch allocates about 2 MB of temporaries; with
    glibc's default 128 kB trim threshold that memory goes back to the kernel when they
    are freed and is page-faulted in again by the next call, which nearly triples the
    cost of a call (measured: 1.5 ms -> 0.57 ms). Loops that call the model many times
    (the simulator, training) call this once. A no-op returning False where the C
    library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold = -1  # from glibc's <malloc.h>
    return bool(mallopt(ctypes.c_int(m_trim_threshold), ctypes.c_int(int(trim_threshold_bytes))))


def params_from_mapping(mapping: dict) -> NetworkParams:
    """Build :class:`NetworkParams` from a dict holding (at least) its field names."""
    return NetworkParams(**{f.name: mapping[f.name] for f in fields(NetworkParams) if f.name in mapping})
