"""Conditional probability paths for flow matching on a time grid.

Straight paths x_{t_i} = (1 − t_i)·x_0 + t_i·x_1, optionally noised as a Brownian bridge from x_0
to x_1: marginal std σ·sqrt(t_i(1 − t_i)) (zero at both ends, so x_0 and x_1 are kept exactly),
drawn sequentially, x_{t+h} = x_t + h(x_1 − x_t)/(1 − t) + σ·sqrt(h(1 − t − h)/(1 − t))·ε, so the
noised path is a Markov process whose steps are Gaussian (what an autoregressive Gaussian head
can model), not independent noise per point.
"""

from __future__ import annotations

import torch


def time_grid(n_times: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Uniform grid ``t_i = i/(N−1)``, shape ``(N,)``."""
    if n_times < 2:
        raise ValueError(f"n_times must be >= 2, got {n_times}")
    return torch.linspace(0.0, 1.0, n_times, dtype=dtype, device=device)


def straight_paths(x_0: torch.Tensor, x_1: torch.Tensor, n_times: int, *, noise: float = 0.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Points on straight conditional paths.

    Args:
        x_0: starts ``(..., D)``.
        x_1: ends ``(..., D)``, same shape as ``x_0``.
        n_times: number of time points N.
        noise: σ of the Brownian-bridge-shaped noise on interior points.
        generator: seeds the noise.

    Returns:
        ``(..., N, D)``: x_{t_i} for i = 0..N−1.
    """
    if x_0.shape != x_1.shape:
        raise ValueError(f"x_0 {tuple(x_0.shape)} and x_1 {tuple(x_1.shape)} must have the same shape")
    t = time_grid(n_times, dtype=x_0.dtype, device=x_0.device)[:, None]  # (N, 1)
    x_t = (1 - t) * x_0.unsqueeze(-2) + t * x_1.unsqueeze(-2)
    if noise > 0:
        eps = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype).to(x_t.device)
        tt = t[:, 0]
        points = [x_0]
        for i in range(n_times - 2):
            h = tt[i + 1] - tt[i]
            rest = 1 - tt[i]
            drift = h * (x_1 - points[-1]) / rest
            std = noise * (h * (rest - h) / rest).sqrt()
            points.append(points[-1] + drift + std * eps[..., i + 1, :])
        points.append(x_1)
        x_t = torch.stack(points, -2)
    return x_t
