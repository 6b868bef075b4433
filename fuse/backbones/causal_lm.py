"""Causal language models (any ``AutoModelForCausalLM``) as differentiable scorers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fuse.backbones.base import Backbone


class CausalLMBackbone(Backbone):
    """A frozen causal LM. Losses take ``inputs_embeds`` so gradients reach the prompt."""

    kind = "causal_lm"

    def logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``(B, L, V)`` for ``inputs_embeds (B, L, d)``."""
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits

    def token_nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position NLL ``(B, L-1)`` of ``ids[:, 1:]`` given the embeddings before them (0 where masked)."""
        logits = self.logits(inputs_embeds, attention_mask)[:, :-1].float()
        target = ids[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        if attention_mask is not None:
            nll = nll * attention_mask[:, 1:].to(nll.dtype)
        return nll

    def nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per sequence ``(B,)`` (nats per predicted token)."""
        tok = self.token_nll(inputs_embeds, ids, attention_mask)
        count = (attention_mask[:, 1:].sum(1) if attention_mask is not None else torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)).clamp_min(1)
        return tok.sum(1) / count.to(tok.dtype)

    def text_nll(self, texts: str | list[str]) -> torch.Tensor:
        """Mean NLL per text ``(B,)`` under the model's own tokenization (BOS added where the tokenizer does)."""
        batch = self.encode([texts] if isinstance(texts, str) else list(texts), padding=True)
        return self.nll(self.embed(batch["input_ids"]), batch["input_ids"], batch["attention_mask"])
