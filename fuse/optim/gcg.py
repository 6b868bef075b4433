"""GCG (Zou et al., 2023): top-k token swaps from one-hot gradients, evaluated exactly in batches."""

from __future__ import annotations

import torch

from fuse.optim.config import GCGConfig
from fuse.optim.probe import ProbeSampling
from fuse.optim.search import SwapSearch


class GCG(SwapSearch):
    """Greedy coordinate gradient.

    Each step, the gradient of the chain's loss with respect to the one-hot tokens of each pool sequence (through
    the adapters for secondary models; one batched pass for all of them, restricted to the free positions and the
    allowed tokens) ranks, per free position, the ``top_k`` tokens whose swap lowers the loss most to first order.
    ``batch_size`` candidates, each swapping ``n_replace`` random positions to random tokens among their top-k,
    are scored exactly (dropping those whose text does not re-tokenize to the same ids) and the pool is updated
    (:mod:`fuse.optim.search`). Options: :class:`~fuse.optim.config.GCGConfig`.

    Example:
        >>> res = GCG(chain, n_tokens=20, budget=640, batch_size=64, seed=0).run()     # doctest: +SKIP
    """

    name = "gcg"
    config_class = GCGConfig

    def top_tokens(self, centers: list[list[int]]) -> torch.Tensor:
        """``(C, n_free, top_k)`` allowed token ids with the most negative gradient at each free position (CPU).

        The last step's answer is kept: when no candidate beat the center (``accept="improve"``), the next step
        proposes around the same sequence and its gradient is not computed again.
        """
        key = tuple(tuple(c) for c in centers)
        memo = getattr(self, "_top_memo", None)
        if memo is not None and memo[0] == key:
            return memo[1]
        _, _, g = self.evaluator.gradients([self.full_ids(c) for c in centers], positions=self.free_positions(),
                                           tokens=self.allowed)
        k = min(self.config.top_k, g.shape[-1])
        top = self.allowed_cpu[(-g).topk(k, dim=-1).indices.cpu()]
        self._top_memo = (key, top)
        return top

    def _reset(self) -> None:
        super()._reset()
        self._top_memo = None

    def propose(self, centers, n):
        top = self.top_tokens(centers)                                       # (C, n_free, k)
        C, _, k = top.shape
        pos = self.random_positions(C, n)                                   # (C, n, r)
        pick = torch.randint(k, (C, n, self.n_replace), generator=self.gen)
        tok = top.gather(1, pos.reshape(C, -1, 1).expand(-1, -1, k)).reshape(C, n, self.n_replace, k)
        return pos, tok.gather(-1, pick.unsqueeze(-1)).squeeze(-1)

    def score_candidates(self, cands):
        if self.config.cascade is not None:
            return self.evaluator.score(cands, cascade=float(self.config.cascade))
        if self.config.probe is None:
            return self.score(cands)
        return ProbeSampling(self.config.probe).score(self.evaluator, cands, self.gen)
