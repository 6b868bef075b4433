"""AutoDAN-style left-to-right growth (Zhu et al., 2023): one new token per step, chosen from the
objective's gradient and the primary LM's own next-token log-probabilities, evaluated exactly."""

from __future__ import annotations

import contextlib

import torch

from fuse.optim.base import Optimizer
from fuse.optim.config import AutoDANConfig


class AutoDAN(Optimizer):
    """Grow the free tokens left to right.

    At each step every beam gets a new last position. Candidate tokens there are ranked by
    ``−∇ / std(∇) + lm_weight · log p_LM(token | text so far)`` (the gradient of the chain's loss with
    respect to the new position's one-hot, through the adapters; the LM term keeps the text readable
    and needs a causal-LM primary). One batched forward/backward serves every beam, and the LM's
    next-token logits are read from that same forward when the chain scores the primary itself. The top
    ``batch_size / beams`` of each beam are evaluated exactly and the best ``beam_width`` sequences are kept.
    ``n_tokens`` steps, or until the budget. Options: :class:`~fuse.optim.config.AutoDANConfig`.
    """

    name = "autodan"
    config_class = AutoDANConfig

    def __init__(self, chain, config=None, **kwargs):
        super().__init__(chain, config, **kwargs)
        if self.lm_weight > 0 and getattr(chain.primary, "kind", None) != "causal_lm":
            raise ValueError("lm_weight > 0 needs a causal-LM primary (its next-token logits rank candidates)")

    def _lm_logprobs(self, beams: list[list[int]], pos: int) -> torch.Tensor:
        """``(B, len(allowed))`` next-token log-probabilities after each beam's text (a separate no-grad forward)."""
        prim = self.chain.primary
        rows = []
        for free in beams:
            ctx = self.full_ids(free)[:pos] or [i for i in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id)
                                                if i is not None][:1]
            if not ctx:  # with no context token at all, the LM cannot rank the first token
                rows.append(torch.zeros(len(self.allowed), device=prim.device))
                continue
            with torch.no_grad():
                x = prim.embed(torch.tensor(ctx, dtype=torch.long, device=prim.device))[None]
                rows.append(torch.log_softmax(prim.logits(x)[0, -1].float(), -1)[self.allowed])
        return torch.stack(rows)

    def _rank(self, beams: list[list[int]]) -> torch.Tensor:
        """Scores ``(B, len(allowed))`` for the token at each beam's new last free position (on the primary's device)."""
        prim = self.chain.primary
        pos = len(self.prefix_ids) + len(beams[0])
        score = torch.zeros(len(beams), len(self.allowed), device=prim.device)
        lp = None
        if self.use_gradient:
            placeholder = int(self.allowed_cpu[0])
            seqs = [self.full_ids(free + [placeholder]) for free in beams]
            reuse = self.lm_weight > 0 and pos > 0 and any(t.bridge is None for t in self.chain.terms)
            rec = prim.recording_logits(pos - 1) if reuse else contextlib.nullcontext()
            with rec:
                _, _, g = self.chain.gradients(seqs, positions=[pos], tokens=self.allowed)
            g = g[:, 0].to(score.device)
            score -= g / g.std(dim=-1, keepdim=True).clamp_min(1e-12)
            if reuse and getattr(prim, "recorded", None) is not None:
                lp = torch.log_softmax(prim.recorded.float(), -1)[:, self.allowed]
        if self.lm_weight > 0:
            if lp is None:
                lp = self._lm_logprobs(beams, pos)
            score += self.lm_weight * lp.to(score.device)
        return score

    def _run(self):
        beams: list[list[int]] = [[]]
        for step in range(1, self.n_tokens + 1):
            per = max(1, self.batch_size // len(beams))
            top = self._rank(beams).topk(min(per, len(self.allowed)), dim=-1).indices.cpu()
            cands = [free + [int(self.allowed_cpu[i])] for free, row in zip(beams, top) for i in row.tolist()]
            losses = self.score(cands)
            order = torch.argsort(losses, stable=True)[: self.beam_width]
            beams = [cands[i] for i in order.tolist() if torch.isfinite(losses[i])] or beams
            self._record(step)
            why = self._stop()
            if why:
                return why
            if len(beams[0]) < step:  # nothing new survived the round trip: the beams could not grow
                return "done"
        return "done"
