"""Synthetic training series (a small KernelSynth-like generator): seasonal, trending, noisy."""

from __future__ import annotations

import numpy as np

_PERIODS = (4, 7, 12, 24, 52)


def synthetic_series(n: int, length: int, *, seed: int = 0) -> np.ndarray:
    """Random series ``(n, length)``.

    Each series sums a random subset of: a level; a linear or damped exponential trend; 1–2
    sinusoids with periods drawn from common seasonalities (4, 7, 12, 24, 52) or uniformly in
    [2, 64]; an AR(1) noise process; a random walk; occasional level shifts. Amplitudes are
    log-uniform so that scale varies across series.

    Args:
        n: number of series.
        length: steps per series.
        seed: seeds everything.
    """
    if n < 1 or length < 2:
        raise ValueError(f"need n >= 1 and length >= 2, got n={n}, length={length}")
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    out = np.empty((n, length))
    for i in range(n):
        y = np.full(length, rng.normal(0, 3))
        if rng.random() < 0.6:
            y += rng.normal(0, 0.05) * t
        if rng.random() < 0.15:
            y += np.exp(rng.uniform(-0.02, 0.03) * t) * rng.normal(0, 1)
        for _ in range(rng.integers(0, 3)):
            period = rng.choice(_PERIODS) if rng.random() < 0.7 else rng.uniform(2, 64)
            y += np.exp(rng.uniform(-1.5, 1.5)) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        noise_scale = np.exp(rng.uniform(-3, 0))
        phi = rng.uniform(-0.5, 0.95)
        e = rng.normal(0, noise_scale, length)
        ar = np.empty(length)
        ar[0] = e[0]
        for k in range(1, length):
            ar[k] = phi * ar[k - 1] + e[k]
        y += ar
        if rng.random() < 0.3:
            y += np.cumsum(rng.normal(0, noise_scale, length))
        if rng.random() < 0.1:
            y += np.where(t >= rng.integers(1, length), rng.normal(0, 2), 0.0)
        out[i] = y * np.exp(rng.uniform(-2, 4))
    return out
