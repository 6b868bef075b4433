"""In-context AR learning: data, linear attention, closed-form predictors, training."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.icl import (ICLConfig, LinearAttention, PositionalLinearAttention, augmented_tokens, causal_linear_attention,
                      context_matrices, fit_step_size, gd_step_features, gd_step_predictions, ols_predictions,
                      plain_tokens, train, trajectories)
from fuse.icl.predictors import fit_preconditioner, preconditioned_gd_predictions

TOL = 1e-10


def _slow_linear_attention(q, k, v):
    B, T, _ = q.shape
    out = torch.zeros(B, T, v.shape[-1], dtype=q.dtype)
    for t in range(T):
        for j in range(t + 1):
            out[:, t] += v[:, j] * (k[:, j] * q[:, t]).sum(-1, keepdim=True) / (t + 1)
    return out


def _slow_gd(states):
    n, T1, d = states.shape
    out = torch.zeros(n, T1 - 1, d, dtype=states.dtype)
    for t in range(1, T1):
        acc = torch.zeros(n, d, dtype=states.dtype)
        for j in range(1, t + 1):
            acc += states[:, j] * (states[:, j - 1] * states[:, t]).sum(-1, keepdim=True)
        out[:, t - 1] = acc / t
    return out


@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_linear_attention_matches_loop(T, d, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, T, d, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(causal_linear_attention(q, k, v), _slow_linear_attention(q, k, v), atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["orthogonal", "commuting"])
def test_context_matrices(kind):
    W = context_matrices(8, 5, kind, seed=3)
    eye = torch.eye(5, dtype=W.dtype).expand(8, 5, 5)
    torch.testing.assert_close(W @ W.transpose(1, 2), eye, atol=1e-10, rtol=0)
    assert torch.equal(W, context_matrices(8, 5, kind, seed=3))
    assert not torch.equal(W, context_matrices(8, 5, kind, seed=4))
    if kind == "commuting":
        torch.testing.assert_close(W[0] @ W[1], W[1] @ W[0], atol=1e-10, rtol=0)
    else:  # Haar matrices do not commute
        assert (W[0] @ W[1] - W[1] @ W[0]).abs().max() > 1e-3


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        context_matrices(2, 3, "unitary")
    with pytest.raises(ValueError, match="variant"):
        ICLConfig(variant="nope")
    with pytest.raises(ValueError, match="steps"):
        ICLConfig(steps=1)
    with pytest.raises(ValueError, match="s0"):
        ICLConfig(s0="zeros")
    with pytest.raises(ValueError, match="tokens must be"):
        LinearAttention(3)(torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="max_len"):
        PositionalLinearAttention(2, 4)(torch.zeros(1, 5, 6))


def test_trajectories_preserve_norm_and_tokens():
    W = context_matrices(4, 5, seed=0)
    s = trajectories(W, 10)
    assert s.shape == (4, 11, 5)
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(4, 11, dtype=s.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(s[:, 3], torch.einsum("nij,nj->ni", W, s[:, 2]))
    e = augmented_tokens(s)
    assert e.shape == (4, 10, 15)
    assert torch.equal(e[:, :, :5], torch.zeros(4, 10, 5))
    assert torch.equal(e[:, 2, 5:10], s[:, 3]) and torch.equal(e[:, 2, 10:], s[:, 2])
    p = plain_tokens(s)
    assert torch.equal(p[:, :, 10:], torch.zeros(4, 10, 5)) and torch.equal(p[:, :, 5:10], s[:, 1:])


def test_gd_features_match_loop():
    s = trajectories(context_matrices(3, 4, seed=1), 7)
    torch.testing.assert_close(gd_step_features(s), _slow_gd(s), atol=TOL, rtol=0)


@pytest.mark.parametrize("eta", [0.5, 3.0])
def test_linear_attention_with_gd_weights_is_one_gd_step(eta):
    """The paper's construction: V reads s_j (×η), K reads s_{j−1}, Q reads s_t."""
    d = 4
    layer = LinearAttention(d, dtype=torch.float64)
    I, Z = torch.eye(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
    with torch.no_grad():
        layer.V.copy_(torch.cat([torch.cat([Z, eta * I, Z], 1), torch.zeros(2 * d, 3 * d, dtype=torch.float64)]))
        layer.K.copy_(torch.cat([torch.cat([Z, Z, I], 1), torch.zeros(2 * d, 3 * d, dtype=torch.float64)]))
        layer.Q.copy_(torch.cat([torch.cat([Z, I, Z], 1), torch.zeros(2 * d, 3 * d, dtype=torch.float64)]))
    s = trajectories(context_matrices(5, d, "commuting", seed=2), 9)
    pred = layer(augmented_tokens(s))
    torch.testing.assert_close(pred, gd_step_predictions(s, eta), atol=TOL, rtol=0)
    assert abs(fit_step_size(pred, gd_step_features(s)) - eta) < 1e-10


def test_preconditioner_fit_recovers_gamma():
    s = trajectories(context_matrices(64, 3, seed=5), 12)
    gamma = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pred = preconditioned_gd_predictions(s, gamma)
    torch.testing.assert_close(fit_preconditioner(pred, s), gamma, atol=1e-6, rtol=0)
    # scalar η is the special case Γ = η·I
    torch.testing.assert_close(preconditioned_gd_predictions(s, 2.0 * torch.eye(3, dtype=torch.float64)),
                               gd_step_predictions(s, 2.0), atol=TOL, rtol=0)


def test_ols_recovers_w_once_determined():
    d = 4
    W = context_matrices(6, d, seed=7)
    s = trajectories(W, 12)
    pred = ols_predictions(s)
    target = s[:, 2:]
    # from t = d pairs on, the system is determined (orbit of a generic vector spans R^d)
    assert (pred[:, d - 1:-1] - target[:, d - 1:]).abs().max() < 1e-5
    # cross-check one position against numpy least squares
    import numpy as np

    t = 6
    X, Y = s[0, :t].numpy(), s[0, 1:t + 1].numpy()
    W_np = np.linalg.lstsq(X, Y, rcond=None)[0].T
    np.testing.assert_allclose(pred[0, t - 1].numpy(), W_np @ s[0, t].numpy(), atol=1e-6)


def test_gradcheck_linear_attention():
    layer = LinearAttention(2, init_std=0.5, dtype=torch.float64)
    e = torch.randn(1, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (e,))


def test_positional_variant_shapes_and_grad():
    m = PositionalLinearAttention(3, 8)
    s = trajectories(context_matrices(2, 3, seed=0), 8).float()
    out = m(plain_tokens(s))
    assert out.shape == (2, 8, 3)
    out.sum().backward()
    assert m.pos.grad is not None and m.pos.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["augmented", "positional"])
def test_training_decreases_loss_and_reports(variant):
    cfg = ICLConfig(d=3, steps=10, variant=variant, train_steps=60, batch_size=128, eval_sequences=64)
    _, res = train(cfg)
    assert len(res.losses) == 60
    factor = 0.8 if variant == "augmented" else 0.97  # two stacked small layers start slowly
    assert sum(res.losses[-10:]) / 10 < factor * sum(res.losses[:10]) / 10
    assert len(res.mse_model) == len(res.mse_gd) == len(res.mse_ols) == len(res.rel_dist) == 9
    assert res.eta > 0 and 0 <= res.rel_dist_all < 1.5
    assert res.to_dict()["config"]["variant"] == variant
