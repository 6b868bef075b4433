"""Random search: the control. Same swaps and exact evaluation as GCG, tokens drawn uniformly."""

from __future__ import annotations

import torch

from fuse.optim.config import RandomSearchConfig
from fuse.optim.search import SwapSearch


class RandomSearch(SwapSearch):
    """Each step: ``batch_size`` candidates, each with ``n_replace`` random positions set to random allowed tokens."""

    name = "random"
    config_class = RandomSearchConfig

    def propose(self, centers, n):
        C = len(centers)
        pos = self.random_positions(C, n)
        tok = self.allowed_cpu[torch.randint(len(self.allowed_cpu), (C, n, self.n_replace), generator=self.gen)]
        return pos, tok
