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


def decode_actions(offload_probs, channel_probs, transmit_power_ratio, cpu_freq_ratio) -> dict[str, np.ndarray]:
    """Deterministic decision from actor outputs (leading axes are kept)."""
    return {
        "offload": np.asarray(offload_probs).argmax(axis=-1),
        "channel": np.asarray(channel_probs).argmax(axis=-1),
        "transmit_power_ratio": np.clip(np.asarray(transmit_power_ratio, dtype=np.float64), MIN_RATIO, 1.0),
        "cpu_freq_ratio": np.clip(np.asarray(cpu_freq_ratio, dtype=np.float64), MIN_RATIO, 1.0),
    }
