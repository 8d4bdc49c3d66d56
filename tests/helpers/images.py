"""Deterministic stand-in images for the server tests (they do not need the data set)."""

from __future__ import annotations

import numpy as np


def stand_in_images(n: int, seed: int) -> np.ndarray:
    """``n`` 28 x 28 uint8 images, each a bright rectangle at a random place."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        r, c = rng.integers(2, 10, size=2)
        out[i, r:r + 14, c:c + 12] = rng.integers(80, 255)
    return out
