"""The per-frequency normal equations of a t-product least-squares fit, formed cheaply.

For ``X (N, d_A, k)`` and ``Y (N, d_B, k)`` the ridge fit needs, at each of the ``k // 2 + 1``
rfft frequencies ``f``, ``G_f = X̂_fᴴ X̂_f`` and ``R_f = X̂_fᴴ Ŷ_f``. Formed in the Fourier domain
(:func:`fourier_products`, the straightforward way) that costs about ``4 (k/2+1) N d²`` real
multiply-adds, whatever the data.

Word slices are mostly padding: a word of ``c`` tokens fills tube positions ``0 … c−1`` and the
rest are zero, and most frequent words are one or two tokens. Expanding the DFT,

    G_f = Σ_m e^{2πi f m / k} S_m,   S_m = Σ_j X_jᵀ X_{j−m}      (X_j = X[:, :, j], an N × d_A matrix)

and likewise ``R_f`` with ``Σ_j X_jᵀ Y_{j−m}`` over lags ``m = −(k−1) … k−1``. Each lagged product
only needs the rows where both tube positions are non-zero, so for padded word slices the cost
drops to roughly ``(rows actually filled) · d²`` (:func:`lagged_products`). Both give the same
matrices up to rounding; :func:`normal_equations` picks the cheaper by counting rows.
"""

from __future__ import annotations

import math

import torch

from fuse.core.tproduct import to_fourier


def fourier_products(X: torch.Tensor, Y: torch.Tensor, dtype: torch.dtype = torch.float64):
    """``(G, R)`` via rfft: ``G (F, d_A, d_A)``, ``R (F, d_A, d_B)``, complex."""
    Xh = to_fourier(X.to(dtype))
    Yh = to_fourier(Y.to(dtype))
    return Xh.mH @ Xh, Xh.mH @ Yh


def _lag_pairs(k: int, m: int):
    return [(j, j - m) for j in range(max(m, 0), min(k, k + m))]


def _lag_rows(nzA: torch.Tensor, nzB: torch.Tensor, m: int):
    k = nzA.shape[1]
    return [(j, l, (nzA[:, j] & nzB[:, l]).nonzero().squeeze(1)) for j, l in _lag_pairs(k, m)]


def _lag_product(A, B, rows, dtype):
    """``Σ_j A_jᵀ B_l`` over the pairs ``(j, l, idx)``, restricted to rows ``idx``: one matmul."""
    rows = [(j, l, idx) for j, l, idx in rows if idx.numel()]
    if not rows:
        return torch.zeros(A.shape[1], B.shape[1], dtype=dtype, device=A.device)
    a = torch.cat([A[idx, :, j] for j, _, idx in rows]).to(dtype)
    b = torch.cat([B[idx, :, l] for _, l, idx in rows]).to(dtype)
    return a.T @ b


def _nonzero_tubes(X: torch.Tensor) -> torch.Tensor:
    """``(N, k)`` bool: which tube positions of each row hold anything."""
    return X.abs().amax(dim=1) > 0


def lagged_products(X: torch.Tensor, Y: torch.Tensor, dtype: torch.dtype = torch.float64):
    """``(G, R)`` like :func:`fourier_products`, from lagged products over the non-zero rows only."""
    k = X.shape[-1]
    F = k // 2 + 1
    nzX, nzY = _nonzero_tubes(X), _nonzero_tubes(Y)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    f = torch.arange(F, dtype=dtype, device=X.device)

    def phase(m):  # (F, 1, 1)
        return torch.polar(torch.ones_like(f), 2 * math.pi * f * m / k).to(cdtype).reshape(F, 1, 1)

    S0 = _lag_product(X, X, _lag_rows(nzX, nzX, 0), dtype)
    G = S0.to(cdtype).expand(F, -1, -1).clone()
    for m in range(1, k):
        Sm = _lag_product(X, X, _lag_rows(nzX, nzX, m), dtype)
        if Sm.any():
            G += phase(m) * Sm.to(cdtype) + phase(-m) * Sm.T.to(cdtype)
    R = torch.zeros(F, X.shape[1], Y.shape[1], dtype=cdtype, device=X.device)
    for m in range(-(k - 1), k):
        Pm = _lag_product(X, Y, _lag_rows(nzX, nzY, m), dtype)
        if Pm.any():
            R += phase(m) * Pm.to(cdtype)
    return G, R


def lagged_cost(X: torch.Tensor, Y: torch.Tensor) -> tuple[int, int]:
    """Rows multiplied by the lagged method (Gram, cross) — to compare with ``4 F N`` for the FFT way."""
    k = X.shape[-1]
    nzX, nzY = _nonzero_tubes(X).float(), _nonzero_tubes(Y).float()
    gram = sum(float((nzX[:, j] * nzX[:, j - m]).sum()) for m in range(k) for j in range(m, k))
    cross = float((nzX.T @ nzY).sum())  # every (j, l) pair once
    return int(gram), int(cross)


def normal_equations(X: torch.Tensor, Y: torch.Tensor, dtype: torch.dtype = torch.float64, method: str = "auto"):
    """``(G, R)``, the per-frequency normal equations, by the cheaper method (``"auto"``) or the one named.

    Args:
        X: ``(N, d_A, k)``; Y: ``(N, d_B, k)``; both real.
        dtype: real dtype of the arithmetic (``float64`` by default).
        method: ``"auto"``, ``"fft"`` or ``"lagged"``.
    """
    if method not in ("auto", "fft", "lagged"):
        raise ValueError(f"method must be 'auto', 'fft' or 'lagged', got {method!r}")
    if method == "auto":
        N, dA, k = X.shape
        dB = Y.shape[1]
        F = k // 2 + 1
        gram_rows, cross_rows = lagged_cost(X, Y)
        lagged = gram_rows * dA * dA + cross_rows * dA * dB
        fft = 4 * F * N * (dA * dA + dA * dB)
        method = "lagged" if lagged < fft else "fft"
    return (lagged_products if method == "lagged" else fourier_products)(X, Y, dtype)
