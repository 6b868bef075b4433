"""Baseline word maps the t-product adapter is compared against (alignment benchmark).

(c) an ordinary linear map fitted on single-token words, applied token by token;
(d) mean-pooled word vectors with a linear map;
(e) a random map with the fitted map's norm.
"""

from __future__ import annotations

import torch


def ridge(X: torch.Tensor, Y: torch.Tensor, lam: float) -> torch.Tensor:
    """``argmin_W ||XW − Y||² + λ·(tr(XᵀX)/d)·||W||²`` in float64; X (N, dA), Y (N, dB)."""
    X, Y = X.double(), Y.double()
    G = X.T @ X
    scale = G.diagonal().mean().clamp_min(1e-30)
    return torch.linalg.solve(G + lam * scale * torch.eye(G.shape[0], dtype=G.dtype), X.T @ Y)


def token_linear_fit(XA, cA, XB, cB, lam):
    single = (cA == 1) & (cB == 1)
    return ridge(XA[single, :, 0], XB[single, :, 0], lam)


def token_linear_map(W, XA, cA, cB):
    """Apply ``W`` to each source token slot, truncate/pad to the target's count."""
    k = XA.shape[-1]
    Y = torch.einsum("ndk,de->nek", XA.double(), W)
    slot = torch.arange(k)
    return (Y * (slot < torch.minimum(cA, cB).unsqueeze(1)).double().unsqueeze(1)).float()


def mean_vectors(X, counts):
    k = X.shape[-1]
    m = (torch.arange(k) < counts.clamp(max=k).unsqueeze(1)).to(X.dtype).unsqueeze(1)
    return (X * m).sum(-1) / counts.clamp(1, k).unsqueeze(1).to(X.dtype)


def mean_linear_fit(XA, cA, XB, cB, lam):
    return ridge(mean_vectors(XA, cA), mean_vectors(XB, cB), lam)
