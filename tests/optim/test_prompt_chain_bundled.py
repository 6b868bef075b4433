"""PromptChain on the two bundled LMs (issue 23): SmolLM2 (its own ChatML template, its default system prompt, no
BOS of its own) and Gemma-3 (fuse's Gemma template, which writes the BOS) each receive exactly the ids the whole prompt
has in use, in the gradient pass and in exact scoring: one BOS for Gemma, none added to SmolLM2's template."""

import pytest
import torch

import fuse
from fuse.core.adapter import TensorAdapter
from fuse.models.templates import GEMMA_CHAT_TEMPLATE
from fuse.optim.prompt_chain import PromptChain
from tiny import WORDS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
PROMPTS = [([{"role": "user", "content": "Name one color{optim_str}"}], "Purple"),
           ([{"role": "system", "content": "Answer in one word."},
             {"role": "user", "content": "Which animal{optim_str} should I draw?"}], "Giraffe")]
SPANS = [" bright sunny", " deep ocean", " quiet forest"]


@pytest.fixture(scope="module")
def pair():
    smol, gemma = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m")
    adapter = TensorAdapter.fit(smol, gemma, words=WORDS, k=4)  # any adapter: the ids around the span are exact
    chain = PromptChain([smol, gemma], PROMPTS, adapters={gemma.name: adapter},
                        chat_templates={gemma.name: GEMMA_CHAT_TEMPLATE})
    return smol, gemma, chain


def in_use(m, messages, span_text):
    """The ids ``m`` gets in use: the messages, span in place, rendered by its template and tokenized once."""
    template = GEMMA_CHAT_TEMPLATE if "gemma" in m.name else None
    text = m.tokenizer.apply_chat_template([{**x, "content": x["content"].replace("{optim_str}", span_text)}
                                            for x in messages], tokenize=False, add_generation_prompt=True,
                                           chat_template=template)
    return list(m.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_each_bundled_lm_receives_its_own_template_ids(pair, monkeypatch):
    smol, gemma, chain = pair
    seqs = [s[:2] for s in smol.tokenizer(SPANS, add_special_tokens=False)["input_ids"]]
    texts = [smol.tokenizer.decode(s) for s in seqs]
    want = {}
    for j, t in enumerate(chain.terms):
        msgs, target = PROMPTS[t.objective.prompt]
        m = t.objective.backbone
        want[j] = [in_use(m, msgs, s) + m.tokenizer(target, add_special_tokens=False)["input_ids"] for s in texts]
    for j, t in enumerate(chain.terms):
        m, rows = t.objective.backbone, want[j]
        bos = m.tokenizer.bos_token_id
        for row in rows:  # Gemma: one <bos>, first; SmolLM2's "bos" is ChatML's <|im_start|>, opening each turn
            assert row[0] == bos and row[1] != bos, (t.label, row[:3])
            if m is gemma:
                assert row.count(bos) == 1, (t.label, row[:3])
        if m is smol and t.objective.prompt == 0:  # SmolLM2's default system prompt is kept, as in use
            assert "You are a helpful AI assistant named SmolLM" in m.tokenizer.decode(rows[0])
    seen, calls = {}, {}
    for j, t in enumerate(chain.terms):
        obj = t.objective

        def spy(inputs_embeds, ids, attention_mask, state=None, _obj=obj, _j=j, _orig=type(obj).loss):
            seen[_j] = (ids, attention_mask)
            return _orig(_obj, inputs_embeds, ids, attention_mask, state)

        monkeypatch.setattr(obj, "loss", spy)
    chain.embedding_gradients(seqs)
    for j, t in enumerate(chain.terms):
        ids, mask = seen[j]
        n_target = len(t.objective.rendered.target_ids)
        for b, row in enumerate(want[j]):
            assert ids[b][mask[b].bool()].tolist() == row[:-n_target], (t.label, b)
    for m in (smol, gemma):
        def score(ids, attention_mask=None, need=None, *, batch_size=64, state=None, _m=m, _orig=type(m).score_tokens):
            calls.setdefault(_m.name, []).append((ids, attention_mask))
            return _orig(_m, ids, attention_mask, need, batch_size=batch_size, state=state)

        monkeypatch.setattr(m, "score_tokens", score)
    ev = chain.evaluate_ids(seqs)
    assert bool(torch.isfinite(ev.total).all())
    for m in (smol, gemma):
        terms = [j for j, t in enumerate(chain.terms) if t.objective.backbone is m]
        assert len(calls[m.name]) == len(terms)
        for j, (ids, mask) in zip(terms, calls[m.name]):
            for b, row in enumerate(want[j]):
                assert ids[b][mask[b].bool()].tolist() == row, (chain.terms[j].label, b)
