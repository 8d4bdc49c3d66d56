"""Parity of exported variants against the torch actor on simulator states.

For each variant: the max absolute error of every head (probabilities and ratios) and
the agreement of the discrete decisions (offload x = argmax p_x, channel l = argmax
p_l, and both together) with torch. Variants are run at the hardware profile's
optimal batch (batch 1 on a device), since dynamically quantized models depend on
the batch they see.
"""

from __future__ import annotations

import numpy as np

from edgepilot.edge_agent.actions import ACTOR_OUTPUTS, DTAC_INPUT, PACKED_OUTPUT, TAC_INPUTS, heads_from_logits


def parity_states(scenario, kind: str, count: int, seed: int, ues: int = 30):
    """Raw local states from the simulator: (count, 6) for DTAC; for TAC the same
    states grouped into rounds of ``ues`` UEs with edge-server ids, ((R, N, 6), (R, N))."""
    from edgepilot.cloud_trainer.envs.simulator import sample_local_states

    states = sample_local_states(scenario, count, seed=seed).astype(np.float32)
    if kind == "dtac":
        return states, None
    rounds = max(1, count // ues)
    states = states[: rounds * ues].reshape(rounds, ues, -1)
    rng = np.random.default_rng(seed)
    edge_id = rng.integers(0, scenario.topology.num_edge_servers, size=(rounds, ues), dtype=np.int64)
    return states, edge_id


def torch_outputs(actor, kind: str, states, edge_id=None, chunk: int = 4096) -> list[np.ndarray]:
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(states), chunk):
            x = torch.as_tensor(states[i : i + chunk])
            o = actor(x) if kind == "dtac" else actor(x, torch.as_tensor(edge_id[i : i + chunk]))
            outs.append([t.numpy() for t in o])
    return [np.concatenate([o[k] for o in outs]) for k in range(len(ACTOR_OUTPUTS))]


def ort_outputs(model, kind: str, states, edge_id=None, chunk: int = 1, providers=None) -> list[np.ndarray]:
    """Run an ONNX model (path or bytes) over ``states`` in batches of ``chunk``; the four
    heads, also of a model with the packed output (decoded as the runtime does)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model if isinstance(model, (bytes, str)) else str(model), so,
                                providers=providers or ["CPUExecutionProvider"])
    run = sess.run
    outs = []
    for i in range(0, len(states), chunk):
        if kind == "dtac":
            feed = {DTAC_INPUT: states[i : i + chunk]}
        else:
            feed = {TAC_INPUTS[0]: states[i : i + chunk], TAC_INPUTS[1]: edge_id[i : i + chunk]}
        outs.append(run(None, feed))
    if [o.name for o in sess.get_outputs()] == [PACKED_OUTPUT]:
        return list(heads_from_logits(np.concatenate([o[0] for o in outs])))
    return [np.concatenate([o[k] for o in outs]) for k in range(len(ACTOR_OUTPUTS))]


def compare(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict:
    errors = {name: float(np.abs(r.astype(np.float64) - c.astype(np.float64)).max()) for name, r, c in zip(ACTOR_OUTPUTS, reference, candidate)}
    off = reference[0].argmax(-1) == candidate[0].argmax(-1)
    ch = reference[1].argmax(-1) == candidate[1].argmax(-1)
    finite = all(bool(np.isfinite(c).all()) for c in candidate)
    return {
        "max_abs_error": errors,
        "max_abs_error_all_heads": max(errors.values()),
        "offload_agreement": float(off.mean()),
        "channel_agreement": float(ch.mean()),
        "decision_agreement": float((off & ch).mean()),
        "all_finite": finite,
        "count": int(off.size),
    }


def passes(figures: dict, min_agreement: float) -> bool:
    return figures["all_finite"] and min(figures["offload_agreement"], figures["channel_agreement"]) >= min_agreement
