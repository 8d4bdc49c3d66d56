"""The contract between an exported actor and the code that acts on its output.

An actor (TAC or DTAC, any runtime) outputs, per UE, the action A_t^n of eq. (16):
offloading probabilities p_x (3), channel probabilities p_l (L), transmit power ratio
a and CPU frequency ratio b. ``decode_actions`` turns them into the decision the
system model takes: x = argmax p_x, l = argmax p_l (the paper's deterministic
selection), a and b clipped into (0, 1].
"""

from __future__ import annotations

import numpy as np

#: ONNX / runtime tensor names, shared by the exporter and every runtime.
DTAC_INPUT = "local_state"  # (batch, 6) float32: one UE's local state (14) per row
TAC_INPUTS = ("joint_state", "edge_id")  # (batch, N, 6) float32, (batch, N) int64
ACTOR_OUTPUTS = ("offload_probs", "channel_probs", "transmit_power_ratio", "cpu_freq_ratio")

#: Smallest ratio a decision may carry; the paper's a, b live in (0, 1].
MIN_RATIO = 1e-3

_maximum, _minimum, _f64 = np.maximum, np.minimum, np.float64


def decode_actions(offload_probs, channel_probs, transmit_power_ratio, cpu_freq_ratio) -> dict[str, np.ndarray]:
    """Deterministic decision from actor outputs (leading axes are kept)."""
    return {
        "offload": np.asarray(offload_probs).argmax(axis=-1),
        "channel": np.asarray(channel_probs).argmax(axis=-1),
        # np.clip's Python wrapper costs ~3 us a call; the two ufuncs are the same clip
        "transmit_power_ratio": _minimum(_maximum(np.asarray(transmit_power_ratio, dtype=_f64), MIN_RATIO), 1.0),
        "cpu_freq_ratio": _minimum(_maximum(np.asarray(cpu_freq_ratio, dtype=_f64), MIN_RATIO), 1.0),
    }


def decode_action_values(values: list[float], num_channels: int) -> tuple[int, int, float, float] | None:
    """One UE's decision from its actor outputs as plain Python floats, laid out
    ``p_x (3), p_l (L), a, b``: the same as :func:`decode_actions` (first maximum,
    ratios clipped into [MIN_RATIO, 1]) without numpy's per-call cost. None when a value
    is NaN or infinite (the caller then takes :func:`decode_actions`, which defines
    what a NaN does)."""
    total = sum(values)
    if total - total != 0.0:  # NaN or +-inf somewhere
        return None
    px = values[0:3]
    pl = values[3 : 3 + num_channels]
    a, b = values[3 + num_channels], values[4 + num_channels]
    return (px.index(max(px)), pl.index(max(pl)),
            1.0 if a > 1.0 else (MIN_RATIO if a < MIN_RATIO else a),
            1.0 if b > 1.0 else (MIN_RATIO if b < MIN_RATIO else b))
