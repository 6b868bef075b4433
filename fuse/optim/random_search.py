"""Random search: the control. Same swaps and exact evaluation as GCG, tokens drawn uniformly."""

from __future__ import annotations

import torch

from fuse.optim.search import SwapSearch


class RandomSearch(SwapSearch):
    """Each step: ``batch_size`` single-token swaps at random positions with random allowed tokens."""

    name = "random"

    def _run(self):
        def proposals(_bi, free, n):
            pos = torch.randint(len(free), (n,), generator=self.gen)
            tok = self.allowed[torch.randint(len(self.allowed), (n,), generator=self.gen)]
            return pos, tok

        return self._swap_search(proposals)
