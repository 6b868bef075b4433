"""Text encoders (any ``AutoModel``) mean-pooled like sentence-transformers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fuse.models.backbones.base import Backbone


class EncoderBackbone(Backbone):
    """A frozen encoder whose sentence embedding is the mask-weighted mean of its last hidden state."""

    kind = "encoder"

    def sentence_embedding(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, d_out)`` mean-pooled, L2-normalised sentence embeddings."""
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], device=inputs_embeds.device, dtype=torch.long)
        hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    def embed_text(self, texts: str | list[str]) -> torch.Tensor:
        batch = self.encode([texts] if isinstance(texts, str) else list(texts), padding=True)
        return self.sentence_embedding(self.embed(batch["input_ids"]), batch["attention_mask"])

    def cosine_loss(self, inputs_embeds: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``1 − cos(sentence, target)`` per sequence ``(B,)``; ``target`` is ``(d_out,)`` or ``(B, d_out)``."""
        emb = self.sentence_embedding(inputs_embeds, attention_mask)
        return 1.0 - (emb * F.normalize(target.to(emb), dim=-1)).sum(-1)
