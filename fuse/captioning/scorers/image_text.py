"""The bundled image–text scorer: a frozen image tower and a frozen text encoder, joined by the label
bridge, by LiT heads, or by both (the sum of the two cosines).

It *is* the text encoder as far as the chain is concerned (an :class:`~fuse.models.backbones.EncoderBackbone`
sharing the encoder's model, tokenizer and name), so the LM reaches it through the ordinary
LM→encoder adapter. Its image side is computed once per image by :meth:`encode_images`.
"""

from __future__ import annotations

import math

import torch

from fuse.models.backbones.encoder import EncoderBackbone
from fuse.captioning.vision.images import load_image

MODES = ("label", "lit", "sum")


class ImageTextScorer(EncoderBackbone):
    """Cosine similarity between images and texts from two frozen towers.

    Args:
        encoder: the text tower (:class:`~fuse.models.backbones.EncoderBackbone`, e.g. ``bundled:minilm-l6``).
        tower: the image tower (:class:`~fuse.captioning.vision.tower.ImageTower`).
        mode: ``"label"`` (label bridge), ``"lit"`` (LiT heads) or ``"sum"`` (both: the features are
            the two unit vectors concatenated and divided by √2, so the cosine is their mean).
        bridge: a :class:`~fuse.captioning.scorers.label_bridge.LabelBridge` (needed for label/sum).
        heads: :class:`~fuse.captioning.scorers.lit.LiTHeads` (needed for lit/sum).
    """

    kind = "image_text"

    def __init__(self, encoder: EncoderBackbone, tower, *, mode: str = "sum", bridge=None, heads=None):
        if mode not in MODES:
            raise ValueError(f"unknown scorer mode {mode!r}; use one of {MODES}")
        if mode in ("label", "sum") and bridge is None:
            raise ValueError(f"mode {mode!r} needs a label bridge (LabelBridge.from_encoder(encoder))")
        if mode in ("lit", "sum") and heads is None:
            raise ValueError(f"mode {mode!r} needs LiT heads (fuse.captioning.scorers.bundled.bundled_heads())")
        super().__init__(encoder.model, encoder.tokenizer, encoder.name, validate=False)
        self.tower, self.mode, self.bridge, self.heads = tower, mode, bridge, heads

    def __repr__(self) -> str:
        return f"ImageTextScorer(mode={self.mode!r}, text={self.name!r}, image={self.tower.name!r})"

    # -- the two sides ----------------------------------------------------------------------
    def image_side(self, features: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        """``(B, D)`` unit image vectors from tower ``features (B, 1280)`` and ``logits (B, 1000)``."""
        parts = []
        if self.mode in ("label", "sum"):
            if logits is None:
                raise ValueError("the label bridge needs the tower's class logits")
            parts.append(self.bridge.image_embedding(logits.float()))
        if self.mode in ("lit", "sum"):
            parts.append(self.heads.image(features.float()))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1) / math.sqrt(2)

    def text_side(self, sentence: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` unit text vectors from the encoder's sentence embeddings ``(B, 384)`` (differentiable)."""
        parts = []
        if self.mode in ("label", "sum"):
            parts.append(self.bridge.text_embedding(sentence))
        if self.mode in ("lit", "sum"):
            parts.append(self.heads.text(sentence))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1) / math.sqrt(2)

    def text_features(self, inputs_embeds: torch.Tensor, ids: torch.Tensor | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` unit text vectors from the encoder's ``inputs_embeds (B, L, 384)``."""
        return self.text_side(self.sentence_embedding(inputs_embeds, attention_mask))

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """``(N, D)`` text vectors, exactly as the encoder tokenizes the texts."""
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out.append(self.text_side(self.embed_text(list(texts[i : i + batch_size]))).float().cpu())
        if not out:
            raise ValueError("no texts to encode")
        return torch.cat(out)

    def encode_images(self, images, *, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
        """``(N, D)`` image vectors of images (paths, PIL images or arrays)."""
        feats, logits = self.tower.encode([im if hasattr(im, "mode") else load_image(im) for im in images],
                                          batch_size=batch_size, progress=progress)
        return self.image_side(feats, logits)

    def loss(self, inputs_embeds, ids, attention_mask, image_features: torch.Tensor) -> torch.Tensor:
        """``1 − cos(text, image)`` per sequence ``(B,)``; ``image_features`` ``(D,)`` or ``(B, D)``."""
        t = self.text_features(inputs_embeds, ids, attention_mask)
        return 1.0 - (t * image_features.to(t)).sum(-1)
