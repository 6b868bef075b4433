"""Greedy and beam search over token swaps, shared by the swap-based optimizers (GCG, random search).

Each step proposes swaps around every beam (``proposals(beam_index, free, n) -> (positions, tokens)``),
scores the new candidates exactly, and keeps the ``beam_width`` best of beams and candidates together;
``beam_width == 1`` is greedy search.
"""

from __future__ import annotations

import torch

from fuse.optim.base import Optimizer


class SwapSearch(Optimizer):
    """An optimizer whose step is: propose token swaps around each beam, keep the best (greedy or beam)."""

    def _swap_candidates(self, beams: list[list[int]], proposals) -> list[list[int]]:
        """``proposals(beam_index, free) -> (positions (n,), tokens (n,))`` → candidate lists (deduplicated)."""
        cands, seen = [], set(tuple(b) for b in beams)
        per = max(1, self.batch_size // len(beams))
        for bi, free in enumerate(beams):
            pos, tok = proposals(bi, free, per)
            for p, t in zip(pos.tolist(), tok.tolist()):
                c = list(free)
                c[p] = t
                if tuple(c) not in seen:
                    seen.add(tuple(c))
                    cands.append(c)
        return cands

    def _swap_search(self, proposals) -> str | None:
        """Shared loop of GCG and random search: propose swaps around each beam, keep the best."""
        beams = [self.initial_free() for _ in range(self.beam_width)]
        losses = self.score(beams)
        step = 0
        while True:
            step += 1
            cands = self._swap_candidates(beams, proposals)
            if not cands:
                return "done"
            c_loss = self.score(cands)
            pool = beams + cands
            pool_loss = torch.cat([losses, c_loss])
            order = torch.argsort(pool_loss)[: self.beam_width]
            beams, losses = [pool[i] for i in order.tolist()], pool_loss[order]
            self._record(step)
            why = self._stop()
            if why:
                return why
