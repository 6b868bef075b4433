"""The t-product algebra against the block-circulant definition (float64, hypothesis)."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fuse.core.tproduct import t_identity, t_lstsq, t_norm, t_pinv, t_product, t_transpose
from tproduct_reference import bcirc, t_product_ref, t_transpose_ref

TOL = dict(rtol=1e-9, atol=1e-9)
dims = st.integers(1, 5)
tubes = st.integers(1, 6)
seeds = st.integers(0, 2**31 - 1)


def rand(seed, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(dims, dims, dims, tubes, seeds)
def test_product_matches_block_circulant(n1, n2, n3, k, seed):
    A, B = rand(seed, n1, n2, k), rand(seed + 1, n2, n3, k)
    torch.testing.assert_close(t_product(A, B), t_product_ref(A, B), **TOL)


@settings(max_examples=40, deadline=None)
@given(dims, dims, dims, dims, tubes, seeds)
def test_associativity(n1, n2, n3, n4, k, seed):
    A, B, C = rand(seed, n1, n2, k), rand(seed + 1, n2, n3, k), rand(seed + 2, n3, n4, k)
    torch.testing.assert_close(t_product(t_product(A, B), C), t_product(A, t_product(B, C)), **TOL)


@settings(max_examples=40, deadline=None)
@given(dims, dims, tubes, seeds)
def test_identity_both_sides(n1, n2, k, seed):
    A = rand(seed, n1, n2, k)
    torch.testing.assert_close(t_product(A, t_identity(n2, k, dtype=torch.float64)), A, **TOL)
    torch.testing.assert_close(t_product(t_identity(n1, k, dtype=torch.float64), A), A, **TOL)


@settings(max_examples=40, deadline=None)
@given(dims, dims, dims, tubes, seeds)
def test_transpose_of_product(n1, n2, n3, k, seed):
    A, B = rand(seed, n1, n2, k), rand(seed + 1, n2, n3, k)
    torch.testing.assert_close(t_transpose(t_product(A, B)), t_product(t_transpose(B), t_transpose(A)), **TOL)
    torch.testing.assert_close(t_transpose(A), t_transpose_ref(A), **TOL)
    # the t-transpose is the matrix transpose of the block-circulant form
    torch.testing.assert_close(bcirc(t_transpose(A)), bcirc(A).T, **TOL)


@settings(max_examples=40, deadline=None)
@given(dims, dims, dims, tubes, seeds)
def test_adjoint_identity(n1, n2, n3, k, seed):
    A, X, Y = rand(seed, n1, n2, k), rand(seed + 1, n2, n3, k), rand(seed + 2, n1, n3, k)
    lhs = (t_product(A, X) * Y).sum()
    rhs = (X * t_product(t_transpose(A), Y)).sum()
    torch.testing.assert_close(lhs, rhs, **TOL)


@settings(max_examples=40, deadline=None)
@given(dims, dims, tubes, seeds, st.booleans())
@example(4, 2, 4, 14, True)  # a frequency whose rank-1 matrix is rounding noise: a per-frequency cut-off inverted it
def test_pinv_moore_penrose(n1, n2, k, seed, low_rank):
    A = rand(seed, n1, n2, k)
    if low_rank and min(n1, n2) > 1:  # rank-deficient in every frequency
        A = t_product(rand(seed, n1, 1, k), rand(seed + 1, 1, n2, k))
    P = t_pinv(A)
    tol = dict(rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(t_product(t_product(A, P), A), A, **tol)
    torch.testing.assert_close(t_product(t_product(P, A), P), P, **tol)
    AP, PA = t_product(A, P), t_product(P, A)
    torch.testing.assert_close(t_transpose(AP), AP, **tol)
    torch.testing.assert_close(t_transpose(PA), PA, **tol)
    # and against the matrix pseudo-inverse of the block-circulant form
    torch.testing.assert_close(bcirc(P), torch.linalg.pinv(bcirc(A)), **tol)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), dims, dims, tubes, seeds, st.sampled_from([0.0, 0.1, 3.0]))
def test_lstsq_matches_normal_equations(N, dA, dB, k, seed, lam):
    X, Y = rand(seed, N, dA, k), rand(seed + 1, N, dB, k)
    if lam == 0.0 and N < dA:
        lam = 0.5  # keep the normal equations well posed for the dense reference
    T = t_lstsq(X, Y, lam)
    # dense reference: vec form via block-circulant matrices, min ||bcirc(X) unfold(T) - unfold(Y)||² + λ||T||²
    BX = bcirc(X)
    from tproduct_reference import unfold, fold
    U = torch.linalg.solve(BX.T @ BX + lam * torch.eye(BX.shape[1], dtype=BX.dtype), BX.T @ unfold(Y))
    torch.testing.assert_close(T, fold(U, dA, k), rtol=1e-7, atol=1e-7)


def test_lstsq_recovers_planted_map_and_norm():
    X = rand(0, 200, 6, 4)
    T_true = rand(1, 6, 3, 4)
    T = t_lstsq(X, t_product(X, T_true), 0.0)
    torch.testing.assert_close(T, T_true, rtol=1e-8, atol=1e-8)
    assert float(t_norm(T - T_true)) < 1e-8


def test_batched_and_float32():
    A = torch.randn(2, 3, 4, 5, 6)
    B = torch.randn(2, 3, 5, 2, 6)
    C = t_product(A, B)
    assert C.shape == (2, 3, 4, 2, 6) and C.dtype == torch.float32
    torch.testing.assert_close(C[1, 2], t_product_ref(A[1, 2], B[1, 2]), rtol=1e-4, atol=1e-4)


def test_gradients_survive_fft_and_tensorly_reference():
    A = rand(0, 3, 4, 5).requires_grad_()
    B = rand(1, 4, 2, 5).requires_grad_()
    assert torch.autograd.gradcheck(t_product, (A, B))
    assert torch.autograd.gradcheck(t_product_ref, (A, B))  # through tensorly's PyTorch backend
    g_fast = torch.autograd.grad(t_product(A, B).square().sum(), (A, B))
    g_ref = torch.autograd.grad(t_product_ref(A, B).square().sum(), (A, B))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, **TOL)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="inner dimensions"):
        t_product(torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="tube lengths"):
        t_product(torch.randn(2, 3, 4), torch.randn(3, 3, 5))
    with pytest.raises(ValueError, match="dtypes differ"):
        t_product(torch.randn(2, 3, 4), torch.randn(3, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        t_transpose(torch.randn(3, 3))
    with pytest.raises(ValueError, match="lam"):
        t_lstsq(torch.randn(4, 2, 3), torch.randn(4, 2, 3), -1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch_gives_an_empty_product(dtype):
    """A bucket with no words (empty batch) must not reach the FFT library, which refuses it."""
    A = torch.zeros(0, 3, 4, 8, dtype=dtype)
    B = torch.randn(4, 5, 8, dtype=dtype)
    out = t_product(A, B)
    assert out.shape == (0, 3, 5, 8) and out.dtype == dtype
