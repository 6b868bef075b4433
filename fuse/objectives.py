"""Loss terms computed by frozen backbones, each from ``inputs_embeds`` (differentiable) or from text (exact).

Every objective maps a batch to a ``(B,)`` loss (lower is better) and knows its backbone. The
exact path (:meth:`Objective.loss_texts`) tokenizes each text with the backbone's own tokenizer,
one forward per batch; the differentiable path (:meth:`Objective.loss`) takes embeddings and ids
(from the bridge for a secondary model, or the primary's own).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from fuse.batching import encode_batch

__all__ = ["Objective", "Fluency", "Continuation", "Similarity", "ClassifierLabel", "ImageText", "as_objective"]


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


class Similarity(Objective):
    """``1 − cos`` between an encoder's sentence embedding and a target text or embedding."""

    name = "1-cos"

    def __init__(self, backbone, target: str | torch.Tensor):
        super().__init__(backbone)
        if isinstance(target, str):
            if not target.strip():
                raise ValueError("target text is empty; give the text the prompt should be similar to")
            with torch.no_grad():
                target = backbone.embed_text(target)[0]
        self.target = torch.as_tensor(target).detach().to(backbone.device)

    def loss(self, inputs_embeds, ids, attention_mask):
        return self.backbone.cosine_loss(inputs_embeds, self.target, attention_mask)


class ClassifierLabel(Objective):
    """``−log p(label)`` under a classifier (``ClassifierBackbone`` or ``ZeroShotClassifier``)."""

    name = "label_nll"

    def __init__(self, backbone, label: str | int):
        super().__init__(backbone)
        self.label = backbone.labels[backbone.label_index(label)]

    def loss(self, inputs_embeds, ids, attention_mask):
        return -self.backbone.label_logprob(inputs_embeds, attention_mask, self.label)


class ImageText(Objective):
    """``1 − cos(text, image)`` under an image–text model; ``image_features`` precomputed ``(D,)`` or ``(B, D)``."""

    name = "1-cos(image)"

    def __init__(self, backbone, image_features: torch.Tensor):
        super().__init__(backbone)
        self.image_features = image_features.detach()

    def loss(self, inputs_embeds, ids, attention_mask):
        return self.backbone.loss(inputs_embeds, ids, attention_mask, self.image_features)


def as_objective(thing, *, target_text: str | None = None, label: str | None = None) -> Objective:
    """An objective for a backbone by its kind: LM → fluency, encoder → similarity to ``target_text``,
    classifier → ``label``."""
    if isinstance(thing, Objective):
        return thing
    kind = getattr(thing, "kind", None)
    if kind == "causal_lm":
        return Fluency(thing)
    if kind == "encoder":
        if target_text is None:
            raise ValueError(f"{thing.name} is a text encoder: give target_text to compare the prompt against")
        return Similarity(thing, target_text)
    if kind == "classifier":
        if label is None:
            raise ValueError(f"{thing.name} is a classifier: give the label to steer towards")
        return ClassifierLabel(thing, label)
    raise ValueError(f"cannot make an objective from {thing!r}: pass a fuse Objective or a backbone from fuse.load")
