"""AutoDAN's fast path for captioning-style chains (Fluency on the writer + terms behind adapters): the ranking and
the exact losses it reads off one no-grad forward equal the slow reference (a backward pass through the writer,
and Chain.evaluate_ids)."""

import pytest
import torch

from fuse.objectives import Continuation, Fluency, Similarity
from fuse.optim import make_optimizer
from fuse.optim.autodan import AutoDAN
from fuse.optim.chain import Chain
from tiny import tiny_causal_lm, tiny_chain, wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
TOL_RANK = dict(rtol=1e-4, atol=1e-4)  # scores are gradients / std + log-probs: O(1)–O(10)
TOL_LOSS = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def chains():
    base = tiny_chain()
    lm, enc = base.primary, base.terms[1].objective.backbone
    sim = Similarity(enc, "a cat on a mat")
    out = {"mean": base,
           "sum": Chain(lm, [(Fluency(lm, reduction="sum"), 0.5), (sim, 2.0)], adapters=base.adapters),
           "two fluency terms": Chain(lm, [(Fluency(lm), 1.0), (Fluency(lm, reduction="sum"), 0.3), (sim, 3.0)],
                                      adapters=base.adapters),
           "fluency alone": Chain(lm, [(Fluency(lm), 1.0)])}
    return out


def _opt(chain, **kw):
    return make_optimizer("autodan", chain, n_tokens=4, prefix="an image of", budget=64, batch_size=12,
                          search="beam", beam_width=3, seed=0, **kw)


def _slow(monkeypatch):
    monkeypatch.setattr(AutoDAN, "fluency_at_end", lambda self: False)


@pytest.mark.parametrize("name", ["mean", "sum", "two fluency terms", "fluency alone"])
@pytest.mark.parametrize("use_gradient", [True, False])
def test_fast_ranking_equals_the_backward_pass(chains, name, use_gradient, monkeypatch):
    chain = chains[name]
    opt = _opt(chain, use_gradient=use_gradient)
    assert opt.fluency_at_end()
    tok = chain.primary.tokenizer
    beams = [tok(t, add_special_tokens=False)["input_ids"][:2] for t in (" a cat", " the dog", " small boat")]
    assert len({len(b) for b in beams}) == 1
    fast, next_logprobs = opt._rank(beams)
    assert next_logprobs is not None
    _slow(monkeypatch)
    slow, next_logprobs = opt._rank(beams)
    assert next_logprobs is None
    torch.testing.assert_close(fast, slow, **TOL_RANK)


@pytest.mark.parametrize("name", ["mean", "sum", "two fluency terms"])
def test_fast_exact_losses_equal_chain_evaluate(chains, name):
    chain = chains[name]
    opt = _opt(chain)
    res = opt.run()
    assert res.evaluations > 0 and opt.evaluator.scored
    keys = list(opt.evaluator.scored)
    ev = chain.evaluate_ids([opt.full_ids(list(k)) for k in keys])
    got = torch.tensor([opt.evaluator.scored[k][0] for k in keys])
    torch.testing.assert_close(got, ev.total.cpu(), **TOL_LOSS)
    torch.testing.assert_close(torch.tensor([opt.evaluator.scored[k][1] for k in keys]), ev.parts.cpu(), **TOL_LOSS)
    # the reported losses of the best caption are its exact ones, term by term
    best = chain.evaluate_ids([res.best_ids])
    assert res.best_loss == pytest.approx(float(best.total[0]), rel=1e-5, abs=1e-5)


def test_fast_path_changes_nothing_but_rounding(chains, monkeypatch):
    """Same seed, same captions and losses (to rounding) with and without the fast path; the fast one is seeded."""
    chain = chains["mean"]
    fast = _opt(chain).run()
    assert _opt(chain).run().best_text == fast.best_text  # deterministic
    _slow(monkeypatch)
    slow = _opt(chain).run()
    assert fast.best_text == slow.best_text
    assert fast.evaluations == slow.evaluations
    assert fast.best_loss == pytest.approx(slow.best_loss, rel=1e-5, abs=1e-5)


def test_fast_path_only_for_fluency_at_the_end(chains):
    lm = chains["mean"].primary
    # a continuation target on the writer reads the new token as context: no shortcut
    cont = Chain(lm, [(Continuation(lm, " the end"), 1.0)])
    assert not _opt(cont).fluency_at_end()
    # a tokenizer that appends a token after the text: the new token is not the last
    enc_tok = wordpiece_tokenizer.__wrapped__()  # a fresh object: other tests
    # add tokens to the shared cached one
    lm2 = tiny_causal_lm(enc_tok, d=16, name="tiny-lm-sep")
    opt = make_optimizer("autodan", Chain(lm2, [(Fluency(lm2), 1.0)]), n_tokens=2, budget=8, batch_size=4)
    assert opt.tail_ids and not opt.fluency_at_end()
