"""The chain contract (fuse.optim.chain_base.BaseChain): a plain Chain and a DataParallelChain are interchangeable
for every optimizer, term subsets are real chains, and AutoDAN ranks candidates by the same scores on both."""

import json

import pytest
import torch

from fuse.cli import main as cli_main
from fuse.core.adapter import TensorAdapter
from fuse.models.loading import load
from fuse.objectives import Continuation, Fluency, Similarity
from fuse.optim import AutoDANConfig, make_optimizer, optimize
from fuse.optim.chain import Chain
from fuse.optim.chain_base import BaseChain
from fuse.parallel import DataParallelChain
from tiny import WORDS, bpe_tokenizer, tiny_causal_lm, tiny_chain, tiny_encoder, wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
TOL_REL = 1e-5  # micro-batched scoring runs other shapes: float32 rounding only


@pytest.fixture(scope="module")
def chain():
    return tiny_chain()  # Fluency on the tiny LM (weight 1) + an encoder's similarity behind an adapter (weight 2)


def test_both_chains_meet_the_contract_and_nothing_is_forwarded(chain):
    dp = DataParallelChain(chain)
    assert isinstance(chain, BaseChain) and isinstance(dp, BaseChain)
    assert dp.primary is chain.primary and dp.terms is chain.terms and dp.labels == chain.labels
    # no implicit forwarding: what the contract does not declare is not there
    assert not hasattr(dp, "losses_from_embeds") and not hasattr(dp, "_from_terms")
    with pytest.raises(ValueError, match="wraps a fuse chain"):
        DataParallelChain(object())


def test_a_subset_is_the_chain_of_those_terms(chain):
    lm, enc = chain.primary, chain.terms[1].objective.backbone
    only = Chain(lm, [(chain.terms[1].objective, 2.0)], adapters=chain.adapters)
    texts = ["a cat on a mat", "the quick brown fox", "an image of a dog"]
    for sub in (chain.subset([1]), DataParallelChain(chain, micro_batch=2).subset([1])):
        assert sub.labels == [chain.labels[1]] and type(sub) in (Chain, DataParallelChain)
        torch.testing.assert_close(sub.evaluate(texts).total, only.evaluate(texts).total)
        ids = [lm.tokenizer(t)["input_ids"][:4] for t in texts]
        got, want = sub.gradients(ids, positions=[2, 3]), only.gradients(ids, positions=[2, 3])
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    assert isinstance(DataParallelChain(chain).subset([0]), DataParallelChain)
    for bad in ([], [2], [0, 0], [-1]):
        with pytest.raises(ValueError, match="subset takes distinct term indices"):
            chain.subset(bad)


def test_known_terms_are_taken_as_given(chain):
    lm = chain.primary
    seqs = [lm.tokenizer(t)["input_ids"] for t in ("a cat on a mat", "the quick brown")]
    seqs = [s[:3] for s in seqs]
    full = chain.evaluate_ids(seqs)
    fake = torch.tensor([0.5, 7.0])
    for c in (chain, DataParallelChain(chain, micro_batch=1)):
        got = c.evaluate_ids(seqs, known={0: fake})
        torch.testing.assert_close(got.parts[:, 0], fake.to(got.parts))
        torch.testing.assert_close(got.parts[:, 1], full.parts[:, 1])
        torch.testing.assert_close(got.total, fake.to(got.parts) + 2.0 * full.parts[:, 1])
    with pytest.raises(ValueError, match="shape"):
        chain.evaluate_ids(seqs, known={0: torch.zeros(3)})
    cont = Chain(lm, [(Continuation(lm, " the end"), 1.0)])
    with pytest.raises(ValueError, match="exact goal"):
        cont.evaluate_ids(seqs, known={0: fake})


def _autodan(c, **kw):
    return make_optimizer("autodan", c, n_tokens=4, prefix="an image of", budget=64, batch_size=12, search="beam",
                          beam_width=3, seed=0, **kw)


@pytest.mark.parametrize("micro_batch", [None, 8])
def test_autodan_ranks_by_the_same_scores_on_a_wrapped_chain(chain, micro_batch):
    """Regression: AutoDAN took the bridged terms' gradient from a patched copy of the chain, which a
    DataParallelChain ignored (it forwarded ``gradients`` to the inner chain), so the primary's own fluency gradient
    was counted twice when candidates were ranked under the CLI and torchrun."""
    tok = chain.primary.tokenizer
    beams = [tok(t, add_special_tokens=False)["input_ids"][:2] for t in (" a cat", " the dog", " small boat")]
    plain, wrapped = _autodan(chain), _autodan(DataParallelChain(chain, micro_batch=micro_batch))
    assert plain.fluency_at_end() and wrapped.fluency_at_end()  # the fast path, where the copy was patched
    torch.testing.assert_close(wrapped.candidate_scores(beams), plain.candidate_scores(beams), rtol=0, atol=0)


RUNS = [("gcg", "greedy"), ("gcg", "beam"), ("random", "greedy"), ("autodan", "beam"), ("autodan", "greedy"),
        ("pez", "greedy")]


@pytest.mark.parametrize("name,search", RUNS)
def test_every_optimizer_on_a_wrapped_chain_gives_the_plain_result(chain, name, search):
    kw = dict(n_tokens=3, prefix="An image of", budget=40 if name != "pez" else 8, batch_size=8, search=search,
              beam_width=2, seed=1)
    plain = make_optimizer(name, chain, **kw).run()
    same = make_optimizer(name, DataParallelChain(chain, micro_batch=None), **kw).run()
    assert (same.best_text, same.best_ids, same.best_loss, same.losses, same.evaluations, same.history) == \
           (plain.best_text, plain.best_ids, plain.best_loss, plain.losses, plain.evaluations, plain.history)
    micro = make_optimizer(name, DataParallelChain(chain, micro_batch=8), **kw).run()  # the CLI's default
    assert micro.best_text == plain.best_text and micro.evaluations == plain.evaluations
    assert micro.best_loss == pytest.approx(plain.best_loss, rel=TOL_REL)
    assert micro.losses == pytest.approx(plain.losses, rel=TOL_REL)
    for a, b in zip(micro.history, plain.history):
        assert a["best_loss"] == pytest.approx(b["best_loss"], rel=TOL_REL)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    for name, m in (("lm", tiny_causal_lm(bpe_tokenizer(), d=16)), ("enc", tiny_encoder(wordpiece_tokenizer(), d=12))):
        m.model.save_pretrained(folder / name)
        m.tokenizer.save_pretrained(folder / name)
    return folder


def test_cli_autodan_gives_the_python_api_result(saved_models, tmp_path, monkeypatch, capsys):
    """``fuse optimize --optimizer autodan`` (which wraps its chain in a DataParallelChain) finds the Python API's
    best text with the same options, on the CLI's default chain (primary fluency 1.0 + one secondary)."""
    monkeypatch.setenv("FUSE_CACHE", str(tmp_path))
    lm, enc = load(str(saved_models / "lm"), kind="causal_lm"), load(str(saved_models / "enc"), kind="encoder")
    ad = TensorAdapter.fit(lm, enc, words=WORDS, k=4)
    args = ["optimize", "--primary", str(saved_models / "lm"), "--secondary", f"{saved_models / 'enc'}:2.0",
            "--target-text", "a cat on a mat", "--optimizer", "autodan", "--n-tokens", "3", "--budget", "40",
            "--batch-size", "8", "--search", "beam", "--beam-width", "2", "--seed", "1", "--json", "--no-progress"]
    import fuse.optim.chain as chain_module

    monkeypatch.setattr(chain_module, "cached_adapter", lambda *a, **k: ad)  # the CLI's chain: the same adapter
    assert cli_main(args) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    chain = Chain(lm, [(Fluency(lm), 1.0), (Similarity(enc, "a cat on a mat"), 2.0)], adapters={enc.name: ad})
    want = optimize(chain, AutoDANConfig(n_tokens=3, budget=40, batch_size=8, search="beam", beam_width=2, seed=1))
    assert got["best_text"] == want.best_text and got["evaluations"] == want.evaluations
    assert got["best_loss"] == pytest.approx(want.best_loss, rel=TOL_REL)
