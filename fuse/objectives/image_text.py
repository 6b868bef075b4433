"""Image–text loss: ``1 − cos(text, image)`` under an image–text model."""

from __future__ import annotations

import torch

from fuse.objectives.base import Objective


class ImageText(Objective):
    """``1 − cos(text, image)`` under an image–text model; ``image_features`` precomputed ``(D,)`` or ``(B, D)``."""

    name = "1-cos(image)"

    def __init__(self, backbone, image_features: torch.Tensor):
        super().__init__(backbone)
        self.image_features = image_features.detach()

    def loss(self, inputs_embeds, ids, attention_mask, state=None):
        return self.backbone.loss(inputs_embeds, ids, attention_mask, self.image_features)
