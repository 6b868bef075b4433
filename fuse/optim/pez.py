"""PEZ (Wen et al., 2023): optimize continuous embeddings, evaluate at their nearest tokens."""

from __future__ import annotations

import torch

from fuse.optim.base import Optimizer


class PEZ(Optimizer):
    """Hard prompts made easy.

    Continuous prompt embeddings ``P (n_tokens, d)`` start at random allowed tokens. Each step
    projects ``P`` to the nearest allowed tokens (cosine), takes the gradient of the chain's loss at
    the projected embeddings (through the adapters) and applies it to ``P`` with AdamW; the projected
    tokens are evaluated exactly (one evaluation per step). Published defaults: lr 0.1, weight decay 0.1.
    """

    name = "pez"
    supports_beam = False

    def __init__(self, chain, *, lr: float = 0.1, weight_decay: float = 0.1, **kwargs):
        super().__init__(chain, **kwargs)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr, self.weight_decay = lr, weight_decay

    def _run(self):
        prim = self.chain.primary
        E = prim.embeddings.detach()
        E_allowed = torch.nn.functional.normalize(E[self.allowed], dim=-1)
        P = E[torch.tensor(self.initial_free(), device=E.device)].clone().requires_grad_()
        opt = torch.optim.AdamW([P], lr=self.lr, weight_decay=self.weight_decay)
        free_pos = torch.arange(len(self.prefix_ids), len(self.prefix_ids) + self.n_tokens)
        step = 0
        while True:
            step += 1
            with torch.no_grad():
                nearest = (torch.nn.functional.normalize(P, dim=-1) @ E_allowed.T).argmax(-1)
                free = self.allowed[nearest.cpu()].tolist()
            self.score([free])
            ids = torch.tensor(self.full_ids(free), device=E.device)
            x = E[ids].clone().requires_grad_()
            loss, _ = self.chain.loss_from_embeds(ids, x)
            (g,) = torch.autograd.grad(loss, x)
            opt.zero_grad()
            P.grad = g[free_pos].to(P)
            opt.step()
            self._record(step)
            why = self._stop()
            if why:
                return why
