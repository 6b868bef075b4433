"""The causal LM's target path: NLL gradients see each token as a scored target, not only as input."""

import pytest
import torch

from fuse.models.backbones import CausalLMBackbone
from tiny import bpe_tokenizer


def _lm(kind: str, tied: bool = True, dtype=torch.float64, d: int = 16, seed: int = 0) -> CausalLMBackbone:
    tok = bpe_tokenizer()
    torch.manual_seed(seed)
    if kind == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                          tie_word_embeddings=tied)
        model = LlamaForCausalLM(cfg)
    else:  # Gemma-3: embeddings scaled by √d inside the model, so inputs_embeds ≠ W_out rows
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                               sliding_window=16, tie_word_embeddings=tied)
        model = Gemma3ForCausalLM(cfg)
    model = model.eval().to(dtype).requires_grad_(False)
    return CausalLMBackbone(model, tok, kind)


def _ids(lm, n=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, lm.vocab_size, (1, n), generator=g)


def _onehot_grad(lm, ids, target_gradient=True):
    lm.target_gradient = target_gradient
    oh = torch.nn.functional.one_hot(ids, lm.embeddings.shape[0]).to(lm.dtype).requires_grad_(True)
    loss = lm.token_nll(oh @ lm.embeddings, ids).sum()
    loss.backward()
    return loss.detach(), oh.grad[0]


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_onehot_gradient_matches_the_relaxed_reference(kind):
    """Tied embeddings: the gradient equals that of the relaxed loss −Σ onehot_t·z_{t-1} + lse(z_{t-1})."""
    lm = _lm(kind)
    ids = _ids(lm)
    loss, g = _onehot_grad(lm, ids)
    oh = torch.nn.functional.one_hot(ids, lm.embeddings.shape[0]).to(lm.dtype).requires_grad_(True)
    z = lm.logits(oh @ lm.embeddings)[:, :-1]
    ref = (-(oh[:, 1:] * z).sum(-1) + torch.logsumexp(z, -1)).sum()
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(g, oh.grad[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_last_token_swap_is_predicted_exactly(kind):
    """The last token is only a target: its exact swap change is linear, and the target path predicts it."""
    lm = _lm(kind)
    ids = _ids(lm)
    base, g = _onehot_grad(lm, ids)
    _, g_plain = _onehot_grad(lm, ids, target_gradient=False)
    last = ids.shape[1] - 1
    for v in (5, 17, 40):
        new = ids.clone()
        new[0, last] = v
        with torch.no_grad():
            actual = lm.token_nll(lm.embed(new), new).sum() - base
        torch.testing.assert_close(g[last, v] - g[last, ids[0, last]], actual, rtol=1e-9, atol=1e-9)
        assert float(g_plain[last, v] - g_plain[last, ids[0, last]]) == 0.0  # blind without the target path


def test_values_never_change_and_untied_models_use_a_fitted_map():
    lm = _lm("llama", tied=False)
    ids = _ids(lm)
    with_path, g = _onehot_grad(lm, ids, True)
    without, g0 = _onehot_grad(lm, ids, False)
    torch.testing.assert_close(with_path, without)
    assert not torch.allclose(g, g0)
    A = lm.output_map()
    assert A.shape == (lm.dim, lm.dim) and torch.isfinite(A).all()
    with torch.no_grad():  # no grad wanted: the plain path, identical values
        torch.testing.assert_close(lm.token_nll(lm.embed(ids), ids).sum(), without)


def test_embedding_gradient_is_that_of_the_relaxed_loss():
    # (HF's RMSNorm computes in float32 even for float64 models, so finite differences are too coarse
    # for gradcheck here; the identity below is exact.)
    lm = _lm("gemma3", d=16)
    ids = _ids(lm, n=5)
    emb = lm.embed(ids).detach().clone().requires_grad_(True)
    A = lm.output_map().double()

    loss = lm.token_nll(emb, ids).sum()
    (g,) = torch.autograd.grad(loss, emb)
    # finite differences of the relaxed loss, where row x_t of W_out is replaced by e_t @ A
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    assert not cap

    def relaxed_loss(e):
        captured = []
        h = lm.model.get_output_embeddings().register_forward_hook(lambda m, a, o: captured.append(a[0]))
        z = lm.logits(e)[:, :-1]
        h.remove()
        hid = captured[-1][:, :-1]
        tgt = (hid * (e[:, 1:] @ A)).sum(-1)
        return (-tgt + torch.logsumexp(z, -1)).sum()

    (g_ref,) = torch.autograd.grad(relaxed_loss(emb), emb)
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-8)
