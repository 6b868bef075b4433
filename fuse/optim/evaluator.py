"""The evaluator of one run: every exact evaluation and every gradient an optimizer asks for goes through it.

An optimizer only proposes candidates and updates its search; the :class:`Evaluator` it creates in ``run()`` checks
each candidate's round trip (``encode(decode(ids)) == ids`` in the primary), answers candidates met before from its
cache, de-duplicates, cuts at the budget, evaluates the rest exactly on the chain, and keeps the counters, the
best-so-far and the run's caches (:class:`~fuse.models.run_state.RunState`). Probe sampling is a strategy over it
(:class:`~fuse.optim.probe.ProbeSampling`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from fuse.models.run_state import RunState
from fuse.optim.chain_base import BaseChain, Evaluation, Known, Layout  # noqa: F401 (Layout: re-exported)


@dataclass
class Best:
    """The best candidate scored so far (``free`` is ``None`` before the first)."""

    loss: float = float("inf")
    free: list[int] | None = None
    parts: list[float] | None = None
    match: bool | None = None


@dataclass
class Evaluator:
    """Exact scoring with a cache, a budget and a best-so-far, for one run.

    Args:
        chain: the chain (plain or data-parallel).
        layout: where the free tokens go.
        budget: exact evaluations allowed (cache hits are free).
        batch_size: sequences per forward when scoring.
        cache: answer a candidate met before from :attr:`scored` (every evaluation is kept there either way: growth
            optimizers read their beams' values from it).
        complete_length: when set, only candidates of this many free tokens can become :attr:`best`; shorter ones
            are kept apart (:attr:`partial`, the fallback of a growth-based optimizer).
        on_scored: called with the number of new evaluations after each batch (a progress bar).
    """

    chain: BaseChain
    layout: Layout
    budget: int
    batch_size: int = 64
    cache: bool = True
    complete_length: int | None = None
    on_scored: Callable[[int, float], None] | None = None
    state: RunState = field(default_factory=RunState)
    evaluations: int = 0
    dropped: int = 0
    cache_hits: int = 0
    draft_evaluations: int = 0
    cascade_evaluations: int = 0
    gradient_calls: int = 0
    any_match: bool = False
    best: Best = field(default_factory=Best)
    partial: Best = field(default_factory=Best)
    probe_history: list[dict] = field(default_factory=list)
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    scored: dict = field(default_factory=dict)  # free tokens -> (loss, parts, match)

    # -- the round trip -------------------------------------------------------------------
    def round_trip_texts(self, frees: Sequence[Sequence[int]]) -> tuple[list[bool], list[str]]:
        """Whether each candidate's text re-tokenizes to exactly its ids in the primary, and the texts checked."""
        if not frees:
            return [], []
        fulls = [self.layout.full_ids(f) for f in frees]
        texts = [self.chain.decode(f) for f in fulls]
        enc = self.chain.primary.tokenizer(texts, add_special_tokens=self.layout.add_special_tokens)["input_ids"]
        return [list(e) == f and bool(t.strip()) for e, f, t in zip(enc, fulls, texts)], texts

    def round_trips(self, frees: Sequence[Sequence[int]]) -> list[bool]:
        return self.round_trip_texts(frees)[0]

    # -- exact scoring --------------------------------------------------------------------
    def score(self, frees: Sequence[Sequence[int]], known: Callable[[list[list[int]]], Known] | None = None,
              cascade: float | None = None) -> torch.Tensor:
        """Exact losses ``(n,)`` (CPU float) of candidate free-token lists.

        Candidates whose text does not round-trip are dropped (``inf``, counted in :attr:`dropped`), and so are those
        the chain answers ``inf`` for (a :class:`~fuse.optim.prompt_chain.PromptChain` candidate whose edge tokens merge
        with the fixed text: not cached, not counted as evaluations, never best); candidates
        already scored come from the cache (:attr:`cache_hits`); the rest are scored in order while the budget lasts
        (``inf`` past it). ``known(frees)`` may give the exact values of some terms for the candidates to evaluate
        (:meth:`BaseChain.evaluate_ids <fuse.optim.chain_base.BaseChain.evaluate_ids>`).

        ``cascade`` (a fraction in (0, 1]): the candidates are scored first on the primary's own terms (those without
        a bridge), and only the best ``ceil(cascade · n)`` of them on the rest (:meth:`cascade_evaluate`); the others
        stay ``inf``, are not cached and count in :attr:`cascade_evaluations` (not in :attr:`evaluations`).
        """
        out = torch.full((len(frees),), float("inf"))
        if not frees:
            return out
        rest = []  # indices not answered by the cache (only candidates that round-tripped are ever cached)
        for i, f in enumerate(frees):
            hit = self.scored.get(tuple(f)) if self.cache else None
            if hit is not None:
                self.cache_hits += 1
                out[i] = hit[0]
            else:
                rest.append(i)
        kept, texts = self.screen([frees[i] for i in rest])
        kept = set(kept)
        todo, todo_texts, seen = [], [], {}
        for n, (i, text) in enumerate(zip(rest, texts)):
            if n not in kept:
                continue
            key = tuple(frees[i])
            if key in seen:
                seen[key].append(i)
            else:
                seen[key] = [i]
                todo.append(list(frees[i]))
                todo_texts.append(text)
        left = max(self.budget - self.evaluations, 0)
        stages = self.cascade_stages() if cascade is not None and known is None else None
        if stages is None:  # (a cascade scores every candidate on the primary's terms, the budget cuts its second)
            todo, todo_texts = todo[:left], todo_texts[:left]
        if not todo or not left:
            return out
        t0 = time.perf_counter()
        if stages is not None:
            todo, todo_texts, ev = self.cascade_evaluate(todo, todo_texts, cascade, left, stages)
        else:
            ev = self.chain.evaluate_ids([self.layout.full_ids(f) for f in todo], batch_size=self.batch_size,
                                         texts=todo_texts, known=None if known is None else known(todo),
                                         state=self.state)
        self.seconds["evaluate"] += time.perf_counter() - t0
        if not todo:
            return out
        totals, parts = ev.total.tolist(), ev.parts.tolist()
        matches = ev.match.tolist() if ev.match is not None else [None] * len(todo)
        refused = 0
        for f, loss, part, match in zip(todo, totals, parts, matches):
            if loss == float("inf"):  # the chain refused it (left inf in ``out``)
                refused += 1
                continue
            self.scored[tuple(f)] = (loss, part, match)
            for i in seen[tuple(f)]:
                out[i] = loss
            self._consider(f, loss, part, match)
        self.dropped += refused
        self.evaluations += len(todo) - refused
        if self.on_scored is not None:
            self.on_scored(len(todo) - refused, self.best.loss)
        return out

    def cascade_stages(self) -> tuple[list[int], list[int]] | None:
        """The cascade's ``(primary's own terms, bridged terms)`` indices, or ``None`` when either is empty (the chain
        is then scored in one pass)."""
        first = [i for i, t in enumerate(self.chain.terms) if t.bridge is None]
        rest = [i for i, t in enumerate(self.chain.terms) if t.bridge is not None]
        return (first, rest) if first and rest else None

    def cascade_evaluate(self, frees: list[list[int]], texts: list[str], keep: float, most: int,
                         stages: tuple[list[int], list[int]]) -> tuple[list[list[int]], list[str], Evaluation]:
        """Score ``frees`` on the terms ``stages[0]``, then the best ``min(most, ceil(keep · n))`` of them on the terms
        ``stages[1]``: those candidates, their texts and their whole :class:`~fuse.optim.chain_base.Evaluation` (the
        same values as one exact evaluation of the chain)."""
        chain, (first, rest) = self.chain, stages
        ev1 = chain.subset(first).evaluate_ids([self.layout.full_ids(f) for f in frees], batch_size=self.batch_size,
                                               texts=texts, state=self.state)
        total1 = ev1.total.float().cpu()
        n_ok = int(torch.isfinite(total1).sum())
        self.dropped += len(frees) - n_ok   # the chain refused them (a PromptChain's edges): as in one pass
        order = torch.argsort(total1, stable=True)[:min(most, math.ceil(keep * n_ok))].tolist()  # refused ones last
        frees, texts = [frees[i] for i in order], [texts[i] for i in order]
        self.cascade_evaluations += n_ok - len(order)   # scored on the primary's terms alone
        if not order:
            return [], [], ev1
        ev2 = chain.subset(rest).evaluate_ids([self.layout.full_ids(f) for f in frees], batch_size=self.batch_size,
                                              texts=texts, state=self.state)
        rows = torch.tensor(order, device=ev1.parts.device)
        P = torch.empty(len(order), len(chain.terms), device=ev1.parts.device, dtype=torch.float32)
        P[:, first] = ev1.parts[rows].float()
        P[:, rest] = ev2.parts.to(P)
        matches = [m.to(P.device) for m in (None if ev1.match is None else ev1.match[rows], ev2.match) if m is not None]
        match = torch.stack(matches).all(0) if matches else None
        return frees, texts, Evaluation(P @ chain.weights.to(P), P, match)

    def screen(self, frees: Sequence[Sequence[int]]) -> tuple[list[int], list[str]]:
        """The indices of candidates whose text round-trips (the others are counted as dropped) and all texts."""
        good, texts = self.round_trip_texts(frees)
        self.dropped += good.count(False)
        return [i for i, g in enumerate(good) if g], texts

    def draft_scored(self, n: int, seconds: float) -> None:
        """Count ``n`` texts a draft model scored (probe sampling) in ``seconds``."""
        self.draft_evaluations += n
        self.seconds["draft"] += seconds

    def _consider(self, free: list[int], loss: float, parts: list[float], match) -> None:
        if match:
            self.any_match = True
        if self.complete_length is not None and len(free) != self.complete_length:  # a partial prompt: the fallback
            if loss < self.partial.loss:
                self.partial = Best(loss, list(free), parts, match)
        elif loss < self.best.loss:
            self.best = Best(loss, list(free), parts, match)

    # -- gradients ------------------------------------------------------------------------
    def gradients(self, seqs, positions=None, tokens=None, chain: BaseChain | None = None):
        """:meth:`BaseChain.gradients <fuse.optim.chain_base.BaseChain.gradients>` of ``chain`` (default the run's)
        with the run's caches, timed and counted."""
        t0 = time.perf_counter()
        try:
            return (chain or self.chain).gradients(seqs, positions, tokens, state=self.state)
        finally:
            self.gradient_calls += 1
            self.seconds["gradient"] += time.perf_counter() - t0

    def embedding_gradients(self, seqs, positions=None):
        """:meth:`BaseChain.embedding_gradients <fuse.optim.chain_base.BaseChain.embedding_gradients>` with the
        run's caches, timed and counted."""
        t0 = time.perf_counter()
        try:
            return self.chain.embedding_gradients(seqs, positions, state=self.state)
        finally:
            self.gradient_calls += 1
            self.seconds["gradient"] += time.perf_counter() - t0
