"""Closed-form in-context predictors: one gradient step, and ordinary least squares."""

from __future__ import annotations

import torch


def gd_step_features(states: torch.Tensor) -> torch.Tensor:
    """``G_t = (1/t) Σ_{j=1..t} s_j s_{j−1}ᵀ s_t`` for ``t = 1..T``: ``(n, T, d)`` from ``(n, T+1, d)``.

    ``η·G_t`` is the prediction of ``s_{t+1}`` after one gradient step of size ``η`` on
    ``L(W) = (1/2t) Σ_{j ≤ t} ||s_j − W s_{j−1}||²`` from ``W_0 = 0``.
    """
    prev, cur = states[:, :-1], states[:, 1:]
    T = cur.shape[1]
    # scores[t, j] = s_{j-1} · s_t  (query s_t, key s_{j-1}), causal, averaged over j ≤ t
    scores = cur @ prev.transpose(1, 2)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=states.device))
    scores = scores.masked_fill(~mask, 0.0) / torch.arange(1, T + 1, dtype=states.dtype, device=states.device)[:, None]
    return scores @ cur


def gd_step_predictions(states: torch.Tensor, eta: float) -> torch.Tensor:
    """One-GD-step predictions ``η·G_t`` of ``s_{t+1}``, ``(n, T, d)``."""
    return eta * gd_step_features(states)


def fit_step_size(pred: torch.Tensor, features: torch.Tensor) -> float:
    """Least-squares ``η`` minimising ``||pred − η·features||²`` over all entries."""
    den = (features * features).sum()
    if den <= 0:
        raise ValueError("the GD-step features are all zero; cannot fit a step size")
    return float((pred.detach() * features).sum() / den)


def ols_predictions(states: torch.Tensor, ridge: float = 1e-8) -> torch.Tensor:
    """In-context OLS predictions ``Ŵ_t s_t`` of ``s_{t+1}``, ``(n, T, d)``.

    ``Ŵ_t = (Σ_{j≤t} s_j s_{j−1}ᵀ)(Σ_{j≤t} s_{j−1} s_{j−1}ᵀ + ridge·I)⁻¹`` (a tiny ridge keeps
    the first ``d − 1`` steps, where the system is under-determined, well posed: there it is the
    minimum-norm solution in the limit).
    """
    prev, cur = states[:, :-1], states[:, 1:]
    n, T, d = cur.shape
    cross = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)  # (n, T, d, d)
    gram = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)
    eye = torch.eye(d, dtype=states.dtype, device=states.device)
    # Ŵ = cross · gram⁻¹  ⇔  gramᵀ Ŵᵀ = crossᵀ (gram symmetric)
    W_hat = torch.linalg.solve(gram + ridge * eye, cross.transpose(-1, -2)).transpose(-1, -2)
    return torch.einsum("ntij,ntj->nti", W_hat, cur)


def preconditioned_gd_features(states: torch.Tensor) -> torch.Tensor:
    """Design tensor ``X (n, T, d, d, d)`` with ``X[t, i, a, b] = C_t[i, a]·s_t[b]``,
    ``C_t = (1/t) Σ_{j≤t} s_j s_{j−1}ᵀ``: the prediction ``C_t Γ s_t`` of one *preconditioned*
    GD step (step matrix ``Γ``) is ``Σ_{a,b} X[t, i, a, b] Γ[a, b]``.
    """
    prev, cur = states[:, :-1], states[:, 1:]
    T = cur.shape[1]
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)
    C = C / torch.arange(1, T + 1, dtype=states.dtype, device=states.device)[:, None, None]
    return C[..., :, :, None] * cur[..., None, None, :]


def fit_preconditioner(pred: torch.Tensor, states: torch.Tensor, ridge: float = 1e-10) -> torch.Tensor:
    """Least-squares step matrix ``Γ (d, d)`` so that ``C_t Γ s_t`` matches ``pred (n, T', d)``
    (``T' ≤ T`` leading positions)."""
    X = preconditioned_gd_features(states)[:, : pred.shape[1]]
    d = X.shape[-1]
    A = X.reshape(-1, d * d)
    y = pred.reshape(-1)
    G = A.T @ A + ridge * torch.eye(d * d, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(G, A.T @ y).reshape(d, d)


def preconditioned_gd_predictions(states: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``C_t Γ s_t`` for ``t = 1..T``: ``(n, T, d)``."""
    return torch.einsum("ntiab,ab->nti", preconditioned_gd_features(states), gamma)
