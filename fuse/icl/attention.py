"""One-layer linear attention (augmented tokens) and its non-augmented, positional two-layer variant.

Causal linear attention over tokens ``e_1..e_T`` (``(B, T, 3d)``)::

    f(e)_t = (1/t) Σ_{j ≤ t} (V e_j) (K e_j)ᵀ (Q e_t)

and the prediction of ``s_{t+1}`` is the first block (``d`` coordinates) of ``e_t + f(e)_t``
(the token's own first block is zero). With ``V`` reading ``s_j``, ``K`` reading ``s_{j−1}``
and ``Q`` reading ``s_t``, this is exactly one gradient step on
``L(W) = (1/2t) Σ_j ||s_j − W s_{j−1}||²`` from ``W = 0`` (Sander et al., ICML 2024).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``out_t = (1/t) Σ_{j≤t} v_j (k_j · q_t)`` for ``q, k, v`` of shape ``(B, T, ·)``."""
    T = q.shape[1]
    scores = q @ k.transpose(1, 2)  # (B, T, T): [t, j] = q_t · k_j
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=q.device))
    scores = scores.masked_fill(~mask, 0.0)
    counts = torch.arange(1, T + 1, device=q.device, dtype=q.dtype)[:, None]
    return (scores / counts) @ v


class LinearAttention(nn.Module):
    """One causal linear-attention layer on augmented tokens ``(B, T, 3d)``; predicts ``(B, T, d)``.

    Args:
        d: state dimension.
        init_std: std of the initial Q, K, V entries (small, as in the paper).
        dtype: parameter dtype.
    """

    def __init__(self, d: int, *, init_std: float = 0.01, dtype=torch.float32):
        super().__init__()
        self.d = d
        D = 3 * d
        self.Q = nn.Parameter(torch.randn(D, D, dtype=dtype) * init_std)
        self.K = nn.Parameter(torch.randn(D, D, dtype=dtype) * init_std)
        self.V = nn.Parameter(torch.randn(D, D, dtype=dtype) * init_std)

    def mix(self, e: torch.Tensor) -> torch.Tensor:
        """The residual stream after the layer, ``(B, T, 3d)``."""
        return e + causal_linear_attention(e @ self.Q.T, e @ self.K.T, e @ self.V.T)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if e.dim() != 3 or e.shape[-1] != 3 * self.d:
            raise ValueError(f"tokens must be (B, T, {3 * self.d}), got {tuple(e.shape)}")
        return self.mix(e)[..., : self.d]


class PositionalLinearAttention(nn.Module):
    """Non-augmented variant: tokens ``(0, s_t, 0)``; a softmax attention layer whose scores
    depend on positions only (learned ``p_t``) writes into the stream — it can learn to copy
    ``s_{t−1}`` into the third block — then a :class:`LinearAttention` layer predicts.

    Args:
        d: state dimension.
        max_len: longest sequence.
        pos_dim: width of the positional embeddings.
    """

    def __init__(self, d: int, max_len: int, *, pos_dim: int = 32, init_std: float = 0.01, dtype=torch.float32):
        super().__init__()
        self.d = d
        D = 3 * d
        self.pos = nn.Parameter(torch.randn(max_len, pos_dim, dtype=dtype))
        self.A = nn.Parameter(torch.randn(pos_dim, pos_dim, dtype=dtype) * 0.1)
        self.U = nn.Parameter(torch.randn(D, D, dtype=dtype) * init_std)
        self.second = LinearAttention(d, init_std=init_std, dtype=dtype)

    def positional_weights(self, T: int) -> torch.Tensor:
        """Causal softmax weights ``(T, T)`` from positions alone."""
        p = self.pos[:T]
        s = p @ self.A @ p.T
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=s.device))
        return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if e.dim() != 3 or e.shape[-1] != 3 * self.d:
            raise ValueError(f"tokens must be (B, T, {3 * self.d}), got {tuple(e.shape)}")
        T = e.shape[1]
        if T > self.pos.shape[0]:
            raise ValueError(f"sequence of {T} tokens is longer than max_len={self.pos.shape[0]}")
        h = e + self.positional_weights(T) @ (e @ self.U.T)
        return self.second(h)
