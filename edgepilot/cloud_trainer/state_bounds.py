"""Lower bounds read off a UE's local state (14): what the DTAC actor's offload prior and
the greedy baselines both use, below both of them."""

from __future__ import annotations

import numpy as np


def lower_bound_times(local_state):
    """(..., 3) lower-bound execution time of local / edge / cloud from the local state (14):
    T1*; edge compute + UE-edge transfer; cloud compute + UE-edge + edge-cloud transfer.
    A numpy array gives a numpy array, a torch tensor a tensor (the DTAC's offload prior,
    edgepilot.cloud_trainer.models)."""
    s = local_state
    parts = [s[..., 1], s[..., 2] + s[..., 3], s[..., 4] + s[..., 3] + s[..., 5]]
    if isinstance(s, np.ndarray):
        return np.stack(parts, axis=-1)
    import torch  # already loaded by whoever passed a tensor

    return torch.stack(parts, dim=-1)

