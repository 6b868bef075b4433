"""Planner-conditioned LMs on tiny random models (offline, fast)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.planner import (ActionCodebook, ActionConditionedLM, MixSchedule, Planner, PlannerConfig, PlannerLM,
                          TrainConfig, action_weights, build_data, documents_from_texts, embed_documents, evaluate,
                          split_documents, train)
from fuse.planner.corpus import load_corpus, split_sentences, strip_rest
from fuse.planner.modes import DIFFERENTIABLE_MODES, MODES
from tests.tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder, wordpiece_tokenizer

TOL = 1e-5
TEXTS = [
    "The cat sat on the mat. It was a sunny day! The dog barked at the cat. Then the cat ran away.",
    "Language models read tokens. Tokens are vectors in a space. Gradients flow through frozen models.",
    "An image of a boat. The lake was calm and blue. The sun set over the lake. Birds flew home.",
    "Numbers like 42 appear in text. Names such as Alice and Bob do too. Accents are unicode text.",
    "The fox jumps over the dog. The dog sleeps in the sun. The fox runs into the woods again.",
    "Tensors stack slices. The Fourier transform diagonalizes blocks. Circulant blocks are simple.",
]


def _lm(n_layers: int = 2, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    from fuse.models.backbones import CausalLMBackbone

    tok = bpe_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=n_layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    model.requires_grad_(False)
    return CausalLMBackbone(model, tok, "tiny-llama")


@pytest.fixture(scope="module")
def setup():
    docs = documents_from_texts(TEXTS)
    enc = tiny_encoder(wordpiece_tokenizer(), d=12)
    embs = embed_documents(enc, docs, batch_size=5)
    book = ActionCodebook.fit(torch.cat(embs), 4, seed=0, encoder="tiny-encoder")
    lm = _lm()
    data = build_data(docs, lm.tokenizer, embs, book, max_tokens=24, context=2)
    return docs, embs, book, lm, data


# -- corpus ------------------------------------------------------------------------------------------
def test_strip_rest_removes_markup():
    src = ("Title\n=====\n\n.. note::\n   hidden\n\nUse :func:`len` and ``x + 1`` here. See `docs <http://a>`_ now.\n"
           "For example::\n\n   code()\n\n* A bullet item is prose.\n")
    paras = strip_rest(src)
    assert paras == ["Use len and x + 1 here. See docs now. For example:", "A bullet item is prose."]


def test_split_sentences_keeps_abbreviations():
    s = split_sentences("Use a list, e.g. a tuple. Then stop! Is it 3.5? Yes it is.", min_words=2)
    assert s == ["Use a list, e.g. a tuple.", "Then stop!", "Is it 3.5?", "Yes it is."]


def test_split_by_document_is_seeded_and_disjoint():
    docs = documents_from_texts(TEXTS)
    a = split_documents(docs, val_fraction=0.34, seed=3)
    b = split_documents(docs, val_fraction=0.34, seed=3)
    assert [d.name for d in a[1]] == [d.name for d in b[1]]
    assert not {d.name for d in a[0]} & {d.name for d in a[1]}
    assert len(a[0]) + len(a[1]) == len(docs) and len(a[1]) == 2


def test_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "a.txt").write_text("no\n\n=====\n")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        split_documents([], seed=0)
    with pytest.raises(ValueError, match="does not exist"):
        load_corpus(tmp_path / "missing")


# -- actions -----------------------------------------------------------------------------------------
def test_k_larger_than_sentences_is_a_clear_error():
    emb = torch.randn(5, 8)
    with pytest.raises(ValueError, match="k=6 actions but only 5 sentences"):
        ActionCodebook.fit(emb, 6)
    with pytest.raises(ValueError, match="corpus is empty"):
        ActionCodebook.fit(torch.zeros(0, 8), 2)


def test_codebook_seeded_assign_and_round_trip(tmp_path):
    emb = torch.nn.functional.normalize(torch.randn(60, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    a, b = ActionCodebook.fit(emb, 5, seed=2), ActionCodebook.fit(emb, 5, seed=2)
    assert torch.equal(a.centroids, b.centroids)
    labels = a.assign(emb)
    slow = torch.stack([min(range(5), key=lambda k: float(((e - a.centroids[k]) ** 2).sum())) * torch.ones((), dtype=torch.long)
                        for e in emb])
    assert torch.equal(labels, slow)
    a.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codebook.safetensors", "codebook_config.json"]
    c = ActionCodebook.load(tmp_path)
    assert torch.allclose(c.centroids, a.centroids) and c.seed == 2 and c.k == 5


# -- planner -----------------------------------------------------------------------------------------
def test_planner_shapes_and_causality():
    torch.manual_seed(0)
    p = Planner(PlannerConfig(embed_dim=6, n_actions=5, d_model=16, n_layers=2, n_heads=2, dropout=0.0)).eval()
    x = torch.randn(3, 7, 6)
    s = p(x)
    assert s.shape == (3, 7, 5)
    y = x.clone()
    y[:, 4:] = torch.randn(3, 3, 6)  # change sentences 4.. : scores 0..4 depend only on sentences < j
    assert torch.allclose(p(y)[:, :5], s[:, :5], atol=TOL)
    assert not torch.allclose(p(y)[:, 5:], s[:, 5:], atol=TOL)


def test_planner_config_rejects_bad_values():
    with pytest.raises(ValueError, match="divisible"):
        PlannerConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_actions"):
        PlannerConfig(n_actions=0)


# -- modes -------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODES), st.floats(0.1, 5.0), st.floats(0.0, 1.0), st.booleans())
def test_action_weights_are_distributions(mode, tau, share, training):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, 4, generator=g)
    labels = torch.randint(0, 4, (2, 3), generator=g)
    w = action_weights(scores, labels, mode, tau=tau, training=training, oracle_share=share, fixed_action=1, generator=g)
    assert w.shape == (2, 3, 4) and (w >= -TOL).all()
    expected = 0.0 if mode == "none" else 1.0
    assert torch.allclose(w.sum(-1), torch.full((2, 3), expected), atol=1e-5)
    if mode == "oracle":
        assert torch.equal(w.argmax(-1), labels)


@pytest.mark.parametrize("seed", range(20))
def test_straight_through_forward_is_hard_backward_is_soft(seed):
    torch.manual_seed(seed)
    scores = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(1, 2, dtype=torch.long)
    w = action_weights(scores, labels, "straight_through", tau=0.7)
    assert torch.equal(w.detach(), torch.nn.functional.one_hot(scores.argmax(-1), 5).double())
    c = torch.randn(5, dtype=torch.float64)
    (w @ c).sum().backward()
    s2 = scores.detach().clone().requires_grad_(True)
    (torch.softmax(s2 / 0.7, -1) @ c).sum().backward()
    assert torch.allclose(scores.grad, s2.grad)


def test_mix_schedule_is_linear_then_constant():
    m = MixSchedule(1.0, 0.0, 10)
    assert [m(s) for s in (0, 5, 10, 50)] == [1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="start"):
        MixSchedule(1.5, 0.0, 3)
    with pytest.raises(ValueError, match="unknown mode"):
        action_weights(torch.randn(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), "argmax")


# -- conditioning ------------------------------------------------------------------------------------
def test_conditioning_shapes_and_zero_actions_only_add_bias(setup):
    _, _, book, lm, data = setup
    c = ActionConditionedLM(lm, book.dim, n_layers=1)
    b = data.collate([0, 1], max_sentences=16)
    base = lm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    zero = c(b.input_ids, actions=torch.zeros(*b.input_ids.shape, book.dim), attention_mask=b.attention_mask)
    assert zero.shape == base.shape and torch.allclose(zero, base, atol=TOL)  # bias starts at zero
    moved = c(b.input_ids, actions=torch.randn(*b.input_ids.shape, book.dim), attention_mask=b.attention_mask)
    assert not torch.allclose(moved, base, atol=TOL)
    again = lm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    assert torch.allclose(again, base)  # hooks are gone afterwards
    assert all(not p.requires_grad for p in lm.model.parameters())
    with pytest.raises(ValueError, match="actions must be"):
        c(b.input_ids, actions=torch.zeros(1, 2, book.dim))


def test_start_layer_matches_full_model(setup):
    _, _, book, lm, data = setup
    c = ActionConditionedLM(lm, book.dim, n_layers=1)
    b = data.collate([0, 1, 2], max_sentences=16)
    assert c.check_start_layer(b.input_ids, b.attention_mask)


def test_restricted_vocab_nll_equals_full_when_vocab_is_everything(setup):
    _, _, book, lm, data = setup
    c = ActionConditionedLM(lm, book.dim, n_layers=2)
    b = data.collate([0, 1], max_sentences=16)
    a = torch.randn(*b.input_ids.shape, book.dim)
    full = c.token_nll(b.input_ids, b.attention_mask, a)
    everything = c.token_nll(b.input_ids, b.attention_mask, a, vocab=torch.arange(len(lm.tokenizer)))
    assert torch.allclose(full, everything, atol=1e-5)
    with pytest.raises(ValueError, match="every target"):
        c.token_nll(b.input_ids, b.attention_mask, a, vocab=torch.tensor([0, 1]))


# -- gradients reach the planner only in soft / straight-through / Gumbel ---------------------------
@pytest.mark.parametrize("mode", ["oracle", "hard", "straight_through", "gumbel", "soft"])
def test_lm_gradient_reaches_planner_only_in_differentiable_modes(setup, mode):
    _, _, book, lm, data = setup
    m = PlannerLM.build(lm, book, mode=mode, n_layers=1, seed=0,
                        planner_config=PlannerConfig(embed_dim=book.dim, n_actions=book.k, d_model=16, n_layers=1, n_heads=2))
    batch = data.collate([0, 1, 2], max_sentences=16)
    out = m.losses(batch, training=True, generator=torch.Generator().manual_seed(0))
    out.nll.backward()  # LM loss only, no cross-entropy
    grads = [p.grad for p in m.planner.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert reached == (mode in DIFFERENTIABLE_MODES)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.conditioned.proj.parameters())


def _gpt2(dtype=torch.float64):
    from transformers import GPT2Config, GPT2LMHeadModel

    from fuse.models.backbones import CausalLMBackbone

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=2, n_head=2, n_positions=256, attn_pdrop=0.0,
                     resid_pdrop=0.0, embd_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).eval().to(dtype)
    model.requires_grad_(False)
    return CausalLMBackbone(model, tok, "tiny-gpt2")


def test_planner_gradient_matches_float64_gradcheck(setup):
    # GPT-2 (LayerNorm in the working dtype; Llama's RMSNorm upcasts to float32 and would blur float64)
    _, _, book, _, data = setup
    c = ActionConditionedLM(_gpt2(), book.dim, n_layers=1, init_std=0.3).double()
    b = data.collate([0], max_sentences=16)
    cent = book.centroids.double()
    idx = b.token_sentence

    def f(scores):
        w = torch.softmax(scores, -1) @ cent
        a = w.gather(1, idx.unsqueeze(-1).expand(-1, -1, cent.shape[1]))
        return c.token_nll(b.input_ids, b.attention_mask, a).sum()

    s = torch.randn(1, b.labels.shape[1], book.k, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-5)


# -- training, evaluation, save/load -----------------------------------------------------------------
def test_training_lowers_loss_and_round_trips(setup, tmp_path):
    _, _, book, lm, data = setup
    m = PlannerLM.build(lm, book, mode="soft", n_layers=1, seed=0,
                        planner_config=PlannerConfig(embed_dim=book.dim, n_actions=book.k, d_model=16, n_layers=1, n_heads=2,
                                                     dropout=0.0))
    before = evaluate(m, data, batch_size=4)
    res = train(m, data, TrainConfig(steps=12, batch_size=4, lr=5e-2, seed=0, restrict_vocab=True),
                val_data=data, checkpoint_dir=tmp_path)
    assert res.steps == 12 and math.isfinite(res.val.perplexity)
    assert res.val.perplexity < before.perplexity
    assert 0.0 <= res.val.action_accuracy <= 1.0
    assert {p.name for p in tmp_path.iterdir()} == {"planner_lm.safetensors", "planner_lm_config.json", "train_config.json"}
    m2 = PlannerLM.load(tmp_path, lm)
    for (n1, p1), (n2, p2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.allclose(p1, p2)
    again = evaluate(m2, data, batch_size=4)
    assert again.perplexity == pytest.approx(res.val.perplexity, rel=1e-5)


def test_training_is_seeded(setup):
    _, _, book, lm, data = setup
    pc = PlannerConfig(embed_dim=book.dim, n_actions=book.k, d_model=16, n_layers=1, n_heads=2, dropout=0.0)
    runs = []
    for _ in range(2):
        m = PlannerLM.build(lm, book, mode="gumbel", n_layers=1, seed=1, planner_config=pc)
        runs.append(train(m, data, TrainConfig(steps=3, batch_size=2, seed=5)).loss_history)
    assert runs[0] == runs[1]


def test_cached_hidden_states_give_the_same_loss(setup):
    docs, embs, book, lm, _ = setup
    data = build_data(docs, lm.tokenizer, embs, book, max_tokens=24, context=2)
    m = PlannerLM.build(lm, book, mode="oracle", n_layers=1, seed=0)
    plain = m.losses(data.collate([0, 1, 2], max_sentences=16))
    data.cache_hidden(m.conditioned, batch_size=2)
    cached = m.losses(data.collate([0, 1, 2], max_sentences=16))
    assert torch.allclose(plain.nll, cached.nll, atol=1e-4)


def test_load_rejects_other_tokenizer(setup, tmp_path):
    _, _, book, lm, _ = setup
    PlannerLM.build(lm, book, mode="soft", n_layers=1).save(tmp_path)
    other = tiny_causal_lm(wordpiece_tokenizer())
    with pytest.raises(ValueError, match="tokenizer differs"):
        PlannerLM.load(tmp_path, other)
    with pytest.raises(ValueError, match="holds no planner LM"):
        PlannerLM.load(tmp_path / "nothing", lm)


def test_bad_layers_are_clear_errors(setup):
    _, _, book, lm, _ = setup
    with pytest.raises(ValueError, match="n_layers must be"):
        ActionConditionedLM(lm, book.dim, n_layers=5)
    with pytest.raises(ValueError, match="CausalLMBackbone"):
        ActionConditionedLM(object(), 4)


# -- generation and CLI ------------------------------------------------------------------------------
def test_generate_is_seeded_and_checks_input(setup):
    from fuse.planner.generate import generate

    _, _, book, lm, _ = setup
    enc = tiny_encoder(wordpiece_tokenizer(), d=12)
    m = PlannerLM.build(lm, book, mode="soft", n_layers=1, seed=0)
    a = generate(m, enc, "The cat sat on the mat.", max_new_tokens=8, seed=3)
    b = generate(m, enc, "The cat sat on the mat.", max_new_tokens=8, seed=3)
    assert a == b and isinstance(a, str)
    with pytest.raises(ValueError, match="prompt"):
        generate(m, enc, "   ")


def test_cli_reports_bad_corpus_and_model_dir(tmp_path, capsys):
    from fuse.cli import main

    assert main(["planner", "train", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["planner", "generate", "--model-dir", str(tmp_path), "--prompt", "Hi."]) == 2
    assert "holds no planner LM" in capsys.readouterr().err
