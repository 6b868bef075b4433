"""Search over token swaps, shared by the swap-based optimizers (GCG, random search).

The search keeps a pool of sequences: one (``search="greedy"``), ``beam_width`` (``search="beam"``: candidates are
proposed around every pool member) or an attack buffer of ``buffer_size`` (candidates around its best member, as
in nanoGCG). Each step a subclass proposes ``batch_size`` candidates (:meth:`SwapSearch.propose`), each differing
from its pool member in ``n_replace`` positions; they are scored exactly and the pool is updated: with
``accept="improve"`` it keeps the best of pool and candidates (monotone), with ``accept="always"`` it becomes the
step's best candidates (nanoGCG without a buffer). The result is always the best sequence ever scored.

With ``combine=m`` (I-GCG's multi-coordinate update, Jia et al., 2024; GCG's default is ``batch_size // 8``)
the last ``m`` of a step's ``batch_size`` evaluations go to combinations of its best changes: the changes that beat
the center, best first, are applied together cumulatively (the best two, the best three, …, skipping those that
touch a position already changed), and each combination is scored exactly like any candidate. One step can thus
take several improving swaps at once. A step with fewer improving swaps than ``m`` scores fewer candidates, and the
next starts sooner from a fresh gradient (filling those slots with more swaps instead did worse on three of
``engine_peer``'s first four tasks).
"""

from __future__ import annotations

import torch

from fuse.optim.base import Optimizer


#: steps in a row that evaluate nothing new (every candidate cached or dropped) before a search stops ("exhausted")
IDLE_STEPS = 5


class SwapSearch(Optimizer):
    """An optimizer whose step is: propose token swaps around the pool, score them exactly, update the pool."""

    @property
    def n_replace(self) -> int:
        return self.config.n_replace

    @property
    def buffer_size(self) -> int:
        return getattr(self.config, "buffer_size", 0)

    @property
    def accept(self) -> str:
        return getattr(self.config, "accept", "improve")

    @property
    def combine(self) -> int | None:
        return getattr(self.config, "combine", 0)

    @property
    def n_combine(self) -> int:
        """Evaluations per step for combinations (``combine=None``: ``batch_size // 8``)."""
        return self.config.batch_size // 8 if self.combine is None else int(self.combine)

    @property
    def pool_size(self) -> int:
        return self.buffer_size or self.pool_width

    def centers(self, pool: list[list[int]]) -> list[list[int]]:
        """The pool members candidates are proposed around: all beams, or the best one (greedy, buffer)."""
        return pool if self.config.search == "beam" else pool[:1]

    def propose(self, centers: list[list[int]], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions, tokens)`` of ``n`` candidates around each center: ``(C, n, n_replace)`` each (long, CPU)."""
        raise NotImplementedError

    def candidates(self, centers: list[list[int]]) -> list[list[int]]:
        """Apply the proposed swaps: ``batch_size`` candidates split over the centers (duplicates kept once)."""
        per = max(1, (self.config.batch_size - self.n_combine) // len(centers))
        pos, tok = self.propose(centers, per)
        base = torch.tensor(centers, dtype=torch.long).unsqueeze(1).expand(-1, per, -1).clone()  # (C, n, n_tokens)
        base.scatter_(2, pos, tok)
        out, seen = [], {tuple(c) for c in centers}
        for cand in base.reshape(-1, base.shape[-1]).tolist():
            key = tuple(cand)
            if key not in seen:
                seen.add(key)
                out.append(cand)
        return out

    def random_positions(self, c: int, n: int) -> torch.Tensor:
        """``(c, n, n_replace)`` distinct random free positions per candidate."""
        return torch.rand(c, n, self.config.n_tokens, generator=self.gen).argsort(-1)[..., : self.n_replace]

    def combinations(self, center: list[int], center_loss: float, cands: list[list[int]], c_loss: torch.Tensor
                     ) -> list[list[int]]:
        """Up to :attr:`n_combine` sequences applying the best 2, 3, … changes that beat ``center``, at distinct positions."""
        better = sorted(((loss, i) for i, loss in enumerate(c_loss.tolist()) if loss < center_loss))
        seq, used, taken, out = list(center), set(), 0, []
        for _, i in better:
            diff = [j for j, (a, b) in enumerate(zip(center, cands[i])) if a != b]
            if not diff or len(diff) > self.n_replace or used.intersection(diff):
                continue
            for j in diff:
                seq[j] = cands[i][j]
            used.update(diff)
            taken += 1
            if taken >= 2:
                out.append(list(seq))
                if len(out) >= self.n_combine:
                    break
        return out

    def score_candidates(self, cands: list[list[int]]) -> torch.Tensor:
        """Exact losses of a step's candidates (probe sampling overrides this)."""
        return self.score(cands)

    def _run(self) -> str | None:
        pool = [self.initial_free()]
        losses = self.score(pool)
        step = idle = 0
        while True:
            step += 1
            before = self.evaluations
            cands = self.candidates(self.centers(pool))
            if not cands:
                return "done"
            c_loss = self.score_candidates(cands)
            if self.n_combine:
                combos = self.combinations(pool[0], float(losses[0]), cands, c_loss)
                if combos:
                    cands, c_loss = cands + combos, torch.cat([c_loss, self.score(combos)])
            if self.accept == "always":
                finite = torch.isfinite(c_loss)
                if bool(finite.any()):
                    order = torch.argsort(c_loss)[: self.pool_size]
                    order = order[torch.isfinite(c_loss[order])]
                    pool, losses = [cands[i] for i in order.tolist()], c_loss[order]
            else:
                all_pool = pool + cands
                all_loss = torch.cat([losses, c_loss])
                order = torch.argsort(all_loss, stable=True)[: self.pool_size]
                order = order[torch.isfinite(all_loss[order])] if bool(torch.isfinite(all_loss[order]).any()) else order
                pool, losses = [all_pool[i] for i in order.tolist()], all_loss[order]
            self._record(step)
            idle = idle + 1 if self.evaluations == before else 0
            if idle >= IDLE_STEPS:  # every candidate drawn was met before or dropped: the neighbourhood is spent
                return "exhausted"
            why = self._stop()
            if why:
                return why
