"""GCG's ``cascade``: each step's candidates scored on the primary's own terms first, the best fraction on the bridged
terms too. Its whole evaluations are the chain's own values, it keeps exactly the primary's best, and ``cascade=1``
is plain GCG."""

import math

import pytest
import torch

from fuse.core.adapter import TensorAdapter
from fuse.optim import GCGConfig, ProbeConfig, make_optimizer
from fuse.optim.evaluator import Evaluator
from fuse.optim.prompt_chain import PromptChain
from fuse.parallel import DataParallelChain
from tiny import WORDS, bpe_tokenizer, llama3_tokenizer, tiny_causal_lm

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5
PROMPTS = [("the quick{optim_str} over the lazy dog", " a cat"), ("a picture of{optim_str}", " the sun")]


@pytest.fixture(scope="module")
def chain():
    a = tiny_causal_lm(bpe_tokenizer(), d=16, name="bpe-lm")
    c = tiny_causal_lm(llama3_tokenizer(), d=16, seed=2, name="llama3-lm")
    return PromptChain([a, c], PROMPTS, adapters={c.name: TensorAdapter.fit(a, c, words=WORDS, k=4)})


def candidates(chain, n=24, length=3, seed=0):
    """``n`` distinct spans of ``length`` tokens that round-trip in the primary."""
    tok, gen, out = chain.primary.tokenizer, torch.Generator().manual_seed(seed), []
    vocab = [i for i in range(len(tok)) if tok.decode([i]).strip() and tok.decode([i]).isalpha()]
    while len(out) < n:
        ids = [vocab[int(torch.randint(len(vocab), (1,), generator=gen))] for _ in range(length)]
        text = tok.decode(ids)
        if tok(text, add_special_tokens=False)["input_ids"] == ids and ids not in out:
            out.append(ids)
    return out


def evaluator(chain, budget=10**6):
    return Evaluator(chain, chain.layout(), budget, batch_size=8)


@pytest.mark.parametrize("keep", [0.25, 0.5])
def test_the_cascade_scores_the_primarys_best_with_the_chains_own_values(chain, keep):
    cands = candidates(chain)
    full = chain.evaluate_ids(cands)
    first = chain.subset([i for i, t in enumerate(chain.terms) if t.bridge is None]).evaluate_ids(cands).total
    ev = evaluator(chain)
    out = ev.score(cands, cascade=keep)
    n = math.ceil(keep * len(cands))
    scored = torch.isfinite(out).nonzero().flatten().tolist()
    assert sorted(scored) == sorted(first.argsort()[:n].tolist())   # exactly the primary's n best go on
    torch.testing.assert_close(out[scored], full.total[scored].cpu(), rtol=TOL, atol=TOL)   # ... with the real values
    for i in scored:
        loss, parts, _ = ev.scored[tuple(cands[i])]
        torch.testing.assert_close(torch.tensor(parts), full.parts[i].cpu(), rtol=TOL, atol=TOL)
    assert ev.evaluations == n and ev.cascade_evaluations == len(cands) - n and len(ev.scored) == n
    assert ev.best.loss == pytest.approx(float(full.total[scored].min()), rel=TOL)
    again = ev.score(cands, cascade=keep)   # the scored ones come from the cache; the others go through it again
    assert ev.cache_hits == n and torch.equal(again[scored], out[scored])
    assert int(torch.isfinite(again).sum()) == n + math.ceil(keep * (len(cands) - n))


def test_the_budget_caps_the_second_stage(chain):
    cands = candidates(chain)
    ev = evaluator(chain, budget=3)
    out = ev.score(cands, cascade=0.5)
    assert int(torch.isfinite(out).sum()) == 3 and ev.evaluations == 3


def test_cascade_one_is_plain_gcg_and_smaller_fractions_score_fewer(chain):
    kw = dict(n_tokens=3, budget=64, batch_size=16, seed=0)
    plain = make_optimizer("gcg", chain, **kw).run()
    whole = make_optimizer("gcg", chain, cascade=1.0, **kw).run()
    assert whole.best_ids == plain.best_ids and whole.evaluations == plain.evaluations
    assert whole.best_loss == pytest.approx(plain.best_loss, rel=TOL)
    part = make_optimizer("gcg", chain, cascade=0.25, **kw).run()
    assert part.cascade_evaluations > part.evaluations and part.config["cascade"] == 0.25
    assert float(chain.evaluate_ids([part.best_free_ids]).total[0]) == pytest.approx(part.best_loss, rel=TOL)
    wrapped = make_optimizer("gcg", DataParallelChain(chain, micro_batch=4), cascade=0.25, **kw).run()
    assert wrapped.best_ids == part.best_ids and wrapped.evaluations == part.evaluations


def test_a_chain_of_one_model_is_scored_in_one_pass(chain):
    alone = chain.subset([0, 2])   # the primary's terms only: nothing to cascade
    cands = candidates(chain, n=8)
    ev = evaluator(alone)
    out = ev.score(cands, cascade=0.25)
    assert bool(torch.isfinite(out).all()) and ev.cascade_evaluations == 0 and ev.evaluations == 8


def test_bad_fractions_are_refused(chain):
    for bad in (0, -0.5, 1.5, True, "0.5", float("nan")):
        with pytest.raises(ValueError, match="cascade must be None or a fraction in \\(0, 1\\]"):
            GCGConfig(cascade=bad)
    with pytest.raises(ValueError, match="probe and cascade"):
        GCGConfig(cascade=0.5, probe=ProbeConfig(draft=chain))
