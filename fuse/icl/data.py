"""Context matrices and trajectories ``s_{t+1} = W s_t`` for in-context autoregressive learning."""

from __future__ import annotations

import numpy as np
import torch

KINDS = ("orthogonal", "commuting")


def context_matrices(n: int, d: int, kind: str = "orthogonal", *, seed: int = 0) -> torch.Tensor:
    """Random context matrices ``(n, d, d)`` (float64).

    Args:
        n: how many (one per sequence).
        d: state dimension.
        kind: ``"orthogonal"`` — Haar-distributed on O(d) (``scipy.stats.ortho_group``);
            ``"commuting"`` — real form of commuting unitaries ``W = P·blockdiag(R(θ_1), …)·Pᵀ``
            with one fixed Haar ``P`` (drawn from ``seed``) shared by all ``n`` matrices and
            rotation angles ``θ`` uniform in ``[0, 2π)`` (odd ``d``: a last eigenvalue ±1).
            These all commute; they are the real counterpart of the paper's diagonal unitaries.
        seed: seeds everything.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    if n < 1 or d < 1:
        raise ValueError(f"need n >= 1 and d >= 1, got n={n}, d={d}")
    from scipy.stats import ortho_group

    rng = np.random.default_rng(seed)
    if kind == "orthogonal":
        if d == 1:
            return torch.tensor(rng.choice([-1.0, 1.0], size=(n, 1, 1)))
        return torch.tensor(ortho_group.rvs(d, size=n, random_state=rng).reshape(n, d, d))
    P = ortho_group.rvs(d, random_state=rng) if d > 1 else np.ones((1, 1))
    D = np.zeros((n, d, d))
    for b in range(d // 2):
        th = rng.uniform(0, 2 * np.pi, n)
        c, s = np.cos(th), np.sin(th)
        i = 2 * b
        D[:, i, i], D[:, i, i + 1], D[:, i + 1, i], D[:, i + 1, i + 1] = c, -s, s, c
    if d % 2:
        D[:, -1, -1] = rng.choice([-1.0, 1.0], size=n)
    return torch.tensor(P @ D @ P.T)


def trajectories(W: torch.Tensor, steps: int, s0: torch.Tensor | None = None) -> torch.Tensor:
    """States ``(n, steps + 1, d)``: ``s_0`` then ``s_{t+1} = W s_t``.

    Args:
        W: ``(n, d, d)`` context matrices.
        steps: transitions to apply.
        s0: start state ``(d,)`` or ``(n, d)``; default the normalised all-ones vector.
    """
    n, d, _ = W.shape
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if s0 is None:
        s0 = torch.ones(d, dtype=W.dtype) / d ** 0.5
    s = s0.to(W.dtype).expand(n, d)
    out = [s]
    for _ in range(steps):
        s = torch.einsum("nij,nj->ni", W, s)
        out.append(s)
    return torch.stack(out, 1)


def augmented_tokens(states: torch.Tensor) -> torch.Tensor:
    """Tokens ``e_t = (0_d, s_t, s_{t−1})`` for ``t = 1..T``: ``(n, T, 3d)`` from states ``(n, T+1, d)``."""
    prev, cur = states[:, :-1], states[:, 1:]
    return torch.cat([torch.zeros_like(cur), cur, prev], dim=-1)


def plain_tokens(states: torch.Tensor) -> torch.Tensor:
    """Non-augmented tokens ``e_t = (0_d, s_t, 0_d)`` for ``t = 1..T``: ``(n, T, 3d)``.

    The third block is empty: a positional attention layer has to fill it with ``s_{t−1}``.
    """
    cur = states[:, 1:]
    return torch.cat([torch.zeros_like(cur), cur, torch.zeros_like(cur)], dim=-1)
