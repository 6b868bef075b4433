"""AutoDAN-style left-to-right growth (Zhu et al., 2023): one new token per step, chosen from the
objective's gradient and the primary LM's own next-token log-probabilities, evaluated exactly."""

from __future__ import annotations

import torch

from fuse.optim.base import Optimizer


class AutoDAN(Optimizer):
    """Grow the free tokens left to right.

    At each step every beam gets a new last position. Candidate tokens there are ranked by
    ``−∇ / std(∇) + lm_weight · log p_LM(token | text so far)`` (the gradient of the chain's loss with
    respect to the new position's one-hot, through the adapters; the LM term keeps the text readable
    and needs a causal-LM primary). The top ``batch_size / beams`` of each beam are evaluated
    exactly and the best ``beam_width`` sequences are kept. ``n_tokens`` steps, or until the budget.

    Args:
        lm_weight: weight of the LM log-probability in the ranking (0: gradient only).
        use_gradient: rank by the gradient at all (``False``: LM logits only, the control that
            switches the cross-model gradient off).
        complete_only: the result is the best prompt of exactly ``n_tokens`` tokens (the shorter
            prompts met while growing are not results unless the budget ends first, with a
            warning). ``False`` (default, as in AutoDAN): the best prompt of any length up to
            ``n_tokens``, so growth may stop where the objective stops improving. A fluency term
            favours short prompts (a one-token text has no predicted token), so ask for
            ``complete_only=True`` when the length matters.
    """

    name = "autodan"

    def __init__(self, chain, *, lm_weight: float = 1.0, use_gradient: bool = True, complete_only: bool = False,
                 **kwargs):
        super().__init__(chain, **kwargs)
        self.complete_only = bool(complete_only)
        if lm_weight < 0:
            raise ValueError(f"lm_weight must be >= 0, got {lm_weight}")
        if not use_gradient and lm_weight == 0:
            raise ValueError("with use_gradient=False the LM logits are the only ranking: lm_weight must be > 0")
        if lm_weight > 0 and getattr(chain.primary, "kind", None) != "causal_lm":
            raise ValueError("lm_weight > 0 needs a causal-LM primary (its next-token logits rank candidates)")
        self.lm_weight, self.use_gradient = lm_weight, use_gradient

    def _rank(self, free: list[int]) -> torch.Tensor:
        """Scores ``(len(allowed),)`` for the token at the new last free position."""
        placeholder = int(self.allowed[0])
        ids = self.full_ids(free + [placeholder])
        pos = len(self.prefix_ids) + len(free)
        score = torch.zeros(len(self.allowed))
        if self.use_gradient:
            _, _, g = self.chain.gradient(ids)
            g = g[pos, self.allowed].float().cpu()
            score -= g / g.std().clamp_min(1e-12)
        ctx = ids[:pos] or [i for i in (self.chain.primary.tokenizer.bos_token_id,
                                         self.chain.primary.tokenizer.eos_token_id) if i is not None][:1]
        if self.lm_weight > 0 and ctx:  # with no context token at all, the LM cannot rank the first token
            with torch.no_grad():
                prim = self.chain.primary
                x = prim.embed(torch.tensor(ctx, dtype=torch.long, device=prim.device))[None]
                lp = torch.log_softmax(prim.logits(x)[0, -1].float(), -1)[self.allowed.to(prim.device)].cpu()
            score += self.lm_weight * lp
        return score

    def _run(self):
        beams: list[list[int]] = [[]]
        for step in range(1, self.n_tokens + 1):
            per = max(1, self.batch_size // len(beams))
            cands = []
            for free in beams:
                top = self._rank(free).topk(min(per, len(self.allowed))).indices
                cands += [free + [int(self.allowed[i])] for i in top]
            losses = self.score(cands)
            order = torch.argsort(losses)[: self.beam_width]
            beams = [cands[i] for i in order.tolist() if torch.isfinite(losses[i])] or beams
            self._record(step)
            why = self._stop()
            if why:
                return why
        return "done"
