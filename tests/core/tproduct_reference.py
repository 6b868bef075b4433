"""A slow, obviously-correct t-product via block-circulant matrices (the definition).

``A * B = fold(bcirc(A) · unfold(B))`` where ``unfold`` stacks the frontal slices of ``B``
vertically and ``bcirc(A)`` is the block-circulant matrix of ``A``'s frontal slices. Used to test
the FFT implementation in :mod:`fuse.core.tproduct`. Array plumbing goes through tensorly's PyTorch
backend (inside ``tl.backend_context("pytorch")``), so autograd gradients survive.
"""

from __future__ import annotations

import tensorly as tl
import torch


def unfold(B: torch.Tensor) -> torch.Tensor:
    """``(n2, n3, k)`` → ``(k·n2, n3)``: frontal slices stacked vertically."""
    with tl.backend_context("pytorch"):
        n2, n3, k = B.shape
        # tensorly's mode-2 unfolding of the (k, n2, n3) arrangement gives slices side by side
        slices = tl.moveaxis(B, 2, 0)  # (k, n2, n3)
        return tl.reshape(slices, (k * n2, n3))


def fold(M: torch.Tensor, n1: int, k: int) -> torch.Tensor:
    """Inverse of :func:`unfold`: ``(k·n1, n3)`` → ``(n1, n3, k)``."""
    with tl.backend_context("pytorch"):
        return tl.moveaxis(tl.reshape(M, (k, n1, M.shape[1])), 0, 2)


def bcirc(A: torch.Tensor) -> torch.Tensor:
    """Block-circulant matrix ``(k·n1, k·n2)`` whose block ``(i, j)`` is frontal slice ``(i − j) mod k``."""
    n1, n2, k = A.shape
    rows = []
    for i in range(k):
        rows.append(torch.cat([A[:, :, (i - j) % k] for j in range(k)], dim=1))
    return torch.cat(rows, dim=0)


def t_product_ref(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Reference t-product of ``A (n1, n2, k)`` and ``B (n2, n3, k)``."""
    with tl.backend_context("pytorch"):
        return fold(tl.dot(bcirc(A), unfold(B)), A.shape[0], A.shape[2])


def t_transpose_ref(A: torch.Tensor) -> torch.Tensor:
    """Reference t-transpose, slice by slice."""
    k = A.shape[2]
    return torch.stack([A[:, :, (-j) % k].T for j in range(k)], dim=2)
