"""TermParallelChain under two gloo processes: a PromptChain's terms dealt to ranks by model and by term give every
rank one process's losses, summed gradient, exact scores (refused spans included) and GCG run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fuse.optim.prompt_chain import PromptChain
from fuse.parallel import DataParallelChain, TermParallelChain
from launch import ROOT, torchrun
from parallel_scenarios import TEXTS, prompt_chain, save_prompt_models, term_runs

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = dict(rtol=1e-5, atol=1e-6)  # sums of the ranks' parts in another order than one process's


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_prompt_models(tmp_path_factory.mktemp("prompt-models"))


@pytest.fixture(scope="module")
def chain(saved):
    return prompt_chain(saved)


@pytest.fixture(scope="module")
def reference(chain):
    return term_runs(chain, lambda c: c)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, saved):
    out = tmp_path_factory.mktemp("tp")
    proc = torchrun([str(ROOT / "tests" / "parallel" / "terms_worker.py"), str(out), str(saved)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _close(got, want):
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), **TOL)


def test_each_rank_runs_only_its_own_terms(ranks, chain):
    labels = chain.labels  # bpe, uni, llama3 for prompt 0, then for prompt 1
    by_model = [r["model"]["mine"] for r in ranks]
    assert by_model == [[l for l in labels if not l.startswith(chain.models[1].name)],
                        [l for l in labels if l.startswith(chain.models[1].name)]]
    assert [r["term"]["mine"] for r in ranks] == [labels[0::2], labels[1::2]]


@pytest.mark.parametrize("by", ["model", "term"])
def test_the_summed_gradient_and_losses_equal_one_process(ranks, reference, by):
    for r in ranks:
        got = r[by]
        _close(got["grad"], reference["grad"])
        _close(got["grad_tail"], reference["grad_tail"])
        _close(got["loss"], reference["loss"])
        assert got["parts"] == reference["parts"]  # every term computed whole on one rank: the same bits
        assert got == ranks[0][by] | {"mine": got["mine"]}  # and every rank holds the same


@pytest.mark.parametrize("by", ["model", "term"])
def test_exact_scores_equal_one_process_refused_spans_included(ranks, reference, by):
    refused = [i for i, t in enumerate(reference["evaluate"]["total"]) if math.isinf(t)]
    assert refused and len(refused) < len(TEXTS)  # the case is exercised: some spans merge with a model's text
    for r in ranks:
        for key in ("evaluate_ids", "evaluate"):
            got, want = r[by][key], reference[key]
            assert got["parts"] == want["parts"] and got["match"] == want["match"]
            _close(got["total"], want["total"])


@pytest.mark.parametrize("by", ["model", "term"])
def test_gcg_through_it_equals_one_process(ranks, reference, by):
    for r in ranks:
        got, want = r[by]["gcg"], reference["gcg"]
        assert (got["ids"], got["evaluations"], got["dropped"]) == (want["ids"], want["evaluations"], want["dropped"])
        _close([h[1] for h in got["history"]], [h[1] for h in want["history"]])
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_in_one_process_it_is_the_chain_and_bad_wrapping_is_refused(chain, reference):
    local = term_runs(chain, lambda c: TermParallelChain(c, local=True))
    assert local == reference
    with pytest.raises(ValueError, match="one of the two splits"):
        DataParallelChain(TermParallelChain(chain))
    with pytest.raises(ValueError, match="one of the two splits"):
        TermParallelChain(DataParallelChain(chain))
    with pytest.raises(ValueError, match="by="):
        TermParallelChain(chain, by="prompt")
    assert isinstance(TermParallelChain(chain).subset([0, 2]).chain, PromptChain)
