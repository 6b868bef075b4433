"""Chain and optimizers on tiny models: exact evaluation, gradients, every optimizer and search, errors."""

import json

import pytest
import torch

from fuse.optim.chain import Chain
from fuse.objectives import Fluency
from fuse.optim import OPTIMIZERS, make_optimizer
from tiny import WORDS, tiny_chain
from tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder, unigram_tokenizer, wordpiece_tokenizer


@pytest.fixture(scope="module")
def chain():
    return tiny_chain()


def test_chain_exact_evaluation_is_the_weighted_sum(chain):
    texts = ["a dog on a log", "the quick brown fox"]
    ev = chain.evaluate(texts, batch_size=1)
    parts = torch.stack([t.objective.loss_texts(texts) for t in chain.terms], 1)
    torch.testing.assert_close(ev.parts, parts)
    torch.testing.assert_close(ev.total, parts @ torch.tensor([1.0, 2.0]))


def test_chain_gradient_is_the_sum_of_the_terms(chain):
    ids = torch.tensor(chain.primary.tokenizer("a dog on a log")["input_ids"])
    loss, parts, g = chain.gradient(ids)
    assert g.shape == (len(ids), chain.primary.embeddings.shape[0])
    # first order: the one-hot gradient dotted with the one-hot equals <dL/dx, x>
    x = chain.primary.embed(ids).detach().requires_grad_()
    total, _ = chain.loss_from_embeds(ids, x)
    (gx,) = torch.autograd.grad(total, x)
    torch.testing.assert_close(g[torch.arange(len(ids)), ids], (gx * x).sum(-1), rtol=1e-4, atol=1e-5)
    assert abs(loss - float(total.detach())) < 1e-5
    # the exact forward through the bridge gives the same loss as exact evaluation of the text
    ev = chain.evaluate([chain.decode(ids)])
    assert abs(float(ev.total[0]) - loss) < 1e-4


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_every_optimizer_and_search(chain, name, search):
    if name == "pez" and search == "beam":
        with pytest.raises(ValueError, match="greedy"):
            make_optimizer(name, chain, search=search)
        return
    budget = 40 if name != "pez" else 8
    opt = make_optimizer(name, chain, n_tokens=3, prefix="An image of", budget=budget, batch_size=8, search=search,
                         beam_width=2, seed=1)
    res = opt.run()
    assert res.evaluations <= budget
    assert res.best_text.startswith("An image of")
    # best-so-far is consistent: re-evaluating the best text gives the reported loss
    again = chain.evaluate([res.best_text])
    assert abs(float(again.total[0]) - res.best_loss) < 1e-4
    assert list(res.losses) == chain.labels
    losses = [h["best_loss"] for h in res.history]
    assert losses == sorted(losses, reverse=True)  # best-so-far never gets worse
    # same seed, same result
    res2 = make_optimizer(name, chain, n_tokens=3, prefix="An image of", budget=budget, batch_size=8, search=search,
                          beam_width=2, seed=1).run()
    assert res2.best_text == res.best_text and res2.evaluations == res.evaluations


def test_autodan_complete_only_returns_n_tokens(chain, caplog):
    kw = dict(n_tokens=3, prefix="An image of", batch_size=4, beam_width=2, search="beam", seed=0)
    opt = make_optimizer("autodan", chain, budget=40, complete_only=True, **kw)
    res = opt.run()
    assert len(res.best_ids) == len(opt.full_ids([0] * 3))  # exactly n_tokens free tokens
    assert abs(float(chain.evaluate([res.best_text]).total[0]) - res.best_loss) < 1e-4
    # the default may return a shorter prompt, never a worse one
    free = make_optimizer("autodan", chain, budget=40, **kw).run()
    assert free.best_loss <= res.best_loss + 1e-6
    # a budget that ends before the prompt is complete: the best partial prompt, with a warning
    with caplog.at_level("WARNING"):
        short = make_optimizer("autodan", chain, budget=5, complete_only=True, **kw).run()
    assert "before any prompt reached n_tokens" in caplog.text
    assert len(short.best_ids) < len(res.best_ids)
    # patience does not cut the growth short of a complete prompt
    patient = make_optimizer("autodan", chain, budget=40, complete_only=True, patience=1, **kw).run()
    assert len(patient.best_ids) == len(res.best_ids)


def test_gcg_improves_on_its_start(chain):
    kw = dict(n_tokens=4, budget=200, batch_size=32, seed=0, top_k=32)
    fresh = make_optimizer("gcg", chain, **kw)
    start_free = fresh.initial_free()  # drawn from the freshly seeded generator, exactly as run() draws its start
    start = float(chain.evaluate([fresh.text_of(start_free)]).total[0])
    res = make_optimizer("gcg", chain, **kw).run()
    assert res.best_free_ids != start_free and res.best_loss < start - 1e-3, (start, res.best_loss)


def test_early_stop_by_target_and_patience(chain):
    res = make_optimizer("random", chain, n_tokens=3, budget=500, batch_size=8, target_loss=1e9, seed=0).run()
    assert res.stopped == "target" and res.evaluations < 500
    budget = 5000  # far more than either run below can spend
    res = make_optimizer("random", chain, n_tokens=3, budget=budget, batch_size=4, patience=2, seed=0).run()
    assert res.stopped == "patience" and res.evaluations < budget
    best = [h["best_loss"] for h in res.history]
    assert best[-3] == best[-1] and (len(best) == 3 or best[-4] > best[-3])  # two steps without improvement, then stop
    impatient = make_optimizer("random", chain, n_tokens=3, budget=budget, batch_size=4, seed=0).run()
    assert impatient.stopped != "patience" and impatient.evaluations > res.evaluations


def test_bad_input(chain):
    lm, enc = chain.primary, chain.terms[1].objective.backbone
    with pytest.raises(ValueError, match="budget"):
        make_optimizer("gcg", chain, budget=0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adam", chain)
    with pytest.raises(ValueError, match="weight must be > 0"):
        Chain(lm, [(Fluency(lm), 0.0)])
    with pytest.raises(ValueError, match="weight must be > 0"):
        Chain(lm, [(Fluency(lm), -1)])
    with pytest.raises(ValueError, match="target text is empty"):
        Chain(lm, [(enc, 1.0)], target_text="")
    with pytest.raises(ValueError, match="at least one"):
        Chain(lm, [])

    class NoEmbeddings:
        name, kind, tokenizer = "opaque", "causal_lm", unigram_tokenizer()
        model = None

    class Opaque(Fluency):
        pass

    with pytest.raises(ValueError, match="no adapter possible"):
        Chain(lm, [(Opaque(NoEmbeddings()), 1.0)])
    with pytest.raises(ValueError, match="non-empty"):
        chain.evaluate([""])


def test_cli_optimize_json(monkeypatch, capsys, tmp_path):
    """The CLI wires models, weights and the optimizer; models come from saved tiny folders."""
    from fuse.cli import main

    monkeypatch.setenv("FUSE_CACHE", str(tmp_path / "cache"))
    import fuse.optim.chain as chain_module

    real = chain_module.cached_adapter  # the CLI's chain fits its adapter on the tiny models' own words
    monkeypatch.setattr(chain_module, "cached_adapter", lambda a, b, config, **kw: real(a, b, config, words=WORDS, k=4))
    lm, enc = tiny_causal_lm(bpe_tokenizer(), d=16), tiny_encoder(wordpiece_tokenizer(), d=12)
    for name, m in (("lm", lm), ("enc", enc)):
        m.model.save_pretrained(tmp_path / name)
        m.tokenizer.save_pretrained(tmp_path / name)
    code = main(["optimize", "--primary", str(tmp_path / "lm"), "--secondary", f"{tmp_path / 'enc'}:2.0",
                 "--target-text", "a cat on a mat", "--budget", "30", "--batch-size", "8", "--n-tokens", "3",
                 "--optimizer", "gcg", "--seed", "0", "--json", "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"best_text", "best_loss", "losses", "evaluations", "seconds"} <= set(out)
    assert out["evaluations"] <= 30 and len(out["losses"]) == 2
    assert abs(out["best_loss"] - (list(out["losses"].values())[0] + 2 * list(out["losses"].values())[1])) < 1e-4
    code = main(["optimize", "--primary", str(tmp_path / "lm"), "--secondary", "x:y", "--budget", "1"])
    assert code == 2 and "weight must be a number" in capsys.readouterr().err


def test_allowed_tokens_skip_specials_and_placeholders():
    from fuse.optim.vocab_filter import allowed_tokens

    tok = wordpiece_tokenizer()
    tok.add_tokens(["[unused0]", "<unused7>", "<file_sep>", "zebra"])
    allowed = set(allowed_tokens(tok).tolist())
    for t in ("[unused0]", "<unused7>", "<file_sep>"):
        assert tok.convert_tokens_to_ids(t) not in allowed, t
    assert tok.convert_tokens_to_ids("zebra") in allowed
    assert not allowed & set(tok.all_special_ids)
    for i in allowed:  # every allowed token reads as text with a letter or digit
        s = tok.decode([i])
        assert s.strip() and any(c.isalnum() for c in s)


def test_allowed_tokens_follow_the_vocabulary_not_the_tokenizer_object():
    """The readable-token memo is keyed by the vocabulary's content: a tokenizer that gains a token gets a new
    answer (an id()-keyed memo would answer the old one), and a copy with the same vocabulary the same one."""
    import copy

    from fuse.optim.vocab_filter import allowed_tokens
    from tiny import bpe_tokenizer

    tok = copy.deepcopy(bpe_tokenizer())
    before = allowed_tokens(tok)
    assert torch.equal(allowed_tokens(copy.deepcopy(tok)), before)
    tok.add_tokens(["zebracorn"])
    after = allowed_tokens(tok)
    assert len(after) == len(before) + 1 and int(after[-1]) == len(tok) - 1
