"""benchmarks/wallclock.py: the equal-wall-time runner changes nothing but adds a clock stop and time stamps."""

from __future__ import annotations

import pytest
import torch

from benchmarks.wallclock import at_evaluations, at_step, at_time, run_timed
from fuse.objectives import Continuation
from fuse.optim import GCGConfig, RandomSearchConfig, optimize
from fuse.optim.chain import Chain
from tiny import bpe_tokenizer, tiny_causal_lm


@pytest.fixture(scope="module")
def chain(one_thread):
    lm = tiny_causal_lm(bpe_tokenizer(), d=16, name="wallclock-lm")
    lm.model.lm_head.weight.mul_(8)
    return Chain(lm, [(Continuation(lm, "the lazy dog"), 1.0)])


@pytest.mark.parametrize("config", [GCGConfig(n_tokens=4, budget=40, batch_size=8, top_k=8, seed=3),
                                    RandomSearchConfig(n_tokens=4, budget=40, batch_size=8, seed=3)])
def test_without_a_time_limit_it_is_fuse_optimize(chain, config):
    ref = optimize(chain, config)
    _, res = run_timed(chain, config)
    assert (res.best_ids, res.best_loss, res.evaluations, res.stopped) == (ref.best_ids, ref.best_loss,
                                                                            ref.evaluations, ref.stopped)
    assert [{k: h[k] for k in ("step", "evaluations", "best_loss")} for h in res.history] == \
           [{k: h[k] for k in ("step", "evaluations", "best_loss")} for h in ref.history]
    secs = [h["seconds"] for h in res.history]
    assert secs == sorted(secs) and secs[-1] <= res.seconds + 0.05  # (its clock starts a moment before run()'s)


def test_the_clock_stops_a_run_and_the_cut_reads_the_history_at_that_time(chain):
    T = 0.3
    _, res = run_timed(chain, GCGConfig(n_tokens=16, budget=10**6, batch_size=8, top_k=128, seed=0), seconds=T)
    assert res.stopped == "time" and res.evaluations < 10**6
    assert res.history[-1]["seconds"] >= T > res.history[-2]["seconds"]  # stopped at the first step past T
    cut = at_time(res.history, T)
    assert cut is res.history[-2]
    assert at_time(res.history, res.history[0]["seconds"] / 2)["step"] == 0
    assert at_step(res.history, 1) is res.history[0] and at_step(res.history, 10**9) is res.history[-1]


def test_a_run_read_at_equal_evaluations_runs_past_its_clock_until_it_has_them(chain):
    config = GCGConfig(n_tokens=16, budget=10**6, batch_size=8, top_k=128, seed=0)
    _, res = run_timed(chain, config, seconds=1e-6, min_evaluations=40)
    assert res.stopped == "time" and res.history[-1]["evaluations"] >= 40 > res.history[-2]["evaluations"]
    cut = at_evaluations(res.history, 40)
    assert cut["evaluations"] <= 40 and all(h["evaluations"] > 40 for h in res.history if h["step"] > cut["step"])


def test_bad_input_raises(chain):
    with pytest.raises(ValueError, match="seconds"):
        run_timed(chain, GCGConfig(n_tokens=4, budget=8), seconds=0)
    with pytest.raises(ValueError, match="config"):
        run_timed(chain, object())
    assert torch.get_num_threads() == 1  # the fixture's one thread is in force (tiny tensors)
