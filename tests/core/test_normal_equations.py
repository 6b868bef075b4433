"""The lagged (padding-skipping) normal equations equal the Fourier-domain ones."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.core.adapter import ridge_fit
from fuse.core.normal_equations import fourier_products, lagged_cost, lagged_products, normal_equations


def padded(n, d, k, seed, max_len):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(1, max_len + 1, (n,), generator=g)
    return torch.randn(n, d, k, generator=g, dtype=torch.float64) * (torch.arange(k) < c[:, None]).double()[:, None, :]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), dA=st.integers(1, 7), dB=st.integers(1, 6), k=st.integers(1, 9),
       seed=st.integers(0, 10_000), dense=st.booleans())
def test_lagged_equals_fourier(n, dA, dB, k, seed, dense):
    max_len = k if dense else max(1, k // 3)
    X, Y = padded(n, dA, k, seed, max_len), padded(n, dB, k, seed + 1, k)
    G1, R1 = fourier_products(X, Y)
    G2, R2 = lagged_products(X, Y)
    scale = 1 + G1.abs().max()
    torch.testing.assert_close(G2, G1, rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(R2, R1, rtol=0, atol=1e-12 * (1 + R1.abs().max()))


def test_auto_picks_lagged_for_padding_and_fft_for_dense():
    X, Y = padded(400, 8, 8, 0, 2), padded(400, 6, 8, 1, 2)
    g, c = lagged_cost(X, Y)
    assert g < 4 * 5 * 400 and c < 4 * 5 * 400
    Xd, Yd = torch.randn(50, 4, 8, dtype=torch.float64), torch.randn(50, 3, 8, dtype=torch.float64)
    assert lagged_cost(Xd, Yd)[0] == 50 * 8 * 9 // 2  # every lag pair of every row
    for A, B in ((X, Y), (Xd, Yd)):
        G, R = normal_equations(A, B)
        torch.testing.assert_close(G, fourier_products(A, B)[0])


def test_ridge_fit_is_the_same_either_way(monkeypatch):
    X, Y = padded(300, 10, 8, 3, 3), padded(300, 7, 8, 4, 3)
    T_auto = ridge_fit(X, Y, 1e-3)
    import fuse.core.adapter as adapter

    monkeypatch.setattr(adapter, "normal_equations", lambda A, B, dt: fourier_products(A, B, dt))
    torch.testing.assert_close(ridge_fit(X, Y, 1e-3), T_auto, rtol=1e-9, atol=1e-12)


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        normal_equations(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), method="svd")
