"""State belongs to a run: backbones keep nothing between calls, and two optimizations interleaved step by step on
the same backbones each give exactly their solo result."""

import threading

import pytest
import torch

from fuse.objectives import Continuation, Fluency
from fuse.optim import make_optimizer
from fuse.optim.chain import Chain
from tiny import bpe_tokenizer, tiny_causal_lm

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm():
    lm = tiny_causal_lm(bpe_tokenizer(), d=64, name="state-lm")
    lm.model.lm_head.weight.mul_(8)
    return lm


def _opt(lm, target, seed, name="gcg"):
    chain = Chain(lm, [(Continuation(lm, target), 1.0), (Fluency(lm), 0.1)])
    return make_optimizer(name, chain, n_tokens=6, prefix="the quick brown", budget=96, batch_size=16, seed=seed,
                          **({"search": "beam", "beam_width": 2} if name == "autodan" else {}))


def _summary(res):
    return res.best_text, res.best_loss, res.evaluations, [(h["evaluations"], h["best_loss"]) for h in res.history]


def _interleaved(a, b):
    """Run ``a`` and ``b`` in two threads that take turns after every step (one runs while the other waits)."""
    turn, cond, out = [0], threading.Condition(), {}

    def wrap(opt, me):
        record = opt._record

        def step(step_no):
            record(step_no)
            with cond:  # hand over after each step and wait for the turn to come back
                turn[0] = 1 - me
                cond.notify_all()
                cond.wait_for(lambda: turn[0] == me or done[1 - me], timeout=30)

        opt._record = step

    done = [False, False]

    def run(opt, me):
        with cond:
            cond.wait_for(lambda: turn[0] == me, timeout=30)
        try:
            out[me] = opt.run()
        finally:
            with cond:
                done[me] = True
                turn[0] = 1 - me
                cond.notify_all()

    wrap(a, 0)
    wrap(b, 1)
    threads = [threading.Thread(target=run, args=(o, i)) for i, o in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out[0], out[1]


@pytest.mark.parametrize("name", ["gcg", "autodan"])
def test_two_runs_interleaved_on_one_backbone_give_their_solo_results(lm, name):
    solo_a = _summary(_opt(lm, " over the lazy dog", 0, name).run())
    solo_b = _summary(_opt(lm, " jumps over a fence", 1, name).run())
    a, b = _interleaved(_opt(lm, " over the lazy dog", 0, name), _opt(lm, " jumps over a fence", 1, name))
    assert len(a.history) > 2 and len(b.history) > 2  # they did take turns over several steps
    assert _summary(a) == solo_a
    assert _summary(b) == solo_b


def test_a_run_leaves_nothing_on_the_backbone_or_the_model():
    lm = tiny_causal_lm(bpe_tokenizer(), d=64, name="fresh-lm")  # fresh: nothing any earlier call could have set
    before = (set(vars(lm)), set(vars(lm.model)))
    for name in ("gcg", "autodan", "pez", "random"):
        _opt(lm, " over the lazy dog", 0, name).run()
    assert (set(vars(lm)), set(vars(lm.model))) == before


def test_the_run_state_holds_the_center_cache_and_the_next_run_starts_empty(lm):
    opt = _opt(lm, " over the lazy dog", 0)
    opt.run()
    first = opt.state
    assert first.lm().center_kv is not None and first.lm().frozen_kv is not None
    opt.run()
    assert opt.state is not first  # every run() starts with its own caches
    with torch.no_grad():
        assert torch.equal(first.lm().frozen_kv[0], opt.state.lm().frozen_kv[0])  # same prefix, recomputed
