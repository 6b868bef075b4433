"""Sequence classifiers as differentiable scorers: any ``AutoModelForSequenceClassification``, and a
zero-shot classifier built from a text encoder and label descriptions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fuse.models.backbones.base import Backbone
from fuse.models.backbones.encoder import EncoderBackbone


class ClassifierBackbone(Backbone):
    """A frozen ``AutoModelForSequenceClassification``; labels from ``config.id2label``."""

    kind = "classifier"

    @property
    def labels(self) -> list[str]:
        id2label = getattr(self.model.config, "id2label", None) or {}
        return [str(id2label.get(i, i)) for i in range(self.model.config.num_labels)]

    def label_index(self, label: str | int) -> int:
        labels = self.labels
        if isinstance(label, int):
            if not 0 <= label < len(labels):
                raise ValueError(f"label index {label} out of range; {self.name} has {len(labels)} labels: {labels}")
            return label
        lowered = [x.lower() for x in labels]
        if str(label).lower() not in lowered:
            raise ValueError(f"unknown label {label!r} for {self.name}; its labels are {labels}")
        return lowered.index(str(label).lower())

    def log_probs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_labels)`` log-probabilities."""
        logits = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
        return F.log_softmax(logits.float(), dim=-1)

    def label_logprob(self, inputs_embeds, attention_mask, label: str | int) -> torch.Tensor:
        return self.log_probs(inputs_embeds, attention_mask)[:, self.label_index(label)]


class ZeroShotClassifier(EncoderBackbone):
    """Zero-shot classification with a sentence encoder: softmax over cosine similarity to label
    descriptions, e.g. ``{"positive": "This is a positive sentence.", "negative": "This is a negative sentence."}``.

    Args:
        encoder: an :class:`EncoderBackbone` (shares its model and tokenizer).
        descriptions: label → description text.
        temperature: softmax temperature on the cosines (default 0.05).
    """

    kind = "classifier"

    def __init__(self, encoder: EncoderBackbone, descriptions: dict[str, str], temperature: float = 0.05):
        if not descriptions or len(descriptions) < 2:
            raise ValueError("a zero-shot classifier needs at least two labels with descriptions")
        if any(not str(d).strip() for d in descriptions.values()):
            raise ValueError("label descriptions must be non-empty text")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(encoder.model, encoder.tokenizer, encoder.name, validate=False)
        self._labels = list(descriptions)
        self.temperature = temperature
        with torch.no_grad():
            self.label_embeddings = encoder.embed_text(list(descriptions.values())).detach()

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    label_index = ClassifierBackbone.label_index

    def log_probs(self, inputs_embeds, attention_mask=None) -> torch.Tensor:
        emb = self.sentence_embedding(inputs_embeds, attention_mask)
        return F.log_softmax(emb @ self.label_embeddings.T.to(emb) / self.temperature, dim=-1)

    def label_logprob(self, inputs_embeds, attention_mask, label: str | int) -> torch.Tensor:
        return self.log_probs(inputs_embeds, attention_mask)[:, self.label_index(label)]


SENTIMENT = {"positive": "This is a positive sentence.", "negative": "This is a negative sentence."}
