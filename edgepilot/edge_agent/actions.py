"""The contract between an exported actor and the code that acts on its output.

An actor (TAC or DTAC, any runtime) outputs, per UE, the action A_t^n of eq. (16):
offloading probabilities p_x (3), channel probabilities p_l (L), transmit power ratio
a and CPU frequency ratio b. ``decode_actions`` turns them into the decision the
system model takes: x = argmax p_x, l = argmax p_l (the paper's deterministic
selection), a and b clipped into (0, 1].
"""

from __future__ import annotations

import math
from array import array

import numpy as np

#: ONNX / runtime tensor names, shared by the exporter and every runtime.
DTAC_INPUT = "local_state"  # (batch, 6) float32: one UE's local state (14) per row
TAC_INPUTS = ("joint_state", "edge_id")  # (batch, N, 6) float32, (batch, N) int64
ACTOR_OUTPUTS = ("offload_probs", "channel_probs", "transmit_power_ratio", "cpu_freq_ratio")
#: The one output of a DTAC artifact for onnxruntime-only profiles (``edgepilot.export.onnx_export.
#: pack_action_heads``): (batch, 3 + L + 2) float32 = the offload logits, the channel
#: logits, and a and b before their sigmoid. ``heads_from_logits`` gives the four heads.
PACKED_OUTPUT = "action_logits"

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


def heads_from_logits(logits) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four heads (float32, as :data:`ACTOR_OUTPUTS`) of a :data:`PACKED_OUTPUT`
    array (..., 3 + L + 2): softmax over the offload and the channel logits, sigmoid of
    a and b. New arrays."""
    z = np.asarray(logits, dtype=_f64)
    k = z.shape[-1] - 2

    def softmax(v):
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    with np.errstate(over="ignore"):  # exp(-z) of a very negative z: inf, sigmoid 0
        ratios = (1.0 / (1.0 + np.exp(-z[..., k:]))).astype(np.float32)
    return softmax(z[..., :3]), softmax(z[..., 3:k]), ratios[..., 0], ratios[..., 1]


def head_values_from_logits(values: list[float], num_channels: int, exp=math.exp) -> list[float]:
    """:func:`heads_from_logits` for one UE's row of finite Python floats, without
    numpy's per-call cost: ``p_x (3), p_l (L), a, b`` from a :data:`PACKED_OUTPUT` row."""
    k = 3 + num_channels
    px, pl = values[0:3], values[3:k]
    top_x, top_l = max(px), max(pl)
    ex = [exp(v - top_x) for v in px]
    el = [exp(v - top_l) for v in pl]
    sx, sl = sum(ex), sum(el)
    return [v / sx for v in ex] + [v / sl for v in el] + [_sigmoid(values[k]), _sigmoid(values[k + 1])]


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)  # no overflow for very negative z
    return e / (1.0 + e)


def decode_action_values(values: list[float], num_channels: int, logits: bool = False) -> tuple[int, int, float, float] | None:
    """One UE's decision from its actor outputs as plain Python floats, laid out
    ``p_x (3), p_l (L), a, b`` (``logits``: a :data:`PACKED_OUTPUT` row, i.e. the
    logits of p_x and p_l, whose first maximum is the same choice, and a, b before
    the sigmoid): the same as :func:`decode_actions` (first maximum, ratios clipped
    into [MIN_RATIO, 1]) without numpy's per-call cost. None when a value is NaN or
    infinite (the caller then takes :func:`decode_actions`, which defines what a NaN
    does)."""
    total = sum(values)
    if total - total != 0.0:  # NaN or +-inf somewhere
        return None
    px = values[0:3]
    pl = values[3 : 3 + num_channels]
    a, b = values[3 + num_channels], values[4 + num_channels]
    if logits:  # rounded to float32 like the heads of heads_from_logits / a four-head model
        a, b = array("f", (_sigmoid(a), _sigmoid(b))).tolist()
    return (px.index(max(px)), pl.index(max(pl)),
            1.0 if a > 1.0 else (MIN_RATIO if a < MIN_RATIO else a),
            1.0 if b > 1.0 else (MIN_RATIO if b < MIN_RATIO else b))
