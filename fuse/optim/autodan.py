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
    next-token logits are read from that same forward when a Fluency term on the primary runs it. The top
    ``batch_size / beams`` of each beam are evaluated exactly and the best ``beam_width`` sequences are kept.
    ``n_tokens`` steps, or until the budget. Options: :class:`~fuse.optim.config.AutoDANConfig`.
    """

    name = "autodan"
    config_class = AutoDANConfig

    def __init__(self, chain, config=None, **kwargs):
        super().__init__(chain, config, **kwargs)
        if self.config.lm_weight > 0 and getattr(chain.primary, "kind", None) != "causal_lm":
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

    def fluency_at_end(self) -> bool:
        """Whether the primary's own terms are all :class:`~fuse.objectives.Fluency` and the new token is the last.

        Then one no-grad forward of the beams serves the primary entirely (:meth:`_own_gradient`): the new token
        is only a *target* (no later token reads it), so its one-hot gradient is the target path alone,
        ``−(w / n) · (A h_{L−1}) · E[v]`` (``n`` predicted tokens for the mean, 1 for the sum; times the soft-cap
        derivative where logits are soft-capped: :meth:`CausalLMBackbone.target_swap_scores
        <fuse.models.backbones.causal_lm.CausalLMBackbone.target_swap_scores>`), and every candidate's exact NLL is
        its beam's plus ``−log p(v | beam)`` (:meth:`_known_values`). Only the other models' terms need a backward
        pass and a scoring pass.
        """
        from fuse.objectives.language import Fluency

        prim = self.chain.primary
        own = [t for t in self.chain.terms if t.on_primary]
        return (not self.tail_ids and getattr(prim, "kind", None) == "causal_lm" and all(type(t.objective) is Fluency
                for t in own) and prim.model.get_output_embeddings() is not None)

    def _own_gradient(self, beams: list[list[int]], pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(one-hot gradient of the primary's Fluency terms (B, len(allowed)), next-token log-probs (B, V))`` at ``pos``.

        Equal (to rounding) to what :meth:`Chain.gradients` gives for those terms at the sequences' last position
        (tested against it), from one no-grad forward of the beams without the new token.
        """
        prim = self.chain.primary
        ids = torch.tensor([self.full_ids(free)[:pos] for free in beams], dtype=torch.long, device=prim.device)
        z, h = prim.next_token_state(ids)
        g = torch.zeros(len(beams), len(self.allowed), device=prim.device)
        own = [t for t in self.chain.terms if t.on_primary]
        if own and self.config.use_gradient and prim.target_gradient:
            s = prim.target_swap_scores(h, self.allowed, z[:, int(self.allowed_cpu[0])], self.state.lm()).to(g)  # the placeholder's logit
            for t in own:
                n = pos if t.objective.reduction == "mean" else 1  # tokens predicted in a sequence of pos + 1
                g -= (t.weight / n) * s
        return g, torch.log_softmax(z, -1)

    def candidate_scores(self, beams: list[list[int]]) -> torch.Tensor:
        """Scores ``(B, len(allowed))`` (higher is better) of the token at each beam's new last free position, on
        the primary's device: what :meth:`run` ranks candidates by."""
        return self._rank(beams)[0]

    def _rank(self, beams: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`candidate_scores` and, when the fast path (:meth:`fluency_at_end`) computed them, the primary's
        next-token log-probabilities ``(B, V)`` after each beam (else ``None``)."""
        prim = self.chain.primary
        pos = len(self.prefix_ids) + len(beams[0])
        score = torch.zeros(len(beams), len(self.allowed), device=prim.device)
        lp, next_logprobs = None, None
        if pos > 0 and self.fluency_at_end():
            # the fast path: one no-grad forward of the primary; a backward pass through the other models only
            g, next_logprobs = self._own_gradient(beams, pos)
            lp = next_logprobs[:, self.allowed]
            if self.config.use_gradient:
                bridged = [j for j, t in enumerate(self.chain.terms) if not t.on_primary]
                if bridged:
                    placeholder = int(self.allowed_cpu[0])
                    _, _, gb = self.evaluator.gradients([self.full_ids(free + [placeholder]) for free in beams],
                                                        positions=[pos], tokens=self.allowed,
                                                        chain=self.chain.subset(bridged))
                    g = g + gb[:, 0].to(g)
                score -= g / g.std(dim=-1, keepdim=True).clamp_min(1e-12)
        elif self.config.use_gradient:
            placeholder = int(self.allowed_cpu[0])
            seqs = [self.full_ids(free + [placeholder]) for free in beams]
            reuse = self.config.lm_weight > 0 and pos > 0 and any(t.on_primary for t in self.chain.terms)
            own = self.state.lm()
            with own.recording_logits(pos - 1) if reuse else contextlib.nullcontext():
                _, _, g = self.evaluator.gradients(seqs, positions=[pos], tokens=self.allowed)
            g = g[:, 0].to(score.device)
            score -= g / g.std(dim=-1, keepdim=True).clamp_min(1e-12)
            if reuse and own.recorded is not None:
                lp = torch.log_softmax(own.recorded.float(), -1)[:, self.allowed]
        if self.config.lm_weight > 0:
            if lp is None:
                lp = self._lm_logprobs(beams, pos)
            score += self.config.lm_weight * lp.to(score.device)
        return score, next_logprobs

    def _known_values(self, beams: list[list[int]], next_logprobs: torch.Tensor | None):
        """For :meth:`score`: the exact values of the primary's Fluency terms of candidates ``beam + [v]``, from each
        beam's cached value and ``−log p(v | beam)`` — ``None`` (score everything) when the fast path is off or a
        beam's own values are not cached (the first step's empty beam)."""
        parts = [self.evaluator.scored.get(tuple(b)) for b in beams]
        if next_logprobs is None or any(p is None for p in parts):
            return None
        rows = {tuple(b): i for i, b in enumerate(beams)}
        n = len(self.prefix_ids) + len(beams[0])  # tokens of a beam's sequence; it predicts n − 1 of them
        own = [(j, t) for j, t in enumerate(self.chain.terms) if t.on_primary]
        lp = next_logprobs.float().cpu()

        def known(frees: list[list[int]]) -> dict[int, torch.Tensor]:
            out = {}
            for j, t in own:
                vals = []
                for free in frees:
                    b = rows[tuple(free[:-1])]
                    before, nll = parts[b][1][j], -float(lp[b, free[-1]])
                    vals.append((before * (n - 1) + nll) / n if t.objective.reduction == "mean" else before + nll)
                out[j] = torch.tensor(vals, dtype=torch.float32, device=self.chain.device)
            return out

        return known

    def _run(self):
        beams: list[list[int]] = [[]]
        for step in range(1, self.config.n_tokens + 1):
            per = max(1, self.config.batch_size // len(beams))
            scores, next_logprobs = self._rank(beams)
            top = scores.topk(min(per, len(self.allowed)), dim=-1).indices.cpu()
            cands = [free + [int(self.allowed_cpu[i])] for free, row in zip(beams, top) for i in row.tolist()]
            losses = self.score(cands, known=self._known_values(beams, next_logprobs))
            order = torch.argsort(losses, stable=True)[: self.pool_width]
            beams = [cands[i] for i in order.tolist() if torch.isfinite(losses[i])] or beams
            self._record(step)
            why = self._stop()
            if why:
                return why
            if len(beams[0]) < step:  # nothing new survived the round trip: the beams could not grow
                return "done"
        return "done"
