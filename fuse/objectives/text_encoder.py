"""Losses from text encoders and classifiers: similarity to a target, a label's likelihood."""

from __future__ import annotations

import torch

from fuse.objectives.base import Objective


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

    def loss(self, inputs_embeds, ids, attention_mask, state=None):
        return self.backbone.cosine_loss(inputs_embeds, self.target, attention_mask)


class ClassifierLabel(Objective):
    """``−log p(label)`` under a classifier (``ClassifierBackbone`` or ``ZeroShotClassifier``)."""

    name = "label_nll"

    def __init__(self, backbone, label: str | int):
        super().__init__(backbone)
        self.label = backbone.labels[backbone.label_index(label)]

    def loss(self, inputs_embeds, ids, attention_mask, state=None):
        return -self.backbone.label_logprob(inputs_embeds, attention_mask, self.label)
