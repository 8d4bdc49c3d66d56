"""A straightforward per-UE Python reading of eq. (2)-(13), one round at a time.

This is the oracle the vectorized :mod:`edgepilot.edge_agent.system_model` is tested against and
the baseline its throughput benchmark is compared with. It follows the paper's text
line by line, with the same resolutions (see ``system_model``'s docstring); it is not
used on any hot path.
"""

from __future__ import annotations

import math

from edgepilot.edge_agent.system_model import CLOUD, EDGE, LOCAL, NetworkParams


def evaluate_round_loop(p: NetworkParams, ues: list[dict], edge_cloud_gain: list[float]) -> dict:
    """One round. Each UE dict holds edge, gain, input_bits, output_bits,
    cycles_per_bit, cached, offload, channel, power_ratio, cpu_ratio."""
    n = len(ues)

    def rate(signal_w: float, noise_w: float) -> float:
        return p.channel_bandwidth_hz * math.log2(1.0 + signal_w / noise_w)

    out = []
    for i, u in enumerate(ues):
        x, work = u["offload"], u["input_bits"] * u["cycles_per_bit"]
        # (2), (3)
        if x == LOCAL:
            f = u["cpu_ratio"] * p.ue_max_cpu_hz
            t1, e_c = work / f, p.kappa * work * f * f
        elif x == EDGE:
            t1, e_c = (1.0 - u["cached"]) * work / p.edge_cpu_hz, 0.0
        else:
            t1, e_c = work / p.cloud_cpu_hz, 0.0
        # (5)
        interference = 0.0
        for j, v in enumerate(ues):
            if j != i and v["edge"] == u["edge"] and v["channel"] == u["channel"] and v["offload"] in (EDGE, CLOUD):
                interference += v["power_ratio"] * p.ue_max_power_w * v["gain"]
        # (4)
        up = rate(u["power_ratio"] * p.ue_max_power_w * u["gain"], p.noise_power_w + interference)
        down = rate(p.edge_power_w * u["gain"], p.noise_power_w)
        g_kc = edge_cloud_gain[u["edge"]]
        r_kc, r_ck = rate(p.edge_power_w * g_kc, p.noise_power_w), rate(p.cloud_power_w * g_kc, p.noise_power_w)
        # (6), (8), (9)
        if x == LOCAL:
            e_u = t21 = 0.0
        else:
            e_u = u["power_ratio"] * p.ue_max_power_w * u["input_bits"] / up
            t21 = u["input_bits"] / up + u["output_bits"] / down
        t22 = u["input_bits"] / r_kc + u["output_bits"] / r_ck if x == CLOUD else 0.0
        out.append({"t1": t1, "t21": t21, "t22": t22, "energy": e_u + e_c})

    # (10)-(12)
    exec_times = []
    for i, u in enumerate(ues):
        x = u["offload"]
        if x == LOCAL:
            t = out[i]["t1"]
        elif x == EDGE:
            t = sum(out[j]["t1"] + out[j]["t21"] for j in range(n) if ues[j]["offload"] == EDGE and ues[j]["edge"] == u["edge"])
        else:
            t = sum(out[j]["t1"] + out[j]["t21"] for j in range(n) if ues[j]["offload"] == CLOUD) + out[i]["t22"]
        exec_times.append(t)
    round_time = max(exec_times, default=0.0)
    total_energy = sum(o["energy"] for o in out)
    return {
        "ues": [
            {
                "compute_time_s": o["t1"],
                "ue_edge_comm_time_s": o["t21"],
                "edge_cloud_comm_time_s": o["t22"],
                "energy_j": o["energy"],
                "execution_time_s": t,
            }
            for o, t in zip(out, exec_times)
        ],
        "round_time_s": round_time,
        "objective": p.w_time * round_time + p.w_energy * total_energy,
    }
