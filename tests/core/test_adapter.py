"""Fitting, mapping, saving and loading the tensor adapter on tiny in-process models."""

import json

import pytest
import torch

import fuse
from fuse.core.adapter import CONFIG_NAME, WEIGHTS_NAME, TensorAdapter
from fuse.core.tproduct import t_identity
from tproduct_reference import bcirc, fold, t_product_ref, unfold
from tiny import WORDS, bpe_tokenizer, tiny_causal_lm, tiny_encoder, unigram_tokenizer, wordpiece_tokenizer

@pytest.fixture(scope="module")
def pair():
    return tiny_causal_lm(bpe_tokenizer(), d=16, name="tiny-bpe"), tiny_encoder(wordpiece_tokenizer(), d=12, name="tiny-wp")


def test_word_slices_layout(pair):
    a, _ = pair
    X, counts = fuse.word_slices(a, ["cat", "naïve"], k=4)
    assert X.shape == (2, 16, 4)
    ids = a.tokenizer(" cat", add_special_tokens=False)["input_ids"]
    assert counts[0] == len(ids)
    torch.testing.assert_close(X[0, :, 0], a.embeddings[ids[0]])
    assert X[0, :, len(ids):].abs().sum() == 0  # zero padding after the word's tokens


def test_shared_tokenizer_gives_identity_map():
    tok = bpe_tokenizer()
    a = tiny_causal_lm(tok, d=8, seed=1, name="a")
    b = tiny_causal_lm(tok, d=8, seed=1, name="b")  # same embeddings
    ad = TensorAdapter.fit(a, b, words=WORDS, k=4, lam=1e-9)
    torch.testing.assert_close(ad.T, t_identity(8, 4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheme", ["padded", "bucket"])
def test_fit_recovers_planted_map(scheme):
    """A target whose embedding is an exact linear image of the source's is recovered on held-out words."""
    tok = unigram_tokenizer()
    a = tiny_causal_lm(tok, d=6, seed=0, name="a")
    b = tiny_causal_lm(tok, d=4, seed=1, name="b")
    W = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    b.model.get_input_embeddings().weight.data = a.embeddings @ W
    # many synthetic words (pairs of the tokenizer's own pieces), so every bucket is well determined
    pieces = sorted(p for p in tok.get_vocab() if p.isalpha())
    words = sorted({x + y for x in pieces for y in pieces})[::7]
    fit, held = words[: len(words) - 40], words[len(words) - 40 :]
    ad = TensorAdapter.fit(a, b, words=fit, k=6, lam=1e-10, scheme=scheme)
    XA, cA = fuse.word_slices(a, held, 6)
    XB, cB = fuse.word_slices(b, held, 6)
    torch.testing.assert_close(ad.map(XA, cA, cB), XB, atol=1e-3, rtol=1e-3)


def test_map_and_adjoint_are_adjoint(pair):
    a, b = pair
    for scheme in ("padded", "bucket"):
        ad = TensorAdapter.fit(a, b, words=WORDS, k=4, lam=1e-2, scheme=scheme).to(dtype=torch.float64)
        g = torch.Generator().manual_seed(0)
        X = torch.randn(7, 16, 4, generator=g, dtype=torch.float64)
        G = torch.randn(7, 12, 4, generator=g, dtype=torch.float64)
        ct = torch.tensor([1, 2, 3, 4, 1, 2, 3])
        lhs = (ad.map(X, None, ct) * G).sum()
        rhs = (X * ad.adjoint(G * (torch.arange(4) < ct[:, None]).double()[:, None, :], ct)).sum()
        torch.testing.assert_close(lhs, rhs)


def test_padded_fit_is_the_least_squares_map(pair):
    """With λ = 0 the padded adapter is argmin_T ||X_A * T − X_B||², solved here without any FFT: by the definition
    X * T = fold(bcirc(X) · unfold(T)) it is one real least-squares problem, bcirc(X_A) · U ≈ unfold(X_B), whose
    solution U is unfold(T). Mapping words must then give the block-circulant t-product with that T."""
    TOL = dict(rtol=1e-4, atol=1e-5)  # the fit runs in float64 and returns float32
    a, b = pair
    k = 4
    ad = TensorAdapter.fit(a, b, words=WORDS, k=k, lam=0.0)
    XA, cA = fuse.word_slices(a, WORDS, k)
    XB, cB = fuse.word_slices(b, WORDS, k)
    keep = (cA > 0) & (cA <= k) & (cB > 0) & (cB <= k)
    XA, XB = XA[keep].double(), XB[keep].double()
    M = bcirc(XA)  # (k·N, k·d_A)
    assert torch.linalg.matrix_rank(M) == M.shape[1]  # enough words: the minimiser is unique
    T_ref = fold(torch.linalg.lstsq(M, unfold(XB)).solution, a.dim, k)  # (d_A, d_B, k)
    torch.testing.assert_close(ad.T.double(), T_ref, **TOL)
    X, _ = fuse.word_slices(a, WORDS[:5], k)
    torch.testing.assert_close(ad.map(X).double(), t_product_ref(X.double(), T_ref), **TOL)


def test_save_load_round_trip(tmp_path, pair):
    a, b = pair
    for scheme in ("padded", "bucket"):
        ad = TensorAdapter.fit(a, b, words=WORDS, k=4, lam=0.05, scheme=scheme, seed=3)
        d = ad.save_pretrained(tmp_path / scheme)
        assert sorted(p.name for p in d.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
        raw = (d / CONFIG_NAME).read_text()
        cfg = json.loads(raw)
        assert list(cfg) == sorted(cfg)  # sorted JSON
        for key in ("source", "target", "source_vocab_hash", "target_vocab_hash", "k", "lam", "word_source", "seed", "version"):
            assert key in cfg
        assert cfg["source_vocab_hash"] == a.vocab_hash and cfg["target_vocab_hash"] == b.vocab_hash
        back = TensorAdapter.from_pretrained(d, source=a, target=b)
        assert torch.allclose(back.T, ad.T) and back.config == ad.config
        with open(d / WEIGHTS_NAME, "rb") as f:
            assert b"pickle" not in f.read(256)


def test_load_refuses_wrong_tokenizer(tmp_path, pair):
    a, b = pair
    d = TensorAdapter.fit(a, b, words=WORDS, k=4).save_pretrained(tmp_path / "ad")
    other = tiny_causal_lm(unigram_tokenizer(), d=16, name="other")
    with pytest.raises(ValueError, match="vocabulary hash"):
        TensorAdapter.from_pretrained(d, source=other, target=b)
    with pytest.raises(ValueError, match="target tokenizer"):
        TensorAdapter.from_pretrained(d, source=a, target=other)
    with pytest.raises(ValueError, match="not an adapter folder"):
        TensorAdapter.from_pretrained(tmp_path)


def test_bad_input(pair):
    a, b = pair
    ad = TensorAdapter.fit(a, b, words=WORDS, k=4)
    with pytest.raises(ValueError, match="expects"):
        ad.map(torch.zeros(3, 12, 4))
    with pytest.raises(ValueError, match="adapter is torch.float32"):
        ad.map(torch.zeros(3, 16, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="scheme"):
        TensorAdapter.fit(a, b, words=WORDS, scheme="nope")
    with pytest.raises(ValueError, match="without whitespace"):
        TensorAdapter.fit(a, b, words=["two words"])
    with pytest.raises(ValueError, match="k must be"):
        TensorAdapter.fit(a, b, words=WORDS, k=0)
    bucket = TensorAdapter.fit(a, b, words=WORDS, k=4, scheme="bucket")
    with pytest.raises(ValueError, match="counts_target"):
        bucket.map(torch.zeros(3, 16, 4))
