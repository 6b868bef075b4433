"""Data-parallel evaluation of a :class:`~fuse.optim.chain.Chain` on the ranks of a torchrun job.

Every rank holds the whole chain and runs the same optimizer with the same seed. At each step the
candidates are split across ranks, each rank scores its share exactly, and the losses are
all-gathered back into the step's order, so every rank sees the full list of losses and takes the
same decision. Gradients (:meth:`~fuse.optim.chain_base.BaseChain.embedding_gradients`, which every
gradient method derives from) are computed on rank 0 only and broadcast, so the ranks stay in step even where
GPU kernels are not bitwise deterministic. It implements the chain contract
(:class:`~fuse.optim.chain_base.BaseChain`) itself; nothing is forwarded implicitly to the wrapped chain.

Example (``torchrun --nproc_per_node 2 script.py``)::

    from fuse.parallel import DataParallelChain, init_from_env
    init_from_env()
    result = fuse.optimize(DataParallelChain(chain), GCGConfig(n_tokens=8, budget=512, seed=0))  # same on every rank
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Sequence

import torch

from fuse.models.backbones.exact_scoring import cache_from_tensors, cache_tensors
from fuse.models.run_state import RunState
from fuse.optim.chain_base import Evaluation, Known
from fuse.parallel.collectives import all_gather_rows, broadcast_object, check_all
from fuse.parallel.config import DEFAULT_PARALLEL
from fuse.parallel.wrapped import RankedChain

logger = logging.getLogger(__name__)


def shard_bounds(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``parts`` contiguous ``(start, stop)`` pieces, as equal as possible in
    units of ``align`` items (the last unit may be short); later pieces may be empty."""
    if n < 0 or parts < 1 or align < 1:
        raise ValueError(f"shard_bounds needs n >= 0, parts >= 1, align >= 1; got {n}, {parts}, {align}")
    units = -(-n // align)
    base, extra = divmod(units, parts)
    out, start = [], 0
    for p in range(parts):
        stop = start + base + (p < extra)
        out.append((min(start * align, n), min(stop * align, n)))
        start = stop
    return out


class DataParallelChain(RankedChain):
    """A :class:`~fuse.optim.chain.Chain` whose evaluation is shared by the ranks of a process group.

    ``primary`` and ``terms`` are the wrapped chain's; :meth:`subset` wraps the wrapped chain's subset the same
    way. In a single process (or with ``local=True``) nothing is exchanged.

    Args:
        chain: the chain every rank holds (built the same way on each rank).
        micro_batch: texts per forward and unit of the split (see
            :class:`~fuse.parallel.config.ParallelConfig`; default ``ParallelConfig().micro_batch``).
            ``None`` in a single process makes the wrapper a pass-through.
        local: score on this process alone even inside a process group (a rank running its own
            dataset items), keeping the micro-batching so results match any other run.

    Attributes:
        stats: seconds spent and calls made per phase on this rank (``evaluate``, ``gather``,
            ``gradient``, ``broadcast``), for the cost model in docs/scale-out.md.
    """

    def __init__(self, chain, *, micro_batch: int | None = DEFAULT_PARALLEL.micro_batch, local: bool = False,
                 stats: dict | None = None):
        self.check_plain(chain, "DataParallelChain")
        if micro_batch is not None and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1):
            raise ValueError(f"micro_batch must be a positive integer or None, got {micro_batch!r}")
        self.chain, self.micro_batch, self.local = chain, micro_batch, bool(local)
        self.stats: dict[str, float] = defaultdict(float) if stats is None else stats

    # -- the contract: what the chain is (primary, terms, adapters, layout: RankedChain's) --------
    def subset(self, indices: Sequence[int]) -> "DataParallelChain":
        """The wrapped chain's :meth:`~fuse.optim.chain.Chain.subset`, data-parallel in the same way (same
        micro-batch, same process group; its phases are counted in this wrapper's :attr:`stats`)."""
        return DataParallelChain(self.chain.subset(indices), micro_batch=self.micro_batch, local=self.local,
                                 stats=self.stats)

    def __repr__(self) -> str:
        return f"DataParallelChain({self.chain!r}, micro_batch={self.micro_batch}, world_size={self.world_size})"

    # -- gradients: rank 0 computes, everyone receives the same bits ------------------------
    def embedding_gradients(self, seqs, positions=None, state: RunState | None = None):
        """:meth:`Chain.embedding_gradients <fuse.optim.chain.Chain.embedding_gradients>` computed on rank 0 and
        broadcast (identical on every rank, on the primary's device; an error on rank 0 is raised on every rank).

        What the pass leaves in the run's ``state`` travels with it, slot by slot, so the ranks' states stay equal: a
        new center KV cache (every rank then crops the same cache when it scores its share; a cache layout that
        cannot be sent is dropped on rank 0 too) and the logits a slot records (``LMState.recording_logits``).
        """
        if self.world_size == 1:
            return self._timed("gradient", self.chain.embedding_gradients, seqs, positions, state)
        result, error = None, None
        slots = {} if state is None else state.slots
        before = {key: lm.center_kv for key, lm in slots.items()}
        if self.rank == 0:
            try:
                result = self._timed("gradient", self.chain.embedding_gradients, seqs, positions, state)
                result = (*result, self._changes(slots, before))
            except Exception as e:
                error = e
        t0 = time.perf_counter()
        out = broadcast_object(result, 0, error=None if error is None else f"{type(error).__name__}: {error}")
        self._tick("broadcast", t0)
        if error is not None:
            raise error
        *out, changes = out
        device = self.primary.device
        for key, center, recorded in changes:
            lm = state.lm(key)
            if center == "drop":
                lm.center_kv = before.get(key)  # rank 0 could not send it: no rank uses the new one
            elif center is not None and self.rank != 0:
                emb, layers = center
                lm.center_kv = (emb.to(device), cache_from_tensors([(k.to(device), v.to(device)) for k, v in layers]))
            if lm.record_at is not None and self.rank != 0:
                lm.recorded = None if recorded is None else recorded.to(device)
        return tuple(t.to(device) for t in out)

    @staticmethod
    def _changes(slots: dict, before: dict) -> list:
        """``[(slot key, center, recorded), ...]`` for every slot the pass touched: ``center`` is ``(embeddings,
        [(keys, values), ...])`` for a new center KV cache, ``"drop"`` for one that cannot be sent, ``None`` for
        none; ``recorded`` the logits a recording slot kept."""
        out = []
        for key, lm in slots.items():
            center = None
            if lm.center_kv is not None and lm.center_kv is not before.get(key):
                layers = cache_tensors(lm.center_kv[1])
                center = "drop" if layers is None else (lm.center_kv[0], layers)
            if center is not None or lm.record_at is not None:
                out.append((key, center, lm.recorded if lm.record_at is not None else None))
        return out

    def _timed(self, phase, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self._tick(phase, t0)

    def _tick(self, phase: str, t0: float) -> None:
        self.stats[phase + "_s"] += time.perf_counter() - t0
        self.stats[phase + "_calls"] += 1

    # -- exact evaluation, split across ranks -----------------------------------------------
    def evaluate(self, texts: list[str], batch_size: int = 64) -> Evaluation:
        """Exact objective of each text, as :meth:`Chain.evaluate <fuse.optim.chain.Chain.evaluate>`.

        The texts are cut into contiguous shards by rank (aligned to ``micro_batch``), each rank
        scores its own, and the rows are all-gathered back into input order.

        Returns:
            ``Evaluation(total (B,), parts (B, T), match)``, identical on every rank.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("no texts to evaluate")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("every text to evaluate must be non-empty")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.world_size == 1 and self.micro_batch is None:
            return self._timed("evaluate", self.chain.evaluate, texts, batch_size=batch_size)
        return self._split(len(texts), lambda lo, hi, bs: self.chain.evaluate(texts[lo:hi], batch_size=bs), batch_size)

    def evaluate_ids(self, seqs: list[list[int]], batch_size: int = 64, texts: list[str] | None = None,
                     known: Known | None = None, state: RunState | None = None) -> Evaluation:
        """Exact objective of primary token sequences, as :meth:`Chain.evaluate_ids
        <fuse.optim.chain.Chain.evaluate_ids>`, split across ranks.

        The sequences are sorted (so that each micro-batch holds sequences sharing long prefixes, which the exact
        scorer runs once), cut into micro-batches dealt to ranks, and gathered back into input order.
        """
        seqs = [list(s) for s in seqs]
        if not seqs:
            raise ValueError("no sequences to evaluate")
        if self.world_size == 1 and self.micro_batch is None:
            return self._timed("evaluate", self.chain.evaluate_ids, seqs, batch_size=batch_size, texts=texts,
                               known=known, state=state)
        order = sorted(range(len(seqs)), key=lambda i: seqs[i])
        s_seqs = [seqs[i] for i in order]
        s_texts = None if texts is None else [texts[i] for i in order]
        perm = torch.tensor(order, dtype=torch.long)
        s_known = {j: v[perm.to(v.device)] for j, v in (known or {}).items()}
        ev = self._split(len(seqs), lambda lo, hi, bs: self.chain.evaluate_ids(
            s_seqs[lo:hi], batch_size=bs, texts=None if s_texts is None else s_texts[lo:hi],
            known={j: v[lo:hi] for j, v in s_known.items()}, state=state), batch_size)
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        return Evaluation(ev.total[back], ev.parts[back], None if ev.match is None else ev.match[back])

    def _split(self, n_items: int, score, batch_size: int) -> Evaluation:
        """Score ``n_items`` in micro-batches dealt to ranks (``score(lo, hi, batch_size) -> Evaluation``), gather."""
        n, r, m = self.world_size, self.rank, self.micro_batch
        start, stop = shard_bounds(n_items, n, m or 1)[r]
        T = len(self.terms)
        error, local = None, torch.zeros(0, 2 + T)
        t0 = time.perf_counter()
        try:
            if stop > start:
                if m is None:
                    pieces = [score(start, stop, batch_size)]
                else:  # one call per micro-batch: every row is computed in the same shape for any N
                    pieces = [score(i, min(i + m, stop), m) for i in range(start, stop, m)]
                local = torch.cat([torch.cat([p.total[:, None].float().cpu(), p.parts.float().cpu(),
                                              (torch.full_like(p.total, -1.0) if p.match is None else
                                               p.match.float())[:, None].cpu()], 1) for p in pieces])
        except Exception as e:
            if n == 1:
                raise
            error = e
        self._tick("evaluate", t0)
        if n > 1:
            t0 = time.perf_counter()
            try:
                check_all(None if error is None else f"{type(error).__name__}: {error}")
            except Exception:
                if error is not None:
                    raise error
                raise
            rows = all_gather_rows(local)
            self._tick("gather", t0)
        else:
            rows = local
        if rows.shape[0] != n_items:  # pragma: no cover - a broken invariant, not user input
            raise RuntimeError(f"gathered {rows.shape[0]} rows for {n_items} items")
        match = rows[:, -1]
        device = self.chain.primary.device
        return Evaluation(rows[:, 0].contiguous().to(device), rows[:, 1:-1].contiguous().to(device),
                          None if bool((match < 0).any()) else (match > 0.5).to(device))
