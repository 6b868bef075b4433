"""PEZ (Wen et al., 2023): optimize continuous embeddings, evaluate at their nearest tokens."""

from __future__ import annotations

import torch

from fuse.optim.base import Optimizer
from fuse.optim.config import PEZConfig


class PEZ(Optimizer):
    """Hard prompts made easy.

    Continuous prompt embeddings ``P (n_tokens, d)`` (float32) start at the initial tokens. Each step projects
    ``P`` to the nearest allowed tokens (cosine), takes the gradient of the chain's loss at the projected
    embeddings (through the adapters) and applies it to ``P`` with AdamW; the projected tokens are evaluated
    exactly (one evaluation per step; projections whose text does not re-tokenize to the same ids are skipped, and a
    projection met before costs nothing, so the run also stops after ``budget`` steps).
    Options: :class:`~fuse.optim.config.PEZConfig` (published defaults: lr 0.1, weight decay 0.1).
    """

    name = "pez"
    config_class = PEZConfig
    supports_beam = False

    def _run(self):
        prim = self.chain.primary
        E_allowed = torch.nn.functional.normalize(prim.embed(self.allowed).float(), dim=-1)  # (n_allowed, d), once
        P = prim.embed(torch.tensor(self.initial_free(), device=prim.device)).float().clone().requires_grad_()
        opt = torch.optim.AdamW([P], lr=self.config.lr, weight_decay=self.config.weight_decay)
        free_pos = self.free_positions()
        step = 0
        while True:
            step += 1
            with torch.no_grad():
                nearest = (torch.nn.functional.normalize(P, dim=-1) @ E_allowed.T).argmax(-1)
                free = self.allowed_cpu[nearest.cpu()].tolist()
            self.score([free])
            _, _, g = self.evaluator.embedding_gradients([self.full_ids(free)])  # at the projected embeddings
            opt.zero_grad()
            P.grad = g[0, free_pos].to(P)
            opt.step()
            self._record(step)
            why = self._stop()
            if why:
                return why
            if step >= self.config.budget:  # a projection met again costs no evaluation: the steps are bounded too
                return "budget"
