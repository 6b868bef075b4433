"""Causal-LM losses: fluency (NLL of the text) and the likelihood of a continuation."""

from __future__ import annotations

import math

import torch

from fuse.objectives.base import Objective


class Fluency(Objective):
    """NLL of the text under a causal LM.

    ``reduction="mean"`` (default): nats per predicted token, the usual fluency score.
    ``reduction="sum"``: total nats, ``−log p(text)`` given its first token. Use the sum to compare
    texts that the LM tokenizes into different numbers of tokens (as every swap made in another
    model's vocabulary may): the per-token mean rewards a text for gaining easy tokens.
    """

    name = "nll"

    def __init__(self, backbone, reduction: str = "mean"):
        super().__init__(backbone)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def loss(self, inputs_embeds, ids, attention_mask, state=None):
        if self.reduction == "mean":
            return self.backbone.nll(inputs_embeds, ids, attention_mask, state)
        return self.backbone.token_nll(inputs_embeds, ids, attention_mask, state).sum(1)

    def score_ids(self, ids, attention_mask, batch_size: int = 64, state=None):
        nll = self.backbone.score_tokens(ids, attention_mask, batch_size=batch_size, state=state).nll
        total = nll.sum(1)
        if self.reduction == "mean":
            total = total / attention_mask[:, 1:].sum(1).clamp_min(1).to(total)
        return total, None


class Continuation(Objective):
    """How well the text makes the LM continue with a fixed ``continuation`` (the GCG / nanoGCG task).

    ``loss="ce"`` (default): ``−log p(continuation | text)``, mean per continuation token.
    ``loss="mellowmax"``: ``mellowmax_α(−logit of each continuation token)`` (nanoGCG's option), which rewards raising
    every target token's logit rather than its probability. :meth:`score_ids` also says, per text, whether greedy
    decoding would produce the continuation exactly (the early-stop test).
    """

    name = "continuation_nll"
    has_goal = True
    LOSSES = ("ce", "mellowmax")

    def __init__(self, backbone, continuation: str, *, loss: str = "ce", mellowmax_alpha: float = 1.0):
        super().__init__(backbone)
        if not isinstance(continuation, str) or not continuation.strip():
            raise ValueError("continuation must be non-empty text")
        if loss not in self.LOSSES:
            raise ValueError(f"unknown continuation loss {loss!r}; use one of {self.LOSSES}")
        if not mellowmax_alpha > 0:
            raise ValueError(f"mellowmax_alpha must be > 0, got {mellowmax_alpha}")
        self.continuation, self.kind, self.mellowmax_alpha = continuation, loss, float(mellowmax_alpha)
        if loss == "mellowmax":
            self.name = "continuation_mellowmax"
        self.cont_ids = torch.tensor(backbone.tokenizer(continuation, add_special_tokens=False)["input_ids"],
                                     device=backbone.device)
        if self.cont_ids.numel() == 0:
            raise ValueError(f"the continuation {continuation!r} tokenizes to no tokens")

    def _append(self, ids: torch.Tensor, attention_mask: torch.Tensor, inputs_embeds: torch.Tensor | None = None):
        """Place the continuation right after each row's last real token: ``(ids, mask, weights, embeds)``."""
        B, L = ids.shape
        n = self.cont_ids.numel()
        cont = self.cont_ids.to(ids.device)
        lengths = attention_mask.sum(1)
        if bool((lengths == L).all()):  # no padding: one concatenation
            full = torch.cat([ids, cont.expand(B, n)], 1)
            mask = torch.ones_like(full)
            weights = torch.zeros(B, L + n - 1, device=ids.device)
            weights[:, L - 1 :] = 1.0
            emb = None
            if inputs_embeds is not None:
                emb = torch.cat([inputs_embeds, self.backbone.embed(cont).to(inputs_embeds).expand(B, n, -1)], 1)
            return full, mask, weights, emb
        total = L + n
        full = ids.new_zeros(B, total)
        mask = attention_mask.new_zeros(B, total)
        weights = torch.zeros(B, total - 1, device=ids.device)
        emb = None if inputs_embeds is None else inputs_embeds.new_zeros(B, total, inputs_embeds.shape[-1])
        cont_emb = None if inputs_embeds is None else self.backbone.embed(cont).to(inputs_embeds)
        for b in range(B):
            m = int(lengths[b])
            full[b, :m], full[b, m : m + n] = ids[b, :m], cont
            mask[b, : m + n] = 1
            weights[b, m - 1 : m + n - 1] = 1.0
            if emb is not None:
                emb[b, :m] = inputs_embeds[b, :m]
                emb[b, m : m + n] = cont_emb
        return full, mask, weights, emb

    def _mellowmax(self, logits_of_targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        a, n = self.mellowmax_alpha, self.cont_ids.numel()
        t = torch.where(weights > 0, -a * logits_of_targets, torch.full_like(logits_of_targets, -float("inf")))
        return (torch.logsumexp(t, 1) - math.log(n)) / a

    def loss(self, inputs_embeds, ids, attention_mask, state=None):
        full, mask, weights, emb = self._append(ids, attention_mask, inputs_embeds)
        # Only the continuation's positions are scored, and its tokens are constants: the output head runs at
        # those positions alone (logits_to_keep), and no target path is needed (module docstring of causal_lm).
        cols = (weights > 0).any(0).nonzero().squeeze(-1)
        logits = self.backbone.logits_at(emb, mask, cols, state)                     # (B, n_cols, V)
        target = full[:, cols + 1]
        w = weights[:, cols]
        if self.kind == "mellowmax":
            z = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            z = z if z.dtype == torch.float64 else z.float()
            return self._mellowmax(z, w)
        z = logits if logits.dtype == torch.float64 else logits.float()
        tok = torch.logsumexp(z, -1) - z.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return (tok * w.to(tok)).sum(1) / self.cont_ids.numel()

    def score_ids(self, ids, attention_mask, batch_size: int = 64, state=None):
        full, mask, weights, _ = self._append(ids, attention_mask)
        s = self.backbone.score_tokens(full, mask, need=weights > 0, batch_size=batch_size, state=state)
        on = weights > 0
        match = (s.argmax | ~on).all(1)
        if self.kind == "mellowmax":
            return self._mellowmax(s.logit, weights), match
        return (s.nll * weights).sum(1) / self.cont_ids.numel(), match
