"""A quickly fitted stand-in for a trained actor, for tests and benchmarks.

A freshly initialised actor outputs near-uniform probabilities: its argmax flips on
round-off, which says nothing about how a quantized copy of a *trained* policy
behaves. When no trained checkpoint is at hand, :func:`fit_reference_actor` imitates
the greedy lower-bound rule on simulator states for a few hundred Adam steps, which
gives decisions with the margins of a trained policy:

* offload x = the option with the smallest lower-bound time of the local state (14):
  T1*(0); T1*(1) + T21*(1); T1*(2) + T22*(2) (+ T21*(1) to reach the edge first),
* channel = a fixed function of the received power (quartiles), the ratios a, b = 1
  for local computation and 0.5 otherwise.

This is not a policy anyone should deploy; it exists so parity figures mean something.
"""

from __future__ import annotations

import numpy as np


def greedy_targets(states: np.ndarray, num_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(states, np.float64)
    times = np.stack([s[..., 1], s[..., 2] + s[..., 3], s[..., 3] + s[..., 4] + s[..., 5]], axis=-1)
    offload = times.argmin(-1)
    logp = np.log10(np.maximum(s[..., 0], 1e-30))
    edges = np.quantile(logp, np.linspace(0, 1, num_channels + 1)[1:-1])
    channel = np.searchsorted(edges, logp)
    ratio = np.where(offload == 0, 1.0, 0.5)
    return offload, channel, ratio


def fit_reference_actor(actor, states: np.ndarray, steps: int = 300, seed: int = 0, lr: float = 3e-3):
    """Fit ``actor`` (DTAC or TAC) in place on raw local states (count, 6); returns it
    in eval mode. TAC actors see the states grouped into rounds of 10 UEs."""
    import torch


    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only fight over the cores
    try:
        return _fit(actor, states, steps, seed, lr)
    finally:
        torch.set_num_threads(threads)


def _fit(actor, states, steps, seed, lr):
    import torch
    from torch.nn import functional as F

    from edgepilot.cloud_trainer.models import DTACActor

    x = torch.as_tensor(np.asarray(states), dtype=torch.float32)
    actor.normalizer.fit(x)
    offload, channel, ratio = (torch.as_tensor(t) for t in greedy_targets(states, actor.cfg.num_channels))
    dtac = isinstance(actor, DTACActor)
    if not dtac:
        n = (len(x) // 10) * 10
        x, offload, channel, ratio = x[:n].reshape(-1, 10, 6), offload[:n].reshape(-1, 10), channel[:n].reshape(-1, 10), ratio[:n].reshape(-1, 10)
        edge = torch.randint(0, 5, x.shape[:2], generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    actor.train()
    for _ in range(steps):
        p_x, p_l, a, b = actor(x) if dtac else actor(x, edge)
        loss = (
            F.nll_loss(torch.log(p_x.reshape(-1, 3) + 1e-8), offload.reshape(-1))
            + F.nll_loss(torch.log(p_l.reshape(-1, p_l.shape[-1]) + 1e-8), channel.reshape(-1))
            + F.mse_loss(a, ratio.float()) + F.mse_loss(b, ratio.float())
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actor.eval()
