"""The gradient bridge: gradcheck in float64, identity when tokenizers coincide, one gradient per word."""

import pytest
import torch

from fuse.core.adapter import AdapterConfig, TensorAdapter
from fuse.core.bridge import Bridge
from fuse.core.tproduct import t_identity
from tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder, unigram_tokenizer, wordpiece_tokenizer
from tiny import WORDS

TEXT = "the quick brown fox sat on a calm blue lake"


@pytest.fixture(scope="module")
def models64():
    a = tiny_causal_lm(bpe_tokenizer(), d=8, name="tiny-bpe", dtype=torch.float64)
    b = tiny_encoder(wordpiece_tokenizer(), d=6, name="tiny-wp", dtype=torch.float64)
    ad = TensorAdapter.fit(a, b, words=WORDS, k=4, lam=1e-2).to(dtype=torch.float64)
    ids = torch.tensor(a.tokenizer(TEXT)["input_ids"])
    return a, b, ad, ids


@pytest.mark.parametrize("mode", ["exact", "surrogate"])
def test_gradcheck_bridge_and_through_target_model(models64, mode):
    a, b, ad, ids = models64
    bridge = Bridge(a, b, ad, mode=mode)
    x = a.embed(ids).detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: bridge(ids, x).inputs_embeds, (x,), atol=1e-6)
    target = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = lambda x: b.cosine_loss(bridge(ids, x).inputs_embeds[None], target)
    assert torch.autograd.gradcheck(loss, (x,), atol=1e-6)


def test_exact_mode_forward_is_the_targets_own_tokenization(models64):
    a, b, ad, ids = models64
    out = Bridge(a, b, ad, mode="exact")(ids, a.embed(ids).requires_grad_())
    own = b.tokenizer(TEXT)["input_ids"]
    assert out.ids.tolist() == own
    torch.testing.assert_close(out.inputs_embeds, b.embed(torch.tensor(own)))


def _identity_adapter(m):
    cfg = AdapterConfig(source=m.name, target=m.name, source_vocab_hash=m.vocab_hash, target_vocab_hash=m.vocab_hash,
                        source_dim=m.dim, target_dim=m.dim, k=4)
    return TensorAdapter(cfg, t_identity(m.dim, 4, dtype=torch.float64))


@pytest.mark.parametrize("tok", [bpe_tokenizer, unigram_tokenizer, wordpiece_tokenizer])
def test_shared_tokenizer_reproduces_identity_gradient(tok):
    m = tiny_causal_lm(tok(), d=8, name="same", dtype=torch.float64)
    ids = torch.tensor(m.tokenizer(TEXT)["input_ids"])
    x = m.embed(ids).detach().clone().requires_grad_()
    out = Bridge(m, m, _identity_adapter(m))(ids, x)
    assert out.ids.tolist() == ids.tolist()
    loss = m.nll(out.inputs_embeds[None], ids[None]).sum()
    (g_bridge,) = torch.autograd.grad(loss, x)
    y = m.embed(ids).detach().clone().requires_grad_()
    (g_direct,) = torch.autograd.grad(m.nll(y[None], ids[None]).sum(), y)
    word = torch.tensor([w >= 0 for w in out.plan.source.word_of_token])
    torch.testing.assert_close(g_bridge[word], g_direct[word])
    assert g_bridge[~word].abs().sum() == 0  # specials get nothing through the bridge


def test_fitted_adapter_between_shared_tokenizers_is_identity_in_the_bridge():
    tok = bpe_tokenizer()
    a = tiny_causal_lm(tok, d=8, seed=2, name="a", dtype=torch.float64)
    b = tiny_causal_lm(tok, d=8, seed=2, name="b", dtype=torch.float64)
    ad = TensorAdapter.fit(a, b, words=WORDS, k=4, lam=1e-9).to(dtype=torch.float64)
    ids = torch.tensor(tok(TEXT)["input_ids"])
    x = a.embed(ids).detach().clone().requires_grad_()
    loss = b.nll(Bridge(a, b, ad)(ids, x).inputs_embeds[None], ids[None]).sum()
    (g,) = torch.autograd.grad(loss, x)
    y = b.embed(ids).detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(b.nll(y[None], ids[None]).sum(), y)
    torch.testing.assert_close(g[1:], g_ref[1:], atol=1e-5, rtol=1e-4)


def test_every_word_gets_its_own_gradient(models64):
    a, b, ad, ids = models64
    bridge = Bridge(a, b, ad)
    x = a.embed(ids).detach().clone().requires_grad_()
    out = bridge(ids, x)
    W = torch.randn(out.inputs_embeds.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (g,) = torch.autograd.grad((out.inputs_embeds * W).sum(), x)
    plan = out.plan
    assert plan.source.n_words == len(TEXT.split()) >= 8
    # slow reference: word by word, G_B(w) through the adjoint, scattered to the word's source tokens
    ref = torch.zeros_like(g)
    for r in range(plan.src_idx.shape[0]):
        ps = [p for p in plan.src_idx[r].tolist() if p >= 0]
        pt = [p for p in plan.tgt_idx[r].tolist() if p >= 0]
        G = torch.zeros(1, b.dim, ad.k, dtype=torch.float64)
        G[0, :, : len(pt)] = W[pt].T
        GA = ad.adjoint(G, torch.tensor([len(pt)]))[0]
        ref[ps] += GA[:, : len(ps)].T
    torch.testing.assert_close(g, ref)
    per_word = [g[p].sum(0) for p in plan.source.positions()]
    for i in range(1, len(per_word)):
        assert not torch.allclose(per_word[i], per_word[0]), f"word {i} got word 0's gradient"
    # the published routing defect gives every word the first word's target gradient
    bad = Bridge(a, b, ad, routing="first_word")
    (g_bad,) = torch.autograd.grad((bad(ids, x).inputs_embeds * W).sum(), x)
    assert not torch.allclose(g_bad, g)


def test_long_words_are_chunked_deterministically(models64):
    a, b, ad, _ = models64
    text = "supercalifragilisticexpialidocious naïveté café"
    ids = torch.tensor(a.tokenizer(text)["input_ids"])
    x = a.embed(ids).detach().clone().requires_grad_()
    out = Bridge(a, b, ad)(ids, x)
    assert (out.plan.counts_src <= ad.k).all() and (out.plan.counts_tgt <= ad.k).all()
    assert len(out.plan.source.positions()[0]) > ad.k  # the long word really is longer than k
    W = torch.randn(out.inputs_embeds.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    g1 = torch.autograd.grad((Bridge(a, b, ad)(ids, x).inputs_embeds * W).sum(), x)[0]
    g2 = torch.autograd.grad((Bridge(a, b, ad)(ids, x).inputs_embeds * W).sum(), x)[0]
    assert torch.equal(g1, g2)
    assert (g1[out.plan.source.positions()[0]].abs().sum(1) > 0).all()  # every token of the long word gets a gradient


def test_bridge_bad_input(models64):
    a, b, ad, ids = models64
    with pytest.raises(ValueError, match="mode"):
        Bridge(a, b, ad, mode="fast")
    other = tiny_encoder(unigram_tokenizer(), d=6, name="other")
    with pytest.raises(ValueError, match="not the target model"):
        Bridge(a, other, ad)
    bridge = Bridge(a, b, ad)
    with pytest.raises(ValueError, match="expected"):
        bridge(ids, torch.zeros(3, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty or only whitespace"):
        bridge(torch.tensor(a.tokenizer("")["input_ids"]))


def test_bridge_casts_at_its_boundary(models64):
    """A source in another dtype than the adapter: the target gets its own dtype, the source a gradient in its own
    dtype, equal to the float64 one up to float32 rounding."""
    TOL = 1e-5
    a, b, ad, ids = models64
    bridge = Bridge(a, b, ad)
    W = torch.randn(len(bridge.plan(ids).target.ids), b.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grads = []
    for dt in (torch.float64, torch.float32):
        x = a.embed(ids).to(dt).requires_grad_()
        out = bridge(ids, x)
        assert out.inputs_embeds.dtype == b.dtype and out.inputs_embeds.device == b.device
        (out.inputs_embeds * W).sum().backward()
        assert x.grad.dtype == dt
        grads.append(x.grad.double())
    assert torch.allclose(grads[0], grads[1], atol=TOL * grads[0].abs().max(), rtol=TOL)
