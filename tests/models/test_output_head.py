"""Exact scoring applying the output head itself: only where the model's logits are the head's product, and then
with the scores the model's own logits give."""

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.models.backbones import CausalLMBackbone
from fuse.models.backbones import output_head
from fuse.models.backbones.output_head import deferred_head, find_plain_head
from tiny import bpe_tokenizer

D = 16


def _lm(kind: str, dtype=torch.float64, seed: int = 0) -> CausalLMBackbone:
    tok = bpe_tokenizer()
    torch.manual_seed(seed)
    if kind == "gemma-softcap":  # logits = 3 · tanh(z / 3) after the head
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=D, intermediate_size=2 * D, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                               sliding_window=16, final_logit_softcapping=3.0)
        model = Gemma3ForCausalLM(cfg)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=D, intermediate_size=2 * D, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                          tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg)
        if kind == "llama-bias":
            model.lm_head = torch.nn.Linear(D, len(tok), bias=True)
            torch.nn.init.normal_(model.lm_head.bias, std=2.0)
        if kind == "llama-hooked":  # e.g. an offloading hook: the head's call does more than the product
            model.lm_head.register_forward_hook(lambda m, args, out: out * 2)
    model = model.eval().to(dtype).requires_grad_(False)
    return CausalLMBackbone(model, tok, kind)  # finds its plain head, if any


@pytest.mark.parametrize("kind, plain", [("llama", True), ("llama-bias", True), ("gemma-softcap", False),
                                         ("llama-hooked", False)])
def test_the_head_is_taken_over_only_where_the_logits_are_its_product(kind, plain):
    lm = _lm(kind)
    assert (lm.plain_head is not None) is plain
    assert find_plain_head(lm.model) is None or plain


def test_deferred_head_restores_the_head_even_when_the_forward_fails():
    lm = _lm("llama")
    head = lm.plain_head
    with pytest.raises(RuntimeError, match="boom"):
        with deferred_head(head):
            assert head.module(torch.ones(1, D, dtype=torch.float64)).shape == (1, D)
            raise RuntimeError("boom")
    assert "forward" not in vars(head.module)
    assert head.module(torch.ones(1, D, dtype=torch.float64)).shape == (1, len(lm.tokenizer))


def _batch(lm, seed: int, rows: int, length: int, prefix_scored: bool):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, lm.vocab_size, (rows, length), generator=g)
    ids[1:, : length // 2] = ids[0, : length // 2]  # a shared prefix, as an optimizer's candidates have
    lengths = torch.randint(2, length + 1, (rows,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    need = torch.rand(rows, length - 1, generator=g) < 0.5
    if not prefix_scored:  # scores after the shared prefix only (an optimizer's target): the suffix forward's own
        need[:, : length // 2] = False
    return ids * mask, mask, need


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["llama", "llama-bias", "gemma-softcap"]), st.sampled_from(["float64", "float32", "bfloat16"]),
       st.integers(0, 1000), st.integers(2, 9), st.integers(3, 12), st.sampled_from([1, 3, 64]), st.booleans(),
       st.booleans())
def test_scores_through_the_head_equal_the_models_own_logits(kind, dtype, seed, rows, length, batch_size, blocks,
                                                             prefix_scored):
    lm = _lm(kind, getattr(torch, dtype))
    ids, mask, need = _batch(lm, seed, rows, length, prefix_scored)
    mp = pytest.MonkeyPatch()
    if blocks:  # several blocks of the reused buffer in one chunk
        mp.setattr(output_head, "HEAD_BLOCK_ELEMENTS", 2 * lm.vocab_size)
    try:
        fast = lm.score_tokens(ids, mask, need, batch_size=batch_size)
        mp.setattr(lm, "plain_head", None)  # the model applies its head itself
        slow = lm.score_tokens(ids, mask, need, batch_size=batch_size)
    finally:
        mp.undo()
    tol = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 0.1}[dtype]
    torch.testing.assert_close(fast.nll, slow.nll, rtol=tol, atol=tol)
    torch.testing.assert_close(fast.logit, slow.logit, rtol=tol, atol=tol)
    if dtype != "bfloat16":
        assert torch.equal(fast.argmax, slow.argmax)
    if dtype == "float64":  # and both equal the differentiable path
        ref = lm.token_nll(lm.embed(ids), ids, mask)
        torch.testing.assert_close(fast.nll, torch.where(need & (mask[:, 1:] == 1), ref, torch.zeros_like(ref)),
                                   rtol=1e-9, atol=1e-9)


def test_a_forward_that_applies_its_head_anyway_is_scored_from_its_logits(monkeypatch):
    lm = _lm("llama-bias")
    ids, mask, need = _batch(lm, 3, 6, 9, prefix_scored=False)
    fast = lm.score_tokens(ids, mask, need)
    import fuse.models.backbones.exact_scoring as exact_scoring

    monkeypatch.setattr(exact_scoring, "deferred_head", lambda head: contextlib.nullcontext())  # e.g. compiled later
    applied = lm.score_tokens(ids, mask, need)
    torch.testing.assert_close(applied.nll, fast.nll, rtol=1e-12, atol=1e-12)
