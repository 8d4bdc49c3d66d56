"""Factorized-prior entropy model (Balle, Minnen, Singh, Hwang, Johnston, "Variational
image compression with a scale hyperprior", ICLR 2018, appendix 6.1): one learned,
non-parametric univariate density per latent channel, convolved with a unit uniform.

Only training lives here; the integer CDF tables the device and server code with are
computed from :meth:`EntropyBottleneck.pmf_table` by :mod:`edgepilot.export.split_model`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_BOUND = 1e-9


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would push x up (as in Balle's
    and CompressAI's LowerBound): a latent far outside the learned density must not get a
    zero rate gradient, or it is never pulled back in."""

    @staticmethod
    def forward(ctx, x, bound: float):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        passthrough = (x >= ctx.bound) | (grad < 0)
        return grad * passthrough, None


class EntropyBottleneck(nn.Module):
    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 1.0):
        # init_scale: initial width of the density. Balle uses 10 for image latents; ours are
        # of order 1 and a wide start costs thousands of steps of rate before it narrows.
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """v: (C, 1, N) -> logit of the learned CDF at v, (C, 1, N)."""
        logits = v
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    @staticmethod
    def quantize(y: torch.Tensor, noise: bool) -> torch.Tensor:
        if noise:
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)
        return torch.round(y)

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(y) under the density convolved with U(-1/2, 1/2); y: (N, C, H, W)."""
        n, c = y.shape[:2]
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail with better precision
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = _LowerBound.apply(lik, LIKELIHOOD_BOUND)
        return lik.reshape(c, n, *y.shape[2:]).transpose(0, 1)

    @torch.no_grad()
    def pmf_table(self, max_symbol: int = 64, tail_mass: float = 1e-6) -> list[tuple[int, np.ndarray]]:
        """Per channel: (lowest symbol, probabilities of the symbols lowest..highest) with
        each tail beyond the support below ``tail_mass``; the tails' mass is folded into the
        end symbols (the encoder clamps to the support). float64, CPU."""
        symbols = torch.arange(-max_symbol, max_symbol + 1, dtype=torch.float64)
        v = symbols.reshape(1, 1, -1).expand(self.channels, 1, -1)
        model64 = [p.detach().double().cpu() for p in (*self.matrices, *self.biases, *self.factors)]
        nm = len(self.matrices)
        matrices, biases, factors = model64[:nm], model64[nm:2 * nm], model64[2 * nm:]

        def logits_cdf(x):
            for i, (m, b) in enumerate(zip(matrices, biases)):
                x = torch.matmul(F.softplus(m), x) + b
                if i < len(factors):
                    x = x + torch.tanh(factors[i]) * torch.tanh(x)
            return x

        cdf_lo = torch.sigmoid(logits_cdf(v - 0.5)).reshape(self.channels, -1).numpy()
        cdf_hi = torch.sigmoid(logits_cdf(v + 0.5)).reshape(self.channels, -1).numpy()
        tables = []
        for ch in range(self.channels):
            pmf = np.clip(cdf_hi[ch] - cdf_lo[ch], 0.0, None)
            below = cdf_lo[ch]          # mass below each symbol's bin
            above = 1.0 - cdf_hi[ch]    # mass above each symbol's bin
            lo_candidates = np.nonzero(below >= tail_mass)[0]
            hi_candidates = np.nonzero(above >= tail_mass)[0]
            lo = max(0, int(lo_candidates[0]) - 1) if len(lo_candidates) else 0
            hi = min(len(pmf) - 1, int(hi_candidates[-1]) + 1) if len(hi_candidates) else len(pmf) - 1
            if hi < lo:
                lo = hi = int(np.argmax(pmf))
            p = pmf[lo:hi + 1].copy()
            p[0] += below[lo]
            p[-1] += above[hi]
            tables.append((int(symbols[lo]), p))
        return tables
