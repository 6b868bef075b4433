"""The label bridge: a training-free image–text score from an ImageNet classifier and a text encoder.

An image's class distribution ``p = softmax(logits / T)`` (top ``k`` classes kept, renormalised)
weights the text encoder's embeddings ``C (1000, d)`` of the class names; the image embedding is
``normalize(p @ C − c)`` and a text's is ``normalize(s − c)`` with ``s`` its sentence embedding and
``c`` the mean class-name embedding (removing the component every sentence shares). The score is
their cosine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from fuse.captioning.vision.imagenet import class_prompts


@dataclass(frozen=True)
class LabelBridgeConfig:
    """Attributes:
        temperature: softmax temperature on the classifier logits (2: softer than the classifier's own
            distribution, so the runner-up classes count; chosen on real photos, see docs/captioning.md).
        top_k: classes kept per image (0: all).
        template: text each class name is put in.
        synonyms: class-name synonyms joined into the text.
        center: subtract the mean class embedding from both sides.
    """

    temperature: float = 2.0
    top_k: int = 10
    template: str = "an image of a {}."
    synonyms: int = 2
    center: bool = True

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 keeps every class), got {self.top_k}")

    def to_dict(self) -> dict:
        return asdict(self)


class LabelBridge:
    """Maps classifier logits ``(B, n_classes)`` into a text encoder's sentence space ``(B, d)``.

    Args:
        class_embeddings: ``(n_classes, d)`` unit sentence embeddings of the class texts.
        config: temperature, top-k and centring.
    """

    def __init__(self, class_embeddings: torch.Tensor, config: LabelBridgeConfig = LabelBridgeConfig()):
        if class_embeddings.ndim != 2:
            raise ValueError(f"class_embeddings must be (n_classes, d), got {tuple(class_embeddings.shape)}")
        self.class_embeddings = F.normalize(class_embeddings.detach().float(), dim=-1)
        self.config = config
        self.center = self.class_embeddings.mean(0) if config.center else torch.zeros(class_embeddings.shape[1])

    @classmethod
    def from_encoder(cls, encoder, config: LabelBridgeConfig = LabelBridgeConfig(), batch_size: int = 128) -> "LabelBridge":
        """Embed the ImageNet class texts with ``encoder`` (an :class:`~fuse.models.backbones.EncoderBackbone`)."""
        texts = class_prompts(config.template, config.synonyms)
        with torch.no_grad():
            emb = torch.cat([encoder.embed_text(texts[i : i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)])
        return cls(emb, config)

    def image_embedding(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` unit vectors from classifier logits ``(B, n_classes)``."""
        if logits.ndim != 2 or logits.shape[1] != self.class_embeddings.shape[0]:
            raise ValueError(f"logits must be (B, {self.class_embeddings.shape[0]}), got {tuple(logits.shape)}")
        p = torch.softmax(logits.float() / self.config.temperature, -1)
        if 0 < self.config.top_k < p.shape[1]:
            top = p.topk(self.config.top_k, dim=-1)
            p = torch.zeros_like(p).scatter_(1, top.indices, top.values)
            p = p / p.sum(-1, keepdim=True)
        C = self.class_embeddings.to(p.device)
        return F.normalize(p @ C - self.center.to(p.device), dim=-1)

    def text_embedding(self, sentence: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` unit vectors from sentence embeddings ``(B, d)`` (differentiable)."""
        return F.normalize(sentence - self.center.to(sentence), dim=-1)
