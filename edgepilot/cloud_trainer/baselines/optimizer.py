"""The full-information per-round optimizer: the ceiling every method is reported against.

It sees the whole round (every UE's task, gain and cell, the caches) and searches the
joint decision that minimizes the objective (13) with the system model itself.

* **b in closed form.** For fixed offload decisions, channels and powers the local UEs
  only trade time for energy: a local UE at ``b F`` takes ``W / (b F)`` and spends
  ``kappa W (b F)^2``, so all of them finishing together at ``T`` costs
  ``kappa sum W^3 / T^2``. ``w1 T + w2 kappa sum W^3 / T^2`` is convex in ``T``; the best
  common finishing time is ``T* = max(T_opt, T_offloaded, max W / F)`` with
  ``T_opt = (2 w2 kappa sum W^3 / w1)^(1/3)``, and ``b = W / (F T*)`` (every local UE
  finishes with the round; finishing earlier only costs energy).
* **Best response with plateau moves.** From several starts, each UE in turn takes the
  best of: local, or edge / cloud on each channel at its current power; then the best of
  a few multiples of its transmit power. A move is taken when it lowers the objective,
  or keeps it and lowers the total execution time of the round (the sum over UEs): when
  the edge and the cloud queues finish together no single move shortens the round, but
  shortening one queue first lets the next move shorten the round.
* Rounds are independent: every start runs on all rounds of a batch at once (each
  candidate of each round is one row of a single system-model call), and each round
  keeps its best start.

At N = 4 it is checked against :mod:`.exhaustive` (tests/test_optimizer.py); the
exhaustive search is limited to its grid of a and b, so the optimizer may beat it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepilot.cloud_trainer.envs.simulator import Observation
from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, Decision, NetworkParams, RoundTasks, evaluate_round

#: multiples of a UE's transmit power tried in the power step (1 = keep)
POWER_STEPS = (0.35, 0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.6, 2.5)
#: transmit power ratios an offload move may start from, besides the UE's current one
MOVE_POWERS = (1.0, 0.5, 0.25, 0.1, 0.03)
MIN_POWER_RATIO = 1e-3
SWEEP_GAIN = 1e-4  # a round stops when a whole sweep gains less than this share of its objective and total time
_REL_TOL = 1e-6  # a move must gain at least this share of the objective (or of the total time)


@dataclass
class Plan:
    """A joint decision with its objective, per round: (B, N) arrays and (B,) objective."""

    offload: np.ndarray
    channel: np.ndarray
    power: np.ndarray
    cpu: np.ndarray
    objective: np.ndarray
    total_time: np.ndarray

    def decision(self) -> Decision:
        return Decision(self.offload.copy(), self.channel.copy(), self.power.copy(), self.cpu.copy())


def _scalar(params: NetworkParams, name: str) -> float:
    value = np.asarray(getattr(params, name), dtype=np.float64)
    if value.ndim:
        raise ValueError(f"the optimizer needs a scalar NetworkParams.{name}, got shape {value.shape}")
    return float(value)


def _rows(tasks: RoundTasks, idx: np.ndarray) -> RoundTasks:
    """The rounds ``idx`` of ``tasks``."""
    return RoundTasks(edge=tasks.edge[idx], gain=tasks.gain[idx], edge_cloud_gain=tasks.edge_cloud_gain[idx],
                      input_bits=tasks.input_bits[idx], output_bits=tasks.output_bits[idx],
                      cycles_per_bit=tasks.cycles_per_bit[idx], cached=tasks.cached[idx], ue_mask=tasks.ue_mask[idx])


def _repeat(tasks: RoundTasks, count: int) -> RoundTasks:
    """Each round of ``tasks`` ``count`` times in a row (round-major): one row per candidate."""
    rep = lambda arr: np.repeat(np.asarray(arr), count, axis=0)  # noqa: E731
    return RoundTasks(edge=rep(tasks.edge), gain=rep(tasks.gain), edge_cloud_gain=rep(tasks.edge_cloud_gain),
                      input_bits=rep(tasks.input_bits), output_bits=rep(tasks.output_bits),
                      cycles_per_bit=rep(tasks.cycles_per_bit), cached=rep(tasks.cached), ue_mask=rep(tasks.ue_mask))


def cell_rank(tasks: RoundTasks, among: np.ndarray | None = None) -> np.ndarray:
    """(B, N) rank of each UE's channel gain within its cell (0 = strongest) among the UEs
    ``among`` (default: the present ones); the others rank after them."""
    among = tasks.ue_mask if among is None else among & tasks.ue_mask
    gain = np.where(among, tasks.gain, -np.inf)
    order = np.lexsort((-gain, tasks.edge), axis=1)  # by cell, then by falling gain
    sorted_edge = np.take_along_axis(tasks.edge, order, axis=1)
    pos = np.arange(tasks.num_ues)[None, :].repeat(tasks.batch_size, 0)
    first = np.where(np.diff(sorted_edge, axis=1, prepend=-1) != 0, pos, 0)
    start = np.maximum.accumulate(first, axis=1)
    rank = np.empty_like(pos)
    np.put_along_axis(rank, order, pos - start, axis=1)
    return rank


class RoundScorer:
    """The objective (13) of candidate decisions with the best b of their local UEs."""

    def __init__(self, params: NetworkParams) -> None:
        self.params = params
        self.w_time = _scalar(params, "w_time")
        self.w_energy = _scalar(params, "w_energy")
        self.kappa = _scalar(params, "kappa")
        self.cpu_hz = _scalar(params, "ue_max_cpu_hz")
        if self.w_time <= 0:
            raise ValueError("the optimizer needs w_time > 0 (with w_time = 0 the best b is 0: an endless round)")

    def score(self, tasks: RoundTasks, offload: np.ndarray, channel: np.ndarray, power: np.ndarray):
        """(objective, b, total execution time) of each row; local UEs get the closed-form b."""
        mask = tasks.ue_mask
        ones = np.ones(offload.shape)
        res = evaluate_round(self.params, tasks, Decision(offload, channel, power, ones))
        off = (offload != LOCAL) & mask
        loc = (offload == LOCAL) & mask
        t_off = np.where(off, res.execution_time_s, 0.0).max(axis=1)
        e_off = np.where(off, res.energy_j, 0.0).sum(axis=1)
        work = np.where(loc, tasks.input_bits * tasks.cycles_per_bit, 0.0)
        t_min = (work / self.cpu_hz).max(axis=1)
        s3 = self.kappa * (work ** 3).sum(axis=1)
        t_opt = np.cbrt(2.0 * self.w_energy * s3 / self.w_time)
        t_loc = np.maximum(np.maximum(t_opt, t_off), t_min)
        any_local = loc.any(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            e_loc = np.where(any_local, s3 / np.where(any_local, t_loc, 1.0) ** 2, 0.0)
            cpu = np.where(loc, work / (self.cpu_hz * t_loc[:, None]), 1.0)
        round_time = np.where(any_local, np.maximum(t_loc, t_off), t_off)
        objective = self.w_time * round_time + self.w_energy * (e_off + e_loc)
        exec_time = np.where(off, res.execution_time_s, 0.0) + np.where(loc, t_loc[:, None], 0.0)
        cpu = np.clip(np.nan_to_num(cpu, nan=1.0), 1e-9, 1.0)
        return objective, cpu, exec_time.sum(axis=1)


def _better(obj_new, sec_new, obj_cur, sec_cur) -> np.ndarray:
    """Strictly lower objective, or the same objective and a lower total execution time."""
    scale = np.maximum(np.abs(obj_cur), 1e-12)
    finite_new = np.isfinite(obj_new)
    lower = finite_new & ((obj_new < obj_cur - _REL_TOL * scale) | ~np.isfinite(obj_cur))
    tie = finite_new & np.isfinite(obj_cur) & (np.abs(obj_new - obj_cur) <= _REL_TOL * scale)
    return lower | (tie & (sec_new < sec_cur * (1.0 - _REL_TOL)))


class RoundOptimizer:
    """Best joint decision of every round of a batch (see the module docstring)."""

    def __init__(self, params: NetworkParams, num_channels: int, max_sweeps: int = 30,
                 power_steps=POWER_STEPS, milp_time_limit_s: float = 0.3) -> None:
        self.scorer = RoundScorer(params)
        self.milp_time_limit_s = float(milp_time_limit_s)
        self.num_channels = int(num_channels)
        self.max_sweeps = int(max_sweeps)
        self.power_steps = np.asarray(power_steps, dtype=np.float64)
        # phase-1 options of one UE: (offload, channel, power; nan = its current power)
        powers = (np.nan,) + tuple(MOVE_POWERS)
        opts = [(LOCAL, 0, np.nan)] + [(x, l, a) for x in (EDGE, CLOUD) for l in range(self.num_channels) for a in powers]
        self.move_offload = np.array([o[0] for o in opts])
        self.move_channel = np.array([o[1] for o in opts])
        self.move_power = np.array([o[2] for o in opts])

    # -- starts -----------------------------------------------------------------------
    def starts(self, tasks: RoundTasks, local_state: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(offload, channel) starts: all local; every UE at its edge server; the option
        with the smallest lower-bound time. Channels are spread within each cell by gain rank."""
        shape = tasks.edge.shape
        offloads = [np.full(shape, LOCAL), np.full(shape, EDGE)]
        if local_state is not None:
            from edgepilot.cloud_trainer.state_bounds import lower_bound_times

            offloads.append(lower_bound_times(local_state).argmin(-1))
        return [(x, self.spread_channels(tasks, x)) for x in offloads]

    def spread_channels(self, tasks: RoundTasks, offload: np.ndarray) -> np.ndarray:
        """Channels by gain rank among the offloading UEs of each cell: distinct while a
        cell has no more offloaders than channels."""
        return cell_rank(tasks, offload != LOCAL) % self.num_channels

    # -- search -------------------------------------------------------------------------
    def solve(self, tasks: RoundTasks, local_state: np.ndarray, starts: str = "milp") -> Plan:
        """Best plan per round from the mixed-integer start (``"milp"``) or from the simple
        starts (``"simple"``: all local, all edge, smallest lower bound) or both (``"all"``)."""
        candidates = []
        if starts in ("milp", "all"):
            candidates.append(self.milp_start(tasks, local_state))
        if starts in ("simple", "all"):
            candidates += self.starts(tasks, local_state)
        best: Plan | None = None
        for offload, channel in candidates:
            plan = self.improve(tasks, offload, channel, np.ones(offload.shape))
            if best is None:
                best = plan
                continue
            take = _better(plan.objective, plan.total_time, best.objective, best.total_time)
            for name in ("offload", "channel", "power", "cpu", "objective", "total_time"):
                getattr(best, name)[take] = getattr(plan, name)[take]
        return best

    def milp_start(self, tasks: RoundTasks, local_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offload decisions of :func:`round_milp` with at most one offloading UE per
        channel in each cell, and those channels."""
        work = tasks.input_bits * tasks.cycles_per_bit
        offload = np.stack([round_milp(self.scorer.params, local_state[i], tasks.edge[i], work[i], tasks.ue_mask[i],
                                       channels_per_cell=self.num_channels, time_limit_s=self.milp_time_limit_s)[0]
                            for i in range(tasks.batch_size)])
        return offload, self.spread_channels(tasks, offload)

    def lower_bound(self, tasks: RoundTasks, local_state: np.ndarray) -> np.ndarray:
        """(B,) a lower bound of each round's optimal objective (:func:`round_milp` without
        the channel limit: no interference, no transmit energy)."""
        work = tasks.input_bits * tasks.cycles_per_bit
        return np.array([round_milp(self.scorer.params, local_state[i], tasks.edge[i], work[i], tasks.ue_mask[i],
                                    time_limit_s=self.milp_time_limit_s)[1] for i in range(tasks.batch_size)])

    def improve(self, tasks: RoundTasks, offload, channel, power) -> Plan:
        """Sweeps from one start until no UE of any round moves. A sweep gives every UE its
        best response (target and channel, then power); when nothing moves, pair swaps are
        tried. Only the rounds that moved in the last sweep are searched again."""
        batch, n = offload.shape
        offload, channel, power = offload.astype(np.int64).copy(), channel.astype(np.int64).copy(), power.astype(np.float64).copy()
        offload[~tasks.ue_mask] = LOCAL
        obj, cpu, sec = self.scorer.score(tasks, offload, channel, power)
        active = np.ones(batch, dtype=bool)
        swap_failed = np.zeros(batch, dtype=bool)  # no pair swap helped since the round last moved
        swapping = False
        for _ in range(self.max_sweeps):
            idx = np.flatnonzero(active)
            sub = _rows(tasks, idx)
            state = [offload[idx], channel[idx], power[idx], obj[idx], cpu[idx], sec[idx]]
            moves = (self._swap_moves,) if swapping else (self._target_moves, self._power_moves)
            moved = np.zeros(len(idx), dtype=bool)
            for j in range(n):
                if not sub.ue_mask[:, j].any():
                    continue
                for make in moves:
                    moved |= self._apply(sub, j, make, *state)
            obj_before, sec_before = obj[idx], sec[idx]
            for full, part in zip((offload, channel, power, obj, cpu, sec), state):
                full[idx] = part
            # a round whose sweep gained almost nothing has converged (the power steps could
            # otherwise creep on for many sweeps)
            moved &= (obj_before - obj[idx] > SWEEP_GAIN * np.abs(obj_before)) | (sec_before - sec[idx] > SWEEP_GAIN * sec_before)
            if swapping:
                swap_failed[idx[~moved]] = True
            swap_failed[idx[moved]] = False
            if moved.any():
                active[:] = False
                active[idx[moved]] = True
                swapping = False
            elif not swapping and not swap_failed.all():  # stuck: pair swaps where not yet tried
                active = ~swap_failed
                swapping = True
            else:
                break
        return Plan(offload, channel, power, cpu, obj, sec)

    def _apply(self, tasks: RoundTasks, j: int, make, offload, channel, power, obj, cpu, sec) -> np.ndarray:
        """Score the candidates ``make`` builds for UE j and take each round's best."""
        built = make(tasks, j, offload, channel, power)
        if built is None:
            return np.zeros(len(obj), dtype=bool)
        m, cand_x, cand_l, cand_a = built
        o, c, s = self.scorer.score(_repeat(tasks, m), cand_x, cand_l, cand_a)
        return self._take(o, c, s, m, j, tasks.ue_mask, (offload, cand_x), (channel, cand_l), (power, cand_a), obj, cpu, sec)

    def _target_moves(self, tasks, j, offload, channel, power):
        """UE j: local, or edge / cloud on each channel at its current power or a few others."""
        m, batch = len(self.move_offload), len(offload)
        cand_x, cand_l, cand_a = (np.repeat(v, m, axis=0) for v in (offload, channel, power))
        cand_x[:, j] = np.tile(self.move_offload, batch)
        cand_l[:, j] = np.tile(self.move_channel, batch)
        move_a = np.tile(self.move_power, batch)
        cand_a[:, j] = np.where(np.isnan(move_a), cand_a[:, j], move_a)
        return m, cand_x, cand_l, cand_a

    def _power_moves(self, tasks, j, offload, channel, power):
        """UE j, when it offloads: a few multiples of its transmit power."""
        if not ((offload[:, j] != LOCAL) & tasks.ue_mask[:, j]).any():
            return None
        m, batch = len(self.power_steps), len(offload)
        cand_x, cand_l, cand_a = (np.repeat(v, m, axis=0) for v in (offload, channel, power))
        cand_a[:, j] = np.clip(cand_a[:, j] * np.tile(self.power_steps, batch), MIN_POWER_RATIO, 1.0)
        return m, cand_x, cand_l, cand_a

    def _swap_moves(self, tasks, i, offload, channel, power):
        """Pair moves: UE i and each UE j exchange their offload targets, each keeping its
        channel and either keeping its power or going to full power. No single best
        response finds these when two queues are balanced."""
        batch, n = offload.shape
        m = 2 * n  # per round: partner j with powers kept, then partner j at full power
        partner = np.tile(np.arange(n), 2 * batch)
        rows = np.arange(batch * m)
        full_power = np.tile(np.repeat([False, True], n), batch)
        cand_x, cand_l, cand_a = (np.repeat(v, m, axis=0) for v in (offload, channel, power))
        own_x = cand_x[:, i].copy()
        cand_x[:, i] = cand_x[rows, partner]
        cand_x[rows, partner] = own_x
        cand_a[full_power, i] = 1.0
        cand_a[rows[full_power], partner[full_power]] = 1.0
        return m, cand_x, cand_l, cand_a

    @staticmethod
    def _take(o, c, s, m, j, present, *pairs_and_state) -> np.ndarray:
        """Apply each round's best candidate when it is better; update the state in place."""
        *pairs, obj, cpu, sec = pairs_and_state
        batch = len(obj)
        o, s = o.reshape(batch, m), s.reshape(batch, m)
        finite = np.where(np.isfinite(o), o, np.inf)
        best_o = finite.min(axis=1)
        # among the candidates with the best objective, the one with the smallest total time
        ties = np.abs(finite - best_o[:, None]) <= _REL_TOL * np.maximum(np.abs(best_o[:, None]), 1e-12)
        pick = np.argmin(np.where(ties, s, np.inf), axis=1)
        rows = np.arange(batch) * m + pick
        new_o, new_s = o[np.arange(batch), pick], s[np.arange(batch), pick]
        take = _better(new_o, new_s, obj, sec) & present[:, j]
        if take.any():
            for state, cand in pairs:
                state[take] = cand[rows[take]]
            cpu[take] = c[rows[take]]
            obj[take], sec[take] = new_o[take], new_s[take]
        return take


class OptimizerPolicy:
    """The optimizer behind the policy interface (full information: it reads ``obs.tasks``)."""

    name = "optimizer"

    def __init__(self, params: NetworkParams, num_channels: int, seed: int = 0, max_sweeps: int = 30) -> None:
        self.optimizer = RoundOptimizer(params, num_channels, max_sweeps=max_sweeps)

    def act(self, obs: Observation) -> Decision:
        return self.optimizer.solve(obs.tasks, obs.local_state).decision()


#: tangent cuts of the local energy kappa W^3 / T^2 per UE, spread over the round's range of T
TANGENT_CUTS = 4


def round_milp(params: NetworkParams, state: np.ndarray, edge: np.ndarray, work: np.ndarray, mask: np.ndarray,
               channels_per_cell: int | None = None, time_limit_s: float = 5.0):
    """The offload decisions of one round by a mixed-integer program (HiGHS), and its
    objective.

    The program drops what only makes a round slower or dearer: interference (every
    offloading UE as if alone on its channel at full power) and the transmit energy. It
    keeps the queues exactly: each edge server serves its edge-offloaded UEs one after
    another, the cloud serves all cloud-offloaded UEs one after another and each then
    adds its own backhaul time; a local UE finishes with the round at the slowest b it
    can (its energy kappa W^3 / T^2 is convex in T and enters through tangent cuts,
    which under-estimate it). So without ``channels_per_cell`` its objective is a lower
    bound of the round's optimum. With it, at most that many UEs of a cell offload: each
    can then have a channel of its own, so the decision is playable with the objective
    the program says (but for the small transmit energy). Variables: y[n, o] (local /
    edge / cloud), u[n] (local energy), T (round time). ``state``: the local states (14)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    idx = np.flatnonzero(mask)
    n = len(idx)
    w1, w2, kappa = _scalar(params, "w_time"), _scalar(params, "w_energy"), _scalar(params, "kappa")
    s = state[idx]
    d_local, d_edge, d_cloud, backhaul = s[:, 1], s[:, 2] + s[:, 3], s[:, 4] + s[:, 3], s[:, 5]
    cubes = kappa * work[idx] ** 3
    t_lo = float(np.minimum(np.minimum(d_local, d_edge), d_cloud + backhaul).max())  # no round is shorter
    t_hi = float(max(d_local.max(), np.cbrt(2.0 * w2 * cubes.sum() / w1)))  # all local is playable
    cuts = np.geomspace(t_lo, max(t_hi, 1.01 * t_lo), TANGENT_CUTS)
    nv = 4 * n + 2  # y (n x 3, row-major), u (n), T, C (the cloud queue)
    col_t, col_c = 4 * n, 4 * n + 1
    rows, cols, vals, lo, hi = [], [], [], [], []

    def add(coeffs, low: float, high: float) -> None:
        r = len(lo)
        for c, v in coeffs:
            rows.append(r), cols.append(c), vals.append(v)
        lo.append(low), hi.append(high)

    add([(3 * m + 2, d_cloud[m]) for m in range(n)] + [(col_c, -1)], 0, 0)  # C = the cloud queue
    for i in range(n):
        add([(3 * i, 1), (3 * i + 1, 1), (3 * i + 2, 1)], 1, 1)
        add([(3 * i, d_local[i]), (col_t, -1)], -np.inf, 0)  # a local UE within the round at b = 1
        add([(col_c, 1), (3 * i + 2, backhaul[i]), (col_t, -1)], -np.inf, 0)  # the queue, then UE i's backhaul
        for c in cuts:  # u_i >= the tangent of kappa W^3 / T^2 at c, when UE i is local
            f = cubes[i] / c ** 2
            slope = -2.0 * f / c
            big = max(f + slope * (t_lo - c), 0.0)  # the tangent's largest value for T >= t_lo
            add([(col_t, slope), (3 * n + i, -1), (3 * i, big)], -np.inf, big - f + slope * c)
    cells = edge[idx]
    for k in np.unique(cells):
        members = np.flatnonzero(cells == k)
        add([(3 * m + 1, d_edge[m]) for m in members] + [(col_t, -1)], -np.inf, 0)  # the edge queue
        if channels_per_cell is not None:
            add([(3 * m + o, 1) for m in members for o in (1, 2)], 0, channels_per_cell)
    from scipy.sparse import csr_array

    matrix = csr_array((vals, (rows, cols)), shape=(len(lo), nv))
    cost = np.zeros(nv)
    cost[col_t] = w1
    cost[3 * n: 4 * n] = w2
    integrality = np.zeros(nv)
    integrality[: 3 * n] = 1
    lower, upper = np.zeros(nv), np.full(nv, np.inf)
    upper[: 3 * n] = 1
    lower[col_t] = t_lo
    res = milp(cost, constraints=LinearConstraint(matrix, lo, hi), integrality=integrality,
               bounds=Bounds(lower, upper), options={"time_limit": time_limit_s, "mip_rel_gap": 1e-3})
    if res.x is None:
        raise RuntimeError(f"the round's mixed-integer program found no solution: {res.message}")
    offload = np.zeros(len(mask), dtype=np.int64)
    offload[idx] = res.x[: 3 * n].reshape(n, 3).argmax(axis=1)
    bound = getattr(res, "mip_dual_bound", None)
    return offload, float(bound if bound is not None and np.isfinite(bound) else res.fun)
