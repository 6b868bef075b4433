"""PromptChain (issue 23): a span inside each model's own rendering of several prompts, the mean over (prompt, model)
pairs; exact ids around the span in the gradient pass and in scoring, one BOS, edge merges dropped and counted."""

import pytest
import torch
import torch.nn.functional as F

import fuse
from fuse.core.adapter import TensorAdapter
from fuse.models.templates import render
from fuse.objectives import Continuation
from fuse.optim import GCGConfig, make_optimizer
from fuse.optim.chain import Chain
from fuse.optim.prompt_chain import PromptChain
from fuse.parallel import DataParallelChain
from tiny import WORDS, bpe_tokenizer, llama3_tokenizer, tiny_causal_lm, unigram_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
TOL_F64 = 1e-10   # float64 models: the same sums in another order
TOL_F32 = 1e-5    # float32: batched/cached scoring against one full forward

#: SmolLM2-style ChatML, with its default system prompt when the messages carry none
CHATML = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
          "trained by Hugging Face<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
          "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
#: a plain template for the Unigram model (no newlines: its vocabulary has none)
PLAIN = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
         "{% if add_generation_prompt %}assistant:{% endif %}")

PROMPTS = [([{"role": "user", "content": "the quick{optim_str} over the lazy dog"}], " a cat"),
           ([{"role": "system", "content": "a picture"}, {"role": "user", "content": "of{optim_str}"}], "the sun")]
SPANS = [" brown fox", " red mat", " small boat"]


@pytest.fixture(scope="module")
def models():
    a = tiny_causal_lm(bpe_tokenizer(), d=16, name="bpe-lm")
    b = tiny_causal_lm(unigram_tokenizer(), d=16, seed=1, name="uni-lm")
    c = tiny_causal_lm(llama3_tokenizer(), d=16, seed=2, name="llama3-lm")
    return a, b, c


@pytest.fixture(scope="module")
def adapters(models):
    a, b, c = models
    return {m.name: TensorAdapter.fit(a, m, words=WORDS, k=4) for m in (b, c)}


@pytest.fixture(scope="module")
def chain(models, adapters):
    return PromptChain(list(models), PROMPTS, adapters=adapters,
                       chat_templates={"bpe-lm": CHATML, "uni-lm": PLAIN})


def spans(tok, texts=SPANS, n=None):
    out = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    n = n or min(len(s) for s in out)
    return [s[:n] for s in out]


def in_use_ids(tok, messages, span_text, template=None, template_writes_bos=False):
    """What the model receives in use (the reference): the whole prompt rendered with the span's text in place, then
    tokenized once, special tokens added unless the template writes the BOS itself."""
    text = messages.replace("{optim_str}", span_text) if isinstance(messages, str) else tok.apply_chat_template(
        [{**m, "content": m["content"].replace("{optim_str}", span_text)} for m in messages], tokenize=False,
        add_generation_prompt=True, chat_template=template)
    return list(tok(text, add_special_tokens=not template_writes_bos)["input_ids"])


# -- render ---------------------------------------------------------------------------------
def test_render_one_bos_however_the_template_is_written():
    llama, bpe, uni = llama3_tokenizer(), bpe_tokenizer(), unigram_tokenizer()
    msgs = PROMPTS[0][0]
    r = render(llama, msgs, "Sure")  # the template writes <|begin_of_text|> and the tokenizer adds it in use: one
    assert r.before_ids.count(llama.bos_token_id) == 1 and r.before_ids[0] == llama.bos_token_id
    assert r.before_ids + spans(llama, [" brown"])[0] + r.after_ids == in_use_ids(llama, msgs, " brown",
                                                                                  template_writes_bos=True)
    r = render(bpe, msgs, "Sure", CHATML)  # the template writes none, the tokenizer adds <s> in use: added
    assert r.before_ids.count(bpe.bos_token_id) == 1 and r.before_ids[0] == bpe.bos_token_id
    assert r.before_ids + spans(bpe, [" brown"])[0] + r.after_ids == in_use_ids(bpe, msgs, " brown", CHATML)
    assert "named SmolLM" in r.before_text  # the default system prompt is kept on purpose
    assert "named SmolLM" not in render(bpe, PROMPTS[1][0], "x", CHATML).before_text
    doubled = render(bpe, "<s><s>a cat{optim_str}", "x")  # collapsed
    assert doubled.before_ids == render(bpe, "a cat{optim_str}", "x").before_ids and doubled.before_ids.count(0) == 1
    assert render(uni, "a cat{optim_str}", "x").before_ids == uni("a cat", add_special_tokens=False)["input_ids"]
    assert render(bpe, "a cat{optim_str}", " x").target_ids == bpe(" x", add_special_tokens=False)["input_ids"]


def test_render_rejects_bad_prompts():
    bpe = bpe_tokenizer()
    for bad, why in (("no placeholder", "exactly once"), ("{optim_str} and {optim_str}", "exactly once"),
                     ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "exactly once"),
                     ([{"role": "user"}], "'role' and 'content'")):
        with pytest.raises(ValueError, match=why):
            render(bpe, bad, "x", CHATML)
    with pytest.raises(ValueError, match="target must be non-empty"):
        render(bpe, "a{optim_str}", "  ")
    with pytest.raises(ValueError, match="no chat template"):
        render(bpe, PROMPTS[0][0], "x")


# -- what every model receives ------------------------------------------------------------------
def _expected(chain, models, span_ids):
    """Per term: every candidate's ids in use (whole prompt tokenized once) followed by the target's ids."""
    a = models[0]
    texts = [chain.decode(s) for s in span_ids]
    out = []
    for t in chain.terms:
        bb, (msgs, target) = t.objective.backbone, PROMPTS[t.objective.prompt]
        tmpl = {"bpe-lm": CHATML, "uni-lm": PLAIN}.get(bb.name)
        rows = [in_use_ids(bb.tokenizer, msgs, s, tmpl, template_writes_bos=bb.name == "llama3-lm")
                + bb.tokenizer(target, add_special_tokens=False)["input_ids"] for s in texts]
        out.append(rows)
    assert a is chain.primary
    return out


def test_every_model_receives_its_own_template_ids_in_the_gradient_pass(chain, models, monkeypatch):
    seqs = spans(models[0].tokenizer)
    want = _expected(chain, models, seqs)
    seen = {}
    for j, t in enumerate(chain.terms):
        obj = t.objective
        orig = type(obj).loss

        def spy(inputs_embeds, ids, attention_mask, state=None, _obj=obj, _j=j, _orig=orig):
            seen[_j] = (inputs_embeds.detach(), ids, attention_mask)
            return _orig(_obj, inputs_embeds, ids, attention_mask, state)

        monkeypatch.setattr(obj, "loss", spy)
    for positions in (None, [1, 2]):
        seen.clear()
        chain.embedding_gradients(seqs, positions=positions)
        assert sorted(seen) == list(range(len(chain.terms)))
        for j, t in enumerate(chain.terms):
            x, ids, mask = seen[j]
            bb, n_target = t.objective.backbone, len(t.objective.rendered.target_ids)
            for b, row in enumerate(want[j]):
                got = ids[b][mask[b].bool()].tolist()
                assert got == row[:-n_target], (t.label, b)
                # the model's own embeddings of its own ids (the bridge is exact at the primary's own tokens)
                torch.testing.assert_close(x[b][mask[b].bool()], bb.embed(torch.tensor(got)), rtol=0, atol=1e-6)


def test_every_model_receives_its_own_template_ids_in_exact_scoring(chain, models, monkeypatch):
    seqs = spans(models[0].tokenizer)
    want = _expected(chain, models, seqs)
    calls = {}
    for m in models:
        orig = type(m).score_tokens

        def spy(ids, attention_mask=None, need=None, *, batch_size=64, state=None, _m=m, _orig=orig):
            calls.setdefault(_m.name, []).append((ids, attention_mask, need))
            return _orig(_m, ids, attention_mask, need, batch_size=batch_size, state=state)

        monkeypatch.setattr(m, "score_tokens", spy)
    chain.evaluate_ids(seqs)
    for m in models:
        terms = [j for j, t in enumerate(chain.terms) if t.objective.backbone is m]
        assert len(calls[m.name]) == len(terms)
        for j, (ids, mask, need) in zip(terms, calls[m.name]):
            n_target = len(chain.terms[j].objective.rendered.target_ids)
            for b, row in enumerate(want[j]):
                keep = mask[b].bool()
                assert ids[b][keep].tolist() == row, (chain.terms[j].label, b)
                # scored exactly at the target's tokens
                assert need[b].nonzero().squeeze(-1).tolist() == list(range(len(row) - 1 - n_target, len(row) - 1))


def test_evaluate_ids_equals_a_slow_reference(chain, models):
    seqs = spans(models[0].tokenizer)
    want = _expected(chain, models, seqs)
    ev = chain.evaluate_ids(seqs, batch_size=2)
    for j, t in enumerate(chain.terms):
        bb, n = t.objective.backbone, len(t.objective.rendered.target_ids)
        for b, row in enumerate(want[j]):
            with torch.no_grad():
                logits = bb.model(input_ids=torch.tensor([row])).logits[0].double()
            ref = F.cross_entropy(logits[-n - 1 : -1], torch.tensor(row[-n:])).item()
            assert float(ev.parts[b, j]) == pytest.approx(ref, rel=TOL_F32, abs=TOL_F32), (t.label, b)
    torch.testing.assert_close(ev.total, ev.parts.mean(1))  # the mean over (prompt, model) pairs
    assert chain.labels[:3] == ["bpe-lm:prompt0", "uni-lm:prompt0", "llama3-lm:prompt0"]


# -- edges --------------------------------------------------------------------------------------
def test_a_span_whose_edge_merges_is_dropped_and_counted(models):
    a = models[0]
    tok = a.tokenizer
    merged, clean = tok(" th", add_special_tokens=False)["input_ids"], tok(" sun.", add_special_tokens=False)["input_ids"]
    assert tok(" the", add_special_tokens=False)["input_ids"] != merged + tok("e", add_special_tokens=False)["input_ids"]
    chain = PromptChain([a], [("a picture{optim_str}e lazy dog", " a cat")])
    n = min(len(merged), len(clean))
    merged, clean = merged[:n], clean[:n]
    assert tok(chain.decode(merged) + "e", add_special_tokens=False)["input_ids"] != merged + tok("e", add_special_tokens=False)["input_ids"]
    ev = chain.evaluate_ids([merged, clean])
    assert ev.total[0] == float("inf") and torch.isfinite(ev.total[1]) and not bool(ev.match[0])
    assert chain.edge_drops == {"bpe-lm:prompt0": 1}
    # the optimizer's evaluator counts it as dropped: never cached, never an evaluation, never the best
    from fuse.optim.evaluator import Evaluator

    evaluator = Evaluator(chain, chain.layout(), budget=10)
    losses = evaluator.score([merged, clean])
    assert losses[0] == float("inf") and torch.isfinite(losses[1])
    assert evaluator.dropped == 1 and evaluator.evaluations == 1 and tuple(merged) not in evaluator.scored
    assert evaluator.best.free == clean


# -- the span-only gradient is today's where the edges line up -------------------------------------
def test_span_gradient_equals_the_plain_chain_at_the_free_positions():
    lm = tiny_causal_lm(bpe_tokenizer(), d=16, dtype=torch.float64)
    prefix, target = "an image of", " a cat"
    chain = PromptChain([lm], [(prefix + "{optim_str}", target)])
    plain = Chain(lm, [(Continuation(lm, target), 1.0)])
    opt = make_optimizer("gcg", plain, n_tokens=3, prefix=prefix)  # today's layout: the optimizer's prefix
    free = spans(lm.tokenizer, n=3)
    full = [opt.full_ids(f) for f in free]
    pos = opt.free_positions()
    for positions, span_pos in ((pos, [0, 1, 2]), (pos[1:], [1, 2])):
        L1, P1, g1 = chain.embedding_gradients(free, positions=span_pos)
        L0, P0, g0 = plain.embedding_gradients(full, positions=positions)
        torch.testing.assert_close(L1, L0.float(), rtol=0, atol=TOL_F32)
        torch.testing.assert_close(g1, g0, rtol=0, atol=TOL_F64)
    torch.testing.assert_close(chain.evaluate_ids(free).total, plain.evaluate_ids(full).total, rtol=0, atol=TOL_F32)


# -- optimizers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two(models, adapters):
    a, b, _ = models
    return PromptChain([a, b], PROMPTS, adapters={b.name: adapters[b.name]},
                       chat_templates={"bpe-lm": CHATML, "uni-lm": PLAIN})


@pytest.mark.parametrize("name", ["gcg", "autodan", "random"])
def test_optimizers_run_on_a_two_model_chain_and_a_wrapped_one_agrees(two, name):
    kw = dict(n_tokens=3, budget=48, batch_size=16, seed=0)
    res = make_optimizer(name, two, **kw).run()
    assert res.evaluations > 0 and res.best_loss < float("inf") and set(res.losses) == set(two.labels)
    assert res.best_free_ids == res.best_ids and len(res.best_free_ids) == 3
    ev = two.evaluate_ids([res.best_free_ids])
    assert float(ev.total[0]) == pytest.approx(res.best_loss, rel=TOL_F32)
    for micro in (None, 4):
        same = make_optimizer(name, DataParallelChain(two, micro_batch=micro), **kw).run()
        assert same.best_ids == res.best_ids and same.evaluations == res.evaluations and same.dropped == res.dropped
        assert same.best_loss == pytest.approx(res.best_loss, rel=TOL_F32)


def test_the_short_call(models, adapters):
    a, _, c = models  # two byte-level BPEs: the in-process Unigram trains to another vocabulary in every process
    res = fuse.optimize_prompt([a, c], PROMPTS[0][0], PROMPTS[0][1], GCGConfig(n_tokens=3, budget=24, batch_size=8),
                               adapters={c.name: adapters[c.name]}, chat_templates={"bpe-lm": CHATML})
    assert set(res.losses) == {"bpe-lm:prompt0", "llama3-lm:prompt0"} and res.evaluations > 0
    many = fuse.optimize_prompt([a], [("the quick{optim_str}", " a cat"), ("a picture of{optim_str}", " the sun")],
                                config=GCGConfig(n_tokens=2, budget=16, batch_size=8))
    assert set(many.losses) == {"bpe-lm:prompt0", "bpe-lm:prompt1"}
    with pytest.raises(ValueError, match="leave prefix empty"):
        make_optimizer("gcg", PromptChain([a], [("x{optim_str}", " y")]), prefix="an image of")
    with pytest.raises(ValueError, match="list of \\(messages, target\\) pairs"):
        fuse.optimize_prompt([a], "x{optim_str}")


def test_models_of_other_dtypes_meet_at_the_primary(models, adapters):
    """Each model keeps its dtype (a float64 secondary here); losses meet in float32 on the primary's device, the
    gradient comes back in the primary's dtype, and the values are the same model's in float32 (to rounding)."""
    a, b, _ = models
    b64 = tiny_causal_lm(unigram_tokenizer(), d=16, seed=1, name="uni-lm", dtype=torch.float64)
    kw = dict(adapters={"uni-lm": adapters["uni-lm"]}, chat_templates={"bpe-lm": CHATML, "uni-lm": PLAIN})
    c32, c64 = PromptChain([a, b], PROMPTS, **kw), PromptChain([a, b64], PROMPTS, **kw)
    seqs = spans(a.tokenizer)
    L, P, g = c64.embedding_gradients(seqs, positions=[0, 1])
    assert P.dtype == torch.float32 and g.dtype == a.dtype and bool(torch.isfinite(g).all())
    torch.testing.assert_close(c64.evaluate_ids(seqs).parts, c32.evaluate_ids(seqs).parts, rtol=TOL_F32, atol=TOL_F32)
    torch.testing.assert_close(g, c32.embedding_gradients(seqs, positions=[0, 1])[2], rtol=1e-4, atol=1e-6)


def test_bridge_weight_scales_only_the_proposals_gradient(models, adapters):
    """``bridge_weight`` w: the gradient is the primary's terms' + w × the bridged terms' (linear in w, w=1 the
    objective's gradient, w=0 the primary-only chain's up to its term weights); losses and exact scores do not move."""
    a, _, _ = models
    kw = dict(adapters=adapters, chat_templates={"bpe-lm": CHATML, "uni-lm": PLAIN})
    seqs = spans(a.tokenizer)
    chains = {w: PromptChain(list(models), PROMPTS, bridge_weight=w, **kw) for w in (0.0, 0.5, 1.0)}
    out = {w: c.embedding_gradients(seqs) for w, c in chains.items()}
    default = PromptChain(list(models), PROMPTS, **kw).embedding_gradients(seqs)
    for w, (total, parts, _) in out.items():
        torch.testing.assert_close(total, default[0], rtol=TOL_F32, atol=TOL_F32)
        torch.testing.assert_close(parts, default[1], rtol=TOL_F32, atol=TOL_F32)
    torch.testing.assert_close(out[1.0][2], default[2], rtol=TOL_F32, atol=1e-7)
    torch.testing.assert_close(out[0.5][2], (out[0.0][2] + out[1.0][2]) / 2, rtol=1e-4, atol=1e-7)
    alone = PromptChain([a], PROMPTS, chat_templates={"bpe-lm": CHATML}).embedding_gradients(seqs)[2]
    torch.testing.assert_close(out[0.0][2] * 3, alone, rtol=1e-4, atol=1e-7)  # 1/6 per term here, 1/2 alone
    assert not torch.allclose(out[0.0][2], out[1.0][2])  # the bridged terms do reach the gradient
    torch.testing.assert_close(chains[0.0].evaluate_ids(seqs).total, chains[1.0].evaluate_ids(seqs).total)
    sub = chains[0.0].subset([0, 1])
    assert sub.bridge_weight == 0.0
    torch.testing.assert_close(sub.embedding_gradients(seqs)[2] * 3, PromptChain(
        [a], PROMPTS[:1], chat_templates={"bpe-lm": CHATML}).embedding_gradients(seqs)[2] * 0.5, rtol=1e-4, atol=1e-7)
    for bad in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="bridge_weight must be a finite number >= 0"):
            PromptChain(list(models), PROMPTS, bridge_weight=bad, **kw)
