"""The LAMBO MEC system model (section V-A), vectorized with numpy.

An instance: N UEs with one task each (D_n bits, C_n cycles), K edge servers
(F_k cycles/s), and the uplink rate r_{n,k} of every UE to every server from the
shared radio formula (:func:`edgepilot.edge_agent.system_model.shannon_rate_bps`).
A decision: ``assign[n]`` in {0 (local), 1..K (server k-1)} and ``share[n]``, the
fraction of its server's capacity the UE gets (ignored for local).

* local:   T_n = C_n / f_loc,                     E_n = P_loc C_n / f_loc
* server:  T_n = D_n / r_{n,k} + C_n / (s_n F_k),  E_n = P_tx D_n / r_{n,k}

(The paper counts transmission energy for a remote task and execution energy for a
local one; the result's download is not modelled.) Constraints: T_n <= T_max for every
UE, sum of s_n over the UEs of server k <= 1, each UE local or on one server.

Objectives, one per prompt: "Minimum latency" = mean T_n over the UEs (s),
"Minimum energy" = sum E_n (J).

Best shares for a fixed assignment (:func:`optimal_shares`), derived in
docs/lambo.md: a UE on server k needs s_n >= m_n = C_n / (F_k (T_max - D_n/r_{n,k}));
the assignment is feasible iff those minima fit (sum m_n <= 1 on every server).
Energy does not depend on the shares, so any feasible shares are optimal for it.
For latency, minimise sum_n C_n / (s_n F_k) s.t. sum s_n = 1, s_n >= m_n: convex, and
its KKT conditions give s_n = max(m_n, nu sqrt(C_n)) with nu set so that the shares
sum to 1 (water-filling; without active bounds s_n = sqrt(C_n) / sum sqrt(C)). ``nu``
is found exactly by the active-set iteration nu = (1 - sum_{clamped} m) / sum_{free}
sqrt(C), which only ever clamps more UEs and ends in at most N rounds. Both prompts
use these shares (for energy they are the latency-best among the optimal ones).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional

import numpy as np

from edgepilot.cloud_trainer.lambo.scenario import LamboScenario
from edgepilot.edge_agent.system_model import shannon_rate_bps

LOCAL = 0

#: The prompts the system understands, and the objective each selects.
PROMPTS: Dict[str, str] = {"minimum latency": "latency", "minimum energy": "energy"}
OBJECTIVES = ("latency", "energy")

_TOL = 1e-9


class PromptError(ValueError):
    """A prompt the LAMBO system does not understand; the message names the known ones."""


def objective_of(prompt: str) -> str:
    """``"Minimum latency"`` -> ``"latency"``; case and spacing do not matter."""
    key = " ".join(str(prompt).lower().split())
    if key in PROMPTS:
        return PROMPTS[key]
    if key in OBJECTIVES:
        return key
    raise PromptError(f"unknown prompt {prompt!r}; the prompts are: " + ", ".join(repr(p.capitalize()) for p in PROMPTS))


@dataclass(frozen=True)
class Instances:
    """A batch of B instances of one scenario. Arrays are (B, N) or (B, N, K)."""

    rate_bps: np.ndarray  # (B, N, K) uplink rate of UE n to server k
    data_bits: np.ndarray  # (B, N)
    cycles: np.ndarray  # (B, N)
    server_hz: np.ndarray  # (K,)
    local_hz: float
    tx_power_w: float
    compute_power_w: float
    max_latency_s: float
    ue_xy: Optional[np.ndarray] = None  # (B, N, 2) positions, m
    ue_velocity: Optional[np.ndarray] = None  # (B, N, 2) m/s
    server_xy: Optional[np.ndarray] = None  # (B, K, 2)

    @property
    def batch_size(self) -> int:
        return int(self.cycles.shape[0])

    @property
    def num_ues(self) -> int:
        return int(self.cycles.shape[1])

    @property
    def num_servers(self) -> int:
        return int(self.server_hz.shape[0])

    def take(self, idx) -> "Instances":
        """The instances at ``idx`` (an index array or slice), as a batch."""
        pick = (lambda a: None if a is None else a[idx])
        return replace(self, rate_bps=self.rate_bps[idx], data_bits=self.data_bits[idx], cycles=self.cycles[idx],
                       ue_xy=pick(self.ue_xy), ue_velocity=pick(self.ue_velocity), server_xy=pick(self.server_xy))

    # derived per-option quantities -------------------------------------------------
    @property
    def tx_time_s(self) -> np.ndarray:
        """(B, N, K) D_n / r_{n,k}; inf where the rate underflows to 0."""
        with np.errstate(divide="ignore"):
            return self.data_bits[..., None] / self.rate_bps

    @property
    def local_latency_s(self) -> np.ndarray:
        return self.cycles / self.local_hz

    @property
    def local_energy_j(self) -> np.ndarray:
        return self.compute_power_w * self.local_latency_s

    @property
    def min_share(self) -> np.ndarray:
        """(B, N, K) the least share m_{n,k} of server k that meets T_max; inf where the
        upload alone takes T_max or longer."""
        slack = self.max_latency_s - self.tx_time_s
        with np.errstate(divide="ignore", invalid="ignore"):
            m = self.cycles[..., None] / (self.server_hz * slack)
        return np.where(slack > 0, m, np.inf)


def _channel(scen: LamboScenario, ue_xy: np.ndarray, server_xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = np.linalg.norm(ue_xy[:, :, None, :] - server_xy[:, None, :, :], axis=-1)
    gain = scen.radio.path_gain(np.maximum(d, scen.area.min_distance_m))
    if scen.radio.rayleigh_fading:
        gain = gain * rng.exponential(1.0, size=gain.shape)
    return shannon_rate_bps(scen.radio.bandwidth_hz, scen.device.tx_power_w * gain, scen.radio.noise_power_w)


def sample_instances(scen: LamboScenario, batch: int, rng: np.random.Generator, num_ues: Optional[int] = None) -> Instances:
    """``batch`` random instances: servers and UEs uniform in the square, tasks uniform
    in their ranges, UE velocities uniform in speed and direction, fading drawn."""
    n = scen.num_ues if num_ues is None else int(num_ues)
    k = scen.num_servers
    side = scen.area.side_m
    ue_xy = rng.uniform(0.0, side, size=(batch, n, 2))
    server_xy = rng.uniform(0.0, side, size=(batch, k, 2))
    speed = rng.uniform(0.0, scen.area.max_speed_mps, size=(batch, n))
    angle = rng.uniform(0.0, 2 * np.pi, size=(batch, n))
    velocity = np.stack([speed * np.cos(angle), speed * np.sin(angle)], axis=-1)
    t = scen.tasks
    return Instances(
        rate_bps=_channel(scen, ue_xy, server_xy, rng),
        data_bits=rng.uniform(t.data_bits.low, t.data_bits.high, size=(batch, n)),
        cycles=rng.uniform(t.cycles.low, t.cycles.high, size=(batch, n)),
        server_hz=np.asarray(scen.servers.cpu_hz, dtype=np.float64),
        local_hz=scen.device.cpu_hz, tx_power_w=scen.device.tx_power_w, compute_power_w=scen.device.compute_power_w,
        max_latency_s=t.max_latency_s, ue_xy=ue_xy, ue_velocity=velocity, server_xy=server_xy,
    )


def move(scen: LamboScenario, inst: Instances, dt_s: float, rng: np.random.Generator) -> Instances:
    """The instances ``dt_s`` later: every UE moves on its velocity (reflected at the
    square's edges) and the channel is recomputed with fresh fading; tasks stay."""
    if inst.ue_xy is None or inst.ue_velocity is None or inst.server_xy is None:
        raise ValueError("these instances carry no positions to move")
    side = scen.area.side_m
    xy = inst.ue_xy + dt_s * inst.ue_velocity
    v = inst.ue_velocity.copy()
    for _ in range(2):  # reflect at 0 and side (a move of more than one side is folded twice)
        low, high = xy < 0, xy > side
        xy = np.where(low, -xy, np.where(high, 2 * side - xy, xy))
        v = np.where(low | high, -v, v)
    xy = np.clip(xy, 0.0, side)
    return replace(inst, ue_xy=xy, ue_velocity=v, rate_bps=_channel(scen, xy, inst.server_xy, rng))


@dataclass(frozen=True)
class Evaluation:
    latency_s: np.ndarray  # (B, N)
    energy_j: np.ndarray  # (B, N)
    server_load: np.ndarray  # (B, K) sum of shares per server
    latency_ok: np.ndarray  # (B, N) bool
    capacity_ok: np.ndarray  # (B, K) bool
    feasible: np.ndarray  # (B,) bool

    @property
    def mean_latency_s(self) -> np.ndarray:
        return self.latency_s.mean(axis=1)

    @property
    def total_energy_j(self) -> np.ndarray:
        return self.energy_j.sum(axis=1)

    def objective(self, prompt: str) -> np.ndarray:
        """(B,) the prompt's objective: mean latency per UE, or total energy."""
        return self.mean_latency_s if objective_of(prompt) == "latency" else self.total_energy_j


def _gather(a: np.ndarray, server: np.ndarray) -> np.ndarray:
    """a (B, N, K) at k = server (B, N) (server clipped into range)."""
    return np.take_along_axis(a, np.clip(server, 0, a.shape[-1] - 1)[..., None], axis=-1)[..., 0]


def evaluate(inst: Instances, assign: np.ndarray, share: np.ndarray) -> Evaluation:
    """Latency, energy and feasibility of decisions (B, N) on a batch of instances."""
    assign = np.asarray(assign, dtype=np.int64)
    share = np.asarray(share, dtype=np.float64)
    shape = inst.cycles.shape
    if assign.shape != shape or share.shape != shape:
        raise ValueError(f"assign {assign.shape} and share {share.shape} must be {shape} like the instances")
    k = inst.num_servers
    if assign.min(initial=0) < 0 or assign.max(initial=0) > k:
        raise ValueError(f"assign must be in 0..{k} (0 = local, k = server k-1)")
    local = assign == LOCAL
    server = assign - 1
    tx = _gather(inst.tx_time_s, server)
    f = inst.server_hz[np.clip(server, 0, k - 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        remote_lat = tx + inst.cycles / (np.maximum(share, 0.0) * f)
    latency = np.where(local, inst.local_latency_s, np.where(share > 0, remote_lat, np.inf))
    energy = np.where(local, inst.local_energy_j, inst.tx_power_w * tx)
    load = np.zeros((shape[0], k))
    rows = np.broadcast_to(np.arange(shape[0])[:, None], shape)
    np.add.at(load, (rows[~local], server[~local]), share[~local])
    lat_ok = latency <= inst.max_latency_s * (1 + _TOL)
    cap_ok = load <= 1.0 + _TOL
    feasible = lat_ok.all(axis=1) & cap_ok.all(axis=1) & ((share >= 0) | local).all(axis=1)
    return Evaluation(latency, energy, load, lat_ok, cap_ok, feasible)


def optimal_shares(inst: Instances, assign: np.ndarray):
    """The best shares for fixed assignments (B, N): ``(share, feasible)``.

    ``share`` (B, N) is the water-filling solution of the module docstring (0 for local
    UEs); ``feasible`` (B,) tells whether the assignment admits shares meeting every
    constraint. Where a server is overloaded its UEs get their minima (infeasible).
    """
    assign = np.asarray(assign, dtype=np.int64)
    b, n = assign.shape
    k = inst.num_servers
    local = assign == LOCAL
    server = np.clip(assign - 1, 0, k - 1)
    m = np.where(local, 0.0, _gather(inst.min_share, server))
    root_c = np.where(local, 0.0, np.sqrt(np.broadcast_to(inst.cycles, (b, n))))
    group = (np.arange(b)[:, None] * k + server).ravel()
    on = (~local).ravel()

    def group_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(group[on], weights=values.ravel()[on], minlength=b * k)

    finite_m = np.where(np.isfinite(m), m, 0.0)
    need = group_sum(np.where(np.isfinite(m), m, 1e300))  # an impossible UE overloads its server
    server_ok = need <= 1.0 + _TOL
    clamped = np.zeros((b, n), dtype=bool)
    nu = np.zeros(b * k)
    for _ in range(n + 1):  # active set only grows: at most N rounds
        free_root = group_sum(np.where(clamped, 0.0, root_c))
        fixed = group_sum(np.where(clamped, finite_m, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            nu = np.where(free_root > 0, (1.0 - fixed) / free_root, 0.0)
        nu_ue = nu[group].reshape(b, n)
        newly = ~local & ~clamped & (finite_m > nu_ue * root_c)
        if not newly.any():
            break
        clamped |= newly
    nu_ue = nu[group].reshape(b, n)
    share = np.where(local, 0.0, np.where(clamped, finite_m, nu_ue * root_c))
    ok_ue = server_ok[group].reshape(b, n) | local
    share = np.where(ok_ue, share, np.where(np.isfinite(m), m, 0.0))
    return share, ok_ue.all(axis=1)


def expert_value(inst: Instances, assign: np.ndarray, prompt: str):
    """Objective of assignments (B, N) with their optimal shares; inf where infeasible."""
    share, ok = optimal_shares(inst, assign)
    value = evaluate(inst, assign, share).objective(prompt)
    return np.where(ok, value, np.inf), share


def local_decision(inst: Instances):
    """Everything local: the always-feasible fallback (the paper's Local contender)."""
    zeros = np.zeros(inst.cycles.shape)
    return zeros.astype(np.int64), zeros
