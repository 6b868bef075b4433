"""The optimization engine: fast exact scoring against the slow path, batched gradients against one-hot autograd,
the token round trip, reproducibility, candidate semantics, precision and the peer's options."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fuse
from fuse.models.backbones.causal_lm import chunked_token_scores, plan_chunks
from fuse.models.run_state import RunState
from fuse.models.batching import encode_batch
from fuse.objectives import Continuation, Fluency, Similarity
from fuse.optim import GCG, PEZ, AutoDAN, AutoDANConfig, GCGConfig, ProbeConfig, RandomSearch, optimize
from fuse.optim.chain import Chain
from fuse.optim.probe import spearman
from tiny import WORDS, bpe_tokenizer, tiny_causal_lm, tiny_encoder, wordpiece_tokenizer

TOL64 = 1e-10
TEXTS = ["the quick brown fox jumps over", "the quick brown cat sat on the mat", "the quick lazy dog",
         "the quick brown fox naps", "a small boat on a calm blue lake"]


@pytest.fixture(scope="module")
def lm64():
    return tiny_causal_lm(bpe_tokenizer(), d=16, dtype=torch.float64, name="lm64")


@pytest.fixture(scope="module")
def pair():
    a = tiny_causal_lm(bpe_tokenizer(), d=16, name="lm")
    b = tiny_encoder(wordpiece_tokenizer(), d=12, name="enc")
    ad = fuse.TensorAdapter.fit(a, b, words=WORDS, k=4, lam=1e-2)
    return a, b, ad


# -- exact scoring ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_score_tokens_equals_the_plain_forward(lm64, batch_size):
    ids, mask = encode_batch(lm64.tokenizer, TEXTS)
    ref = lm64.token_nll(lm64.embed(ids), ids, mask)
    need = torch.rand(ref.shape, generator=torch.Generator().manual_seed(0)) < 0.6
    s = lm64.score_tokens(ids, mask, need, batch_size=batch_size)
    assert torch.allclose(s.nll, torch.where(need & (mask[:, 1:] == 1), ref, torch.zeros_like(ref)), atol=TOL64)
    logits = lm64.logits(lm64.embed(ids), mask)[:, :-1]
    top = logits.argmax(-1) == ids[:, 1:]
    assert torch.equal(s.argmax, top & need & (mask[:, 1:] == 1))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 9), st.integers(1, 40), st.integers(1, 200), st.sampled_from(["float32", "float64", "bfloat16"]),
       st.integers(0, 2**31 - 1), st.booleans())
def test_chunked_token_scores_equal_logsumexp_at_any_chunk_size(n, v, chunk, dtype, seed, with_inf):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, v, generator=g, dtype=torch.float64) * 4).to(getattr(torch, dtype))
    if with_inf and n:
        z[0, : max(1, v // 2)] = -float("inf")  # masked logits (e.g. a banned token) as some models write them
        z[n - 1] = -float("inf") if n > 1 else z[n - 1]
    t = torch.randint(v, (n,), generator=g)
    nll, logit, top = chunked_token_scores(z, t, chunk_elements=chunk)
    ref = z.double() if dtype == "float64" else z.float()
    zt = ref.gather(-1, t[:, None]).squeeze(-1)
    assert nll.dtype == logit.dtype == ref.dtype and top.dtype == torch.bool
    torch.testing.assert_close(nll, torch.logsumexp(ref, -1) - zt, rtol=1e-6, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(logit, zt)
    assert torch.equal(top, zt >= ref.max(-1).values)


def _lcp_with(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=7), min_size=1, max_size=12), st.integers(1, 5),
       st.integers(0, 40), st.booleans())
def test_plan_chunks_covers_every_row_once_within_shared_prefixes(rows, max_rows, overhead, with_base):
    lengths = [len(r) for r in rows]
    L = max(lengths)
    padded = [r + [0] * (L - len(r)) for r in rows]
    base = [_lcp_with(r, rows[0]) for r in rows] if with_base else None
    chunks = plan_chunks(padded, lengths, max_rows, overhead, base)
    members = sorted(i for c, _ in chunks for i in c)
    assert members == list(range(len(rows)))
    for c, P in chunks:
        assert 1 <= len(c) <= max_rows
        assert all(P <= lengths[i] and rows[i][:P] == rows[c[0]][:P] for i in c)


@pytest.mark.parametrize("make", [lambda m: Fluency(m), lambda m: Fluency(m, reduction="sum"),
                                  lambda m: Continuation(m, "over the lazy dog"),
                                  lambda m: Continuation(m, "over the lazy dog", loss="mellowmax", mellowmax_alpha=2.0)])
def test_exact_path_equals_the_differentiable_loss(lm64, make):
    obj = make(lm64)
    ids, mask = encode_batch(lm64.tokenizer, TEXTS)
    fast, _ = obj.score_ids(ids, mask, batch_size=2)
    assert torch.allclose(fast.double(), obj.loss(lm64.embed(ids), ids, mask), atol=TOL64)


def test_mellowmax_is_the_published_formula(lm64):
    obj = Continuation(lm64, "over the lazy dog", loss="mellowmax", mellowmax_alpha=0.5)
    ids, mask = encode_batch(lm64.tokenizer, TEXTS[:1])
    full = torch.cat([ids, obj.cont_ids[None]], 1)
    z = lm64.logits(lm64.embed(full))[0, ids.shape[1] - 1 : -1].gather(-1, obj.cont_ids[:, None]).squeeze(-1)
    a, n = 0.5, obj.cont_ids.numel()
    expect = (torch.log(torch.exp(-a * z).sum()) - torch.log(torch.tensor(float(n), dtype=z.dtype))) / a
    assert torch.allclose(obj.score_ids(ids, mask)[0].double(), expect, atol=TOL64)


def test_evaluate_ids_equals_evaluate_texts(pair):
    a, b, ad = pair
    chain = Chain(a, [(Fluency(a), 0.5), (Similarity(b, "a calm lake"), 1.0)], adapters={b.name: ad})
    enc = a.tokenizer(TEXTS)["input_ids"]
    by_ids = chain.evaluate_ids(enc)
    by_text = chain.evaluate(TEXTS)
    assert torch.allclose(by_ids.total, by_text.total, atol=1e-5) and torch.allclose(by_ids.parts, by_text.parts, atol=1e-5)
    assert by_ids.total.dtype == torch.float32 and by_ids.total.device == a.device


# -- gradients ---------------------------------------------------------------------------------------------------
def _one_hot_gradient(chain, ids):
    """The reference: the gradient with respect to a one-hot matrix times the embedding matrix (V × d)."""
    E = chain.primary.embeddings.detach()
    one_hot = torch.nn.functional.one_hot(torch.tensor(ids), E.shape[0]).to(E.dtype).requires_grad_()
    loss, _ = chain.loss_from_embeds(torch.tensor(ids), one_hot @ E)
    (g,) = torch.autograd.grad(loss, one_hot)
    return g


def test_batched_gradients_equal_one_hot_autograd(lm64):
    chain = Chain(lm64, [(Fluency(lm64), 1.0), (Continuation(lm64, "over the lazy dog"), 2.0)])
    seqs = [lm64.tokenizer(t)["input_ids"][:5] for t in TEXTS]
    tokens = torch.tensor([3, 17, 40, 99])
    _, _, g = chain.gradients(seqs, positions=[1, 3], tokens=tokens)
    for b, s in enumerate(seqs):
        ref = _one_hot_gradient(chain, s)[[1, 3]][:, tokens]
        assert torch.allclose(g[b].double(), ref, atol=1e-6 * ref.abs().max())


def test_gradients_over_a_frozen_prefix_equal_one_hot_autograd(lm64):
    """Gradients at later positions run the shared prefix once (a KV cache reused while it is unchanged): same
    values as full autograd, also when the prefix changes between calls."""
    chain = Chain(lm64, [(Continuation(lm64, "over the lazy dog"), 1.0)])
    tokens = torch.tensor([3, 17, 40, 99])
    state = RunState()
    for head in ("the quick", "a small", "the quick"):
        pre = lm64.tokenizer(head)["input_ids"]
        seqs = [pre + lm64.tokenizer(" " + t)["input_ids"][:3] for t in ("brown fox jumps", "lazy dog naps", "boat on a")]
        positions = [len(pre), len(pre) + 2]
        _, _, g = chain.gradients(seqs, positions=positions, tokens=tokens, state=state)
        memo = state.lm().frozen_kv
        assert memo is not None and torch.equal(memo[0], lm64.embed(torch.tensor(pre)))
        for b, s in enumerate(seqs):
            ref = _one_hot_gradient(chain, s)[positions][:, tokens]
            assert torch.allclose(g[b].double(), ref, atol=1e-9 * ref.abs().max())


def test_scoring_around_a_gradient_pass_reuses_its_cache_and_equals_the_plain_forward(lm64):
    """After a one-sequence gradient pass over a frozen prefix, scoring that sequence's swap candidates crops the
    pass's KV cache instead of running their shared prefixes again (no batch-1 forward), with the plain values;
    a memo of another sequence is ignored where the tokens differ."""
    chain = Chain(lm64, [(Continuation(lm64, "over the lazy dog"), 1.0)])
    obj = chain.terms[0].objective
    pre = lm64.tokenizer("the quick")["input_ids"]
    center = pre + lm64.tokenizer(" brown fox jumps over a calm lake")["input_ids"]
    g = torch.Generator().manual_seed(0)
    cands = []
    for _ in range(12):
        c = list(center)
        for p in torch.randint(len(pre), len(center), (int(torch.randint(1, 3, (1,), generator=g)),), generator=g):
            c[int(p)] = int(torch.randint(5, 100, (1,), generator=g))
        cands.append(c)
    for seq in (center, cands[0]):  # the memo of the center, then of a sequence the others share less with
        state = RunState()
        chain.gradients([seq], positions=list(range(len(pre), len(seq))), state=state)
        assert state.lm().center_kv is not None
        calls = []
        forward = lm64.model.forward
        lm64.model.forward = lambda *a, **k: calls.append(k.get("input_ids").shape) or forward(*a, **k)
        try:
            ids = torch.tensor(cands)
            fast, _ = obj.score_ids(ids, torch.ones_like(ids), batch_size=64, state=state.lm())
        finally:
            del lm64.model.forward
        ref = obj.loss(lm64.embed(ids), ids, torch.ones_like(ids))
        assert torch.allclose(fast.double(), ref, atol=TOL64)
        if seq is center:
            assert calls and all(shape[0] > 1 or shape[1] > 4 for shape in calls), calls


# -- the optimizers ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
    lm = tiny_causal_lm(bpe_tokenizer(), d=16, name="task-lm")
    lm.model.lm_head.weight.mul_(8)  # sharper next-token distributions: losses that prompts can move
    return lm, Chain(lm, [(Continuation(lm, "the lazy dog"), 1.0)])


def test_every_scored_candidate_round_trips(task, monkeypatch):
    lm, chain = task
    seen = []
    real = chain.evaluate_ids

    def spy(seqs, **kw):
        seen.extend(seqs)
        return real(seqs, **kw)

    monkeypatch.setattr(chain, "evaluate_ids", spy)
    res = GCG(chain, n_tokens=6, prefix="the quick", budget=128, batch_size=32, seed=1).run()
    assert seen, "nothing was scored"
    for s in seen:
        assert lm.tokenizer(chain.decode(s))["input_ids"] == s
    assert lm.tokenizer(res.best_text)["input_ids"] == res.best_ids
    assert res.best_ids[len(res.best_ids) - len(res.best_free_ids):] == res.best_free_ids
    assert all("best_text" in h for h in res.history)


@pytest.mark.parametrize("cls", [GCG, RandomSearch, AutoDAN, PEZ])
def test_run_twice_gives_the_same_result(task, cls):
    _, chain = task
    opt = cls(chain, n_tokens=4, prefix="the quick", budget=48, batch_size=16, seed=3)
    a, b = opt.run(), opt.run()
    assert (a.best_ids, a.best_loss, a.evaluations) == (b.best_ids, b.best_loss, b.evaluations)


def test_gcg_improves_on_its_real_starting_point(task):
    lm, chain = task
    cfg = GCGConfig(n_tokens=6, prefix="the quick", budget=256, batch_size=32, seed=0, init_text="x x x x x x")
    opt = GCG(chain, cfg)
    start = chain.evaluate_ids([opt.full_ids(opt.initial_free())]).total.item()
    res = optimize(chain, cfg)
    assert res.history[0]["evaluations"] > 1 and res.best_loss < start - 0.1, (start, res.best_loss)


def test_candidates_are_top_k_swaps_of_their_center(task):
    lm, chain = task
    for n_replace in (1, 2):
        opt = GCG(chain, n_tokens=6, prefix="the quick", budget=64, batch_size=40, top_k=8, n_replace=n_replace, seed=2)
        opt._reset()
        center = opt.initial_free()
        top = opt.top_tokens([center])[0]
        cands = opt.candidates([center])
        assert cands
        for c in cands:
            diff = [i for i, (x, y) in enumerate(zip(c, center)) if x != y]
            assert 1 <= len(diff) <= n_replace
            assert all(c[i] in top[i].tolist() for i in diff)


class CenterRecorder(GCG):
    """GCG that records the sequence each step proposes around (the pool's center)."""

    def run(self):
        self.centers_seen = []
        return super().run()

    def candidates(self, centers):
        self.centers_seen.append(list(centers[0]))
        return super().candidates(centers)


def test_accept_always_moves_even_when_worse(task):
    """accept="always" moves the center to the step's best candidate even when it is worse than the center, so the
    center's loss rises at some step; accept="improve" on the same seed never lets it rise. Both return the best
    sequence ever scored."""
    RISE = 1e-4  # well above float32 noise of the tiny model's losses (the rise here is about 5e-3)
    _, chain = task
    center_losses, results = {}, {}
    for accept in ("always", "improve"):
        opt = CenterRecorder(chain, n_tokens=6, prefix="the quick", budget=160, batch_size=16, seed=0, accept=accept)
        results[accept] = opt.run()
        assert len(opt.centers_seen) > 3
        center_losses[accept] = chain.evaluate_ids([opt.full_ids(c) for c in opt.centers_seen]).total.tolist()
    always, improve = center_losses["always"], center_losses["improve"]
    assert any(b > a + RISE for a, b in zip(always, always[1:])), always
    assert all(b <= a + 1e-6 for a, b in zip(improve, improve[1:])), improve
    assert always != improve[: len(always)]
    for accept, res in results.items():
        best = [h["best_loss"] for h in res.history]
        assert best == sorted(best, reverse=True)  # the result is still the best ever scored
        assert res.best_loss <= min(center_losses[accept]) + 1e-6


def test_combinations_apply_the_best_improving_swaps_together(task):
    _, chain = task
    opt = GCG(chain, n_tokens=6, prefix="the quick", budget=64, batch_size=16, seed=0, combine=3)
    center = [10, 11, 12, 13, 14, 15]
    swap = lambda j, t: [t if i == j else c for i, c in enumerate(center)]  # noqa: E731
    cands = [swap(0, 20), swap(1, 21), swap(0, 22), swap(2, 23), swap(3, 24), [30, 31, 12, 13, 14, 15]]
    losses = torch.tensor([0.5, 0.7, 0.4, 0.9, 1.5, 0.1])  # center at 1.0: the last (two swaps) and swap(3) do not count
    combos = opt.combinations(center, 1.0, cands, losses)
    # best first: swap(0, 22) (0.4), then swap(0, 20) is skipped (position 0 taken), swap(1, 21), swap(2, 23)
    assert combos == [[22, 21, 12, 13, 14, 15], [22, 21, 23, 13, 14, 15]]


def test_combine_spends_part_of_each_step_and_keeps_the_budget(task):
    _, chain = task
    plain = GCG(chain, n_tokens=6, prefix="the quick", budget=96, batch_size=16, seed=0).run()
    comb = GCG(chain, n_tokens=6, prefix="the quick", budget=96, batch_size=16, seed=0, combine=4).run()
    assert comb.evaluations <= 96 and plain.evaluations <= 96
    assert comb.best_loss == GCG(chain, n_tokens=6, prefix="the quick", budget=96, batch_size=16, seed=0,
                                 combine=4).run().best_loss
    with pytest.raises(ValueError, match="combine"):
        GCGConfig(batch_size=8, combine=8)


def test_the_gradient_is_computed_again_only_when_the_center_moves(task):
    _, chain = task
    calls = []
    gradients = chain.gradients
    chain.gradients = lambda *a, **k: calls.append(1) or gradients(*a, **k)
    try:
        opt = GCG(chain, n_tokens=6, prefix="the quick", budget=400, batch_size=16, top_k=4, seed=1, combine=0)
        res = opt.run()
    finally:
        chain.gradients = gradients
    opt._reset()
    best = [float(opt.score([opt.initial_free()])[0])] + [h["best_loss"] for h in res.history]
    moved = sum(best[i] < best[i - 1] for i in range(1, len(res.history)))  # the center of steps 2.. changed
    assert len(calls) == 1 + moved < len(res.history)


def test_a_spent_neighbourhood_stops_the_search_instead_of_looping(task):
    _, chain = task
    res = GCG(chain, n_tokens=2, prefix="the quick", budget=10_000, batch_size=8, top_k=2, seed=0).run()
    assert res.stopped == "exhausted" and res.evaluations < 10


def test_cache_and_budget(task):
    _, chain = task
    res = RandomSearch(chain, n_tokens=2, prefix="the quick", budget=300, batch_size=64, seed=0).run()
    assert res.evaluations <= 300
    no_cache = RandomSearch(chain, n_tokens=2, prefix="the quick", budget=300, batch_size=64, seed=0, cache=False).run()
    assert res.cache_hits > 0 and no_cache.cache_hits == 0


def test_early_stop_on_an_exact_match():
    """The start is built to make the model produce the target exactly (the target is the model's own greedy
    continuation of it): with early_stop the search stops at the first step with "match", far from its budget;
    without, it spends the whole budget."""
    lm = tiny_causal_lm(bpe_tokenizer(), d=16, name="greedy-lm")
    budget, batch = 96, 16
    for init in ("brown fox", "lazy dog", "red mat", "calm blue lake", "small boat", "frozen model", "sunset", "cat"):
        n = len(lm.tokenizer(" " + init, add_special_tokens=False)["input_ids"])
        kw = dict(n_tokens=n, prefix="the quick", init_text=init, budget=budget, batch_size=batch, seed=0)
        fresh = GCG(Chain(lm, [(Fluency(lm), 1.0)]), **kw)
        ids = fresh.full_ids(fresh.initial_free())  # init_text covers every free token: no random draw
        with torch.no_grad():  # the model's own greedy continuation is matched by construction
            cont = []
            for _ in range(3):
                cont.append(int(lm.logits(lm.embed(torch.tensor(ids + cont))[None])[0, -1].argmax()))
        target = lm.tokenizer.decode(cont, clean_up_tokenization_spaces=False)
        if lm.tokenizer(target, add_special_tokens=False)["input_ids"] == cont:
            break
    else:
        pytest.fail("no greedy continuation of the starts tried round-trips as a text")
    chain = Chain(lm, [(Continuation(lm, target), 1.0)])
    assert bool(chain.evaluate_ids([ids]).match[0])
    res = GCG(chain, early_stop=True, **kw).run()
    assert res.stopped == "match"
    assert res.evaluations <= 1 + batch < budget
    full = GCG(chain, early_stop=False, **kw).run()
    assert full.stopped == "budget" and full.evaluations == budget


def test_probe_sampling_with_a_perfect_draft(task):
    _, chain = task
    cfg = GCGConfig(n_tokens=6, prefix="the quick", budget=120, batch_size=64, seed=0,
                    probe=ProbeConfig(draft=chain, r=8, sampling_factor=16))
    opt = GCG(chain, cfg)
    res = opt.run()
    assert res.draft_evaluations > res.evaluations and opt.probe_history
    ranked = [h for h in opt.probe_history if h["probe"] >= 2]
    assert ranked
    for h in ranked:  # a draft that is the model itself agrees perfectly: only one more candidate is scored
        assert h["rho"] > 0.99 and h["filtered"] == 1


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, generator=g), torch.randn(20, generator=g)
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)


# -- precision and devices ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtypes", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
                                    (torch.float32, torch.bfloat16)])
def test_half_precision_chains_match_float32(pair, dtypes):
    a32, b32, ad = pair
    a = tiny_causal_lm(bpe_tokenizer(), d=16, name="lm", dtype=dtypes[0])
    b = tiny_encoder(wordpiece_tokenizer(), d=12, name="enc", dtype=dtypes[1])
    seq = a.tokenizer("the quick brown fox")["input_ids"]
    results = []
    for x, y in ((a32, b32), (a, b)):
        chain = Chain(x, [(Fluency(x), 0.5), (Similarity(y, "a calm lake"), 1.0)], adapters={y.name: ad})
        loss, parts, g = chain.gradient(seq, positions=[1, 2], tokens=torch.arange(50))
        ev = chain.evaluate_ids([seq])
        assert torch.isfinite(g).all() and torch.isfinite(ev.total).all() and ev.total.dtype == torch.float32
        results.append((loss, g, ev.total[0].item()))
    (l32, g32, e32), (lh, gh, eh) = results
    assert abs(lh - l32) <= 0.05 * abs(l32) and abs(eh - e32) <= 0.05 * abs(e32)
    cos = torch.nn.functional.cosine_similarity(g32.flatten(), gh.flatten(), dim=0)
    assert cos > 0.95
    chain = Chain(a, [(Fluency(a), 0.5), (Similarity(b, "a calm lake"), 1.0)], adapters={b.name: ad})
    res = GCG(chain, n_tokens=3, prefix="the", budget=40, batch_size=16, seed=0).run()
    assert res.evaluations > 0 and res.best_loss < float("inf")


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA device")
def test_a_chain_across_devices(pair):
    a, _, ad = pair
    b = tiny_encoder(wordpiece_tokenizer(), d=12, name="enc").model
    enc = fuse.EncoderBackbone(b.to("cuda"), wordpiece_tokenizer(), "enc")
    chain = Chain(a, [(Fluency(a), 0.5), (Similarity(enc, "a calm lake"), 1.0)], adapters={enc.name: ad})
    seq = a.tokenizer("the quick brown fox")["input_ids"]
    loss, _, g = chain.gradient(seq, positions=[1], tokens=torch.arange(10))
    assert g.device == a.device and torch.isfinite(g).all()


# -- configs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [(dict(n_tokens=0), "n_tokens"), (dict(search="wide"), "search"),
                                        (dict(top_k=0), "top_k"), (dict(n_replace=9, n_tokens=3), "n_replace"),
                                        (dict(accept="maybe"), "accept"), (dict(buffer_size=-1), "buffer_size"),
                                        (dict(budget=2.5), "budget")])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        GCGConfig(**bad)


def test_keyword_arguments_and_config_agree(task):
    _, chain = task
    cfg = AutoDANConfig(n_tokens=3, budget=30, batch_size=8, seed=5)
    assert AutoDAN(chain, cfg).config == AutoDAN(chain, n_tokens=3, budget=30, batch_size=8, seed=5).config
    assert dataclasses.replace(cfg, seed=6) == AutoDAN(chain, cfg, seed=6).config
    with pytest.raises(ValueError, match="GCGConfig"):
        GCG(chain, cfg)


def test_cli_defaults_are_the_config_defaults():
    import argparse

    from fuse.cli import optimize as cli
    from fuse.optim import PEZConfig, RandomSearchConfig

    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    cfg = p.parse_args(["optimize", "--primary", "x"]).config  # built from the generated flags while parsing
    default = GCGConfig()
    for f in dataclasses.fields(GCGConfig):
        if f.name != "progress":
            assert getattr(cfg, f.name) == getattr(default, f.name), f.name
    for name, opt in (("autodan", AutoDANConfig()), ("pez", PEZConfig()), ("random", RandomSearchConfig())):
        got = p.parse_args(["optimize", "--primary", "x", "--optimizer", name]).config
        assert dataclasses.replace(got, progress=False) == opt, name


def test_pez_stops_when_every_projection_is_a_cache_hit(task):
    """With a tiny learning rate the projection never moves: the run must still end (after ``budget`` steps)."""
    _, chain = task
    res = PEZ(chain, n_tokens=3, prefix="the quick", budget=8, seed=1, lr=1e-6).run()
    assert res.stopped == "budget" and len(res.history) == 8 and res.cache_hits == 7
