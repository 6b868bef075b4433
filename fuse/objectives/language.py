"""Causal-LM losses: fluency (NLL of the text) and the likelihood of a continuation."""

from __future__ import annotations

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

    def loss(self, inputs_embeds, ids, attention_mask):
        if self.reduction == "mean":
            return self.backbone.nll(inputs_embeds, ids, attention_mask)
        return self.backbone.token_nll(inputs_embeds, ids, attention_mask).sum(1)


class Continuation(Objective):
    """−log p(continuation | text) under a causal LM, mean per continuation token."""

    name = "continuation_nll"

    def __init__(self, backbone, continuation: str):
        super().__init__(backbone)
        if not isinstance(continuation, str) or not continuation.strip():
            raise ValueError("continuation must be non-empty text")
        self.cont_ids = torch.tensor(backbone.tokenizer(continuation, add_special_tokens=False)["input_ids"], device=backbone.device)

    def loss(self, inputs_embeds, ids, attention_mask):
        B, L = ids.shape
        n = self.cont_ids.numel()
        lengths = attention_mask.sum(1)
        # place the continuation right after each sequence's last real token
        total = L + n
        emb = inputs_embeds.new_zeros(B, total, inputs_embeds.shape[-1])
        full_ids = ids.new_zeros(B, total)
        mask = attention_mask.new_zeros(B, total)
        cont = self.backbone.embed(self.cont_ids).to(inputs_embeds)
        weights = torch.zeros(B, total - 1, device=ids.device)
        for b in range(B):
            m = int(lengths[b])
            emb[b, :m] = inputs_embeds[b, :m]
            emb[b, m : m + n] = cont
            full_ids[b, :m], full_ids[b, m : m + n] = ids[b, :m], self.cont_ids
            mask[b, : m + n] = 1
            weights[b, m - 1 : m + n - 1] = 1.0
        tok = self.backbone.token_nll(emb, full_ids, mask)
        return (tok * weights).sum(1) / n
