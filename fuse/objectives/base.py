"""The loss-term interface: a ``(B,)`` loss from a frozen backbone, from embeddings or from text."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from fuse.models.batching import encode_batch


class Objective(ABC):
    """A differentiable loss from one frozen backbone."""

    name = "objective"

    def __init__(self, backbone):
        self.backbone = backbone

    @abstractmethod
    def loss(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` loss from ``inputs_embeds (B, L, d)``, ``ids (B, L)`` and ``attention_mask (B, L)``."""

    def loss_texts(self, texts: list[str]) -> torch.Tensor:
        """Exact loss of texts as the backbone sees them in use (its own tokenization), ``(B,)``."""
        ids, mask = encode_batch(self.backbone.tokenizer, texts, self.backbone.device)
        return self.loss(self.backbone.embed(ids), ids, mask)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backbone.name!r})"
