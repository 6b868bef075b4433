"""The t-product algebra of third-order tensors (Kilmer & Martin, 2011).

A third-order tensor ``A`` of shape ``(..., n1, n2, k)`` is a stack of ``k`` frontal slices
``A[..., :, :, j]``. The t-product ``C = A * B`` of ``A (n1, n2, k)`` and ``B (n2, n3, k)`` is the
block-circulant product

    C[:, :, j] = sum_i A[:, :, i] @ B[:, :, (j - i) mod k],

computed here as ``irfft(rfft(A) ⊙ rfft(B))`` along the last (tube) axis, with one matrix product
per distinct frequency (``k // 2 + 1`` of them for real tensors). Leading dimensions broadcast.

Every function works on float32/float64 tensors on any device and is differentiable.

Example:
    >>> import torch
    >>> from fuse.core.tproduct import t_product, t_identity
    >>> A = torch.randn(3, 4, 5, dtype=torch.float64)
    >>> torch.allclose(t_product(A, t_identity(4, 5, dtype=torch.float64)), A)
    True
"""

from __future__ import annotations

import torch

__all__ = [
    "to_fourier",
    "from_fourier",
    "t_product",
    "t_transpose",
    "t_identity",
    "t_lstsq",
    "t_pinv",
    "t_norm",
]


def _check(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 3:
        raise ValueError(f"{name} must have at least 3 dimensions (..., n1, n2, k); got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be floating point (float32 or float64); got {t.dtype}")


def to_fourier(A: torch.Tensor) -> torch.Tensor:
    """rfft along the tube axis, moved to the front of the matrix axes.

    Args:
        A: real tensor of shape ``(..., n1, n2, k)``.

    Returns:
        complex tensor of shape ``(..., k // 2 + 1, n1, n2)``: one matrix per frequency.
    """
    if A.numel() == 0:  # MKL's FFT refuses empty batches; the answer is just an empty tensor
        shape = (*A.shape[:-3], A.shape[-1] // 2 + 1, *A.shape[-3:-1]) if A.dim() >= 3 else (A.shape[-1] // 2 + 1,)
        return torch.zeros(shape, dtype=torch.complex128 if A.dtype == torch.float64 else torch.complex64, device=A.device)
    return torch.fft.rfft(A, dim=-1).movedim(-1, -3)


def from_fourier(A_hat: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`to_fourier`: ``(..., k // 2 + 1, n1, n2)`` complex → ``(..., n1, n2, k)`` real."""
    if A_hat.numel() == 0:
        real = torch.float64 if A_hat.dtype == torch.complex128 else torch.float32
        return torch.zeros((*A_hat.shape[:-3], *A_hat.shape[-2:], k), dtype=real, device=A_hat.device)
    return torch.fft.irfft(A_hat.movedim(-3, -1), n=k, dim=-1)


def _same_k(A: torch.Tensor, B: torch.Tensor) -> int:
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(f"tube lengths differ: {A.shape[-1]} vs {B.shape[-1]}; pad both to the same k")
    if A.device != B.device:
        raise ValueError(f"tensors are on different devices ({A.device} vs {B.device}); move one with .to()")
    if A.dtype != B.dtype:
        raise ValueError(f"dtypes differ ({A.dtype} vs {B.dtype}); cast one with .to(dtype)")
    return A.shape[-1]


def t_product(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """t-product ``A * B``.

    Args:
        A: ``(..., n1, n2, k)``.
        B: ``(..., n2, n3, k)``.

    Returns:
        ``(..., n1, n3, k)``, same dtype as the inputs.
    """
    _check(A, "A")
    _check(B, "B")
    k = _same_k(A, B)
    if A.shape[-2] != B.shape[-3]:
        raise ValueError(f"inner dimensions differ: A is {tuple(A.shape)}, B is {tuple(B.shape)}")
    return from_fourier(to_fourier(A) @ to_fourier(B), k)


def t_transpose(A: torch.Tensor) -> torch.Tensor:
    """t-transpose: transpose every frontal slice and reverse the order of slices 2..k.

    ``(..., n1, n2, k)`` → ``(..., n2, n1, k)``. In the Fourier domain this is the conjugate
    transpose of every frequency's matrix.
    """
    _check(A, "A")
    At = A.transpose(-3, -2)
    return torch.cat([At[..., :1], At[..., 1:].flip(-1)], dim=-1)


def t_identity(n: int, k: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """t-identity ``(n, n, k)``: the identity matrix in the first frontal slice, zeros after."""
    if n < 1 or k < 1:
        raise ValueError(f"t_identity needs n >= 1 and k >= 1, got n={n}, k={k}")
    eye = torch.zeros(n, n, k, dtype=dtype, device=device)
    eye[..., 0] = torch.eye(n, dtype=dtype, device=device)
    return eye


def t_norm(A: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of a third-order tensor (all entries)."""
    return torch.linalg.vector_norm(A.reshape(*A.shape[:-3], -1), dim=-1)


def _solve_normal(X_hat: torch.Tensor, Y_hat: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-frequency ridge solution ``(XᴴX + λI)⁻¹ XᴴY`` by Cholesky, with an exact fallback."""
    gram = X_hat.mH @ X_hat
    rhs = X_hat.mH @ Y_hat
    if lam > 0:
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        gram = gram + lam * eye
        L, info = torch.linalg.cholesky_ex(gram)
        if not bool((info == 0).all()):
            return torch.linalg.solve(gram, rhs)
        return torch.cholesky_solve(rhs, L)
    # λ = 0: the minimum-norm least-squares solution (rank-deficient systems allowed).
    return torch.linalg.pinv(X_hat) @ Y_hat


def t_lstsq(X: torch.Tensor, Y: torch.Tensor, lam: float = 0.0, *, compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Regularized t-least-squares: ``argmin_T ||X * T − Y||² + λ ||T||²``.

    By Parseval the problem splits into one ridge regression per frequency,
    ``T̂_f = (X̂_fᴴ X̂_f + λI)⁻¹ X̂_fᴴ Ŷ_f``, solved by Cholesky (no explicit inverse). Only the
    ``k // 2 + 1`` distinct frequencies of a real tensor are solved.

    Args:
        X: ``(..., N, dA, k)`` source slices.
        Y: ``(..., N, dB, k)`` target slices.
        lam: ridge weight λ ≥ 0 (λ = 0 gives the minimum-norm solution via pinv).
        compute_dtype: solve in this real dtype (e.g. ``torch.float64``) and cast back.

    Returns:
        ``T`` of shape ``(..., dA, dB, k)`` in the dtype of ``X``.
    """
    _check(X, "X")
    _check(Y, "Y")
    k = _same_k(X, Y)
    if X.shape[-3] != Y.shape[-3]:
        raise ValueError(f"X and Y need the same number of rows N, got {X.shape[-3]} and {Y.shape[-3]}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    out_dtype = X.dtype
    if compute_dtype is not None:
        X, Y = X.to(compute_dtype), Y.to(compute_dtype)
    T_hat = _solve_normal(to_fourier(X), to_fourier(Y), float(lam))
    return from_fourier(T_hat, k).to(out_dtype)


def t_pinv(A: torch.Tensor) -> torch.Tensor:
    """t-pseudo-inverse: the Moore–Penrose inverse of every frequency's matrix.

    ``(..., n1, n2, k)`` → ``(..., n2, n1, k)``; satisfies ``A * A⁺ * A = A``,
    ``A⁺ * A * A⁺ = A⁺`` and symmetry of ``A * A⁺`` and ``A⁺ * A`` under the t-transpose.
    """
    _check(A, "A")
    n1, n2, k = A.shape[-3:]
    A_hat = to_fourier(A)
    if A_hat.numel() == 0:
        return from_fourier(A_hat.transpose(-1, -2), k)
    # One cut-off for every frequency, relative to the largest singular value over all of them: the singular
    # values of the block-circulant matrix are the union of the frequencies' ones, so this is its pinv's rule.
    # (A per-frequency cut-off would invert a frequency whose whole matrix is rounding noise.)
    eps = torch.finfo(A_hat.real.dtype).eps
    smax = torch.linalg.svdvals(A_hat).amax(dim=(-1, -2))
    tol = (smax * eps * max(n1, n2) * k)[..., None]
    return from_fourier(torch.linalg.pinv(A_hat, atol=tol, rtol=torch.zeros_like(tol)), k)
