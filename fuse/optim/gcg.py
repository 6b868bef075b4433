"""GCG (Zou et al., 2023): top-k token swaps from one-hot gradients, evaluated exactly in batches."""

from __future__ import annotations

import torch

from fuse.optim.search import SwapSearch


class GCG(SwapSearch):
    """Greedy coordinate gradient.

    Each step, for every beam: the gradient of the chain's loss with respect to the one-hot tokens
    (through the adapters for secondary models) ranks, per free position, the ``top_k`` tokens whose
    swap lowers the loss most to first order; ``batch_size`` candidates, each one swap at a random
    position to a random token among its top-k, are evaluated exactly; the best are kept.

    Args:
        top_k: candidate tokens per position (published default 256).
    """

    name = "gcg"

    def __init__(self, chain, *, top_k: int = 256, **kwargs):
        super().__init__(chain, **kwargs)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k

    def top_tokens(self, free: list[int]) -> torch.Tensor:
        """``(n_free, top_k)`` allowed tokens with the most negative gradient at each free position."""
        ids = self.full_ids(free)
        _, _, g = self.chain.gradient(ids)
        g = g[self.free_slice][:, self.allowed]
        k = min(self.top_k, g.shape[1])
        return self.allowed[(-g).topk(k, dim=1).indices.cpu()]

    def _run(self):
        cache: dict[tuple, torch.Tensor] = {}

        def proposals(_bi, free, n):
            key = tuple(free)
            if key not in cache:
                cache.clear()
                cache[key] = self.top_tokens(free)
            top = cache[key]
            pos = torch.randint(len(free), (n,), generator=self.gen)
            pick = torch.randint(top.shape[1], (n,), generator=self.gen)
            return pos, top[pos, pick]

        return self._swap_search(proposals)
