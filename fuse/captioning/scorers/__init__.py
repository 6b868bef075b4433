"""Image–text scorers: the bundled ones built from two frozen towers, and real CLIP models.

``load_scorer("bundled")`` (the label bridge: EfficientNet-Lite0's ImageNet classes in MiniLM's text
space, the best bundled scorer on photos), ``"bundled:lit"`` (LiT heads trained on clip art),
``"bundled:sum"`` (both), or a ``transformers`` CLIP hub id / folder. Every scorer is a backbone with ``kind == "image_text"``,
``encode_images(images) -> (N, D)``, ``encode_texts(texts) -> (N, D)`` and
``loss(inputs_embeds, ids, mask, image_features) -> 1 − cos``, so the captioner treats them alike.
"""

from __future__ import annotations

from fuse.captioning.scorers.image_text import ImageTextScorer
from fuse.captioning.scorers.label_bridge import LabelBridge, LabelBridgeConfig
from fuse.captioning.scorers.lit import LiTConfig, LiTHeads, train_lit_heads
from fuse.captioning.scorers.retrieval import recall_at_k

__all__ = ["ImageTextScorer", "LabelBridge", "LabelBridgeConfig", "LiTConfig", "LiTHeads", "train_lit_heads",
           "recall_at_k", "load_scorer", "as_scorer"]

#: "bundled" is the label bridge: on real photos it ranks a photo's own reference captions first for
#: 11 of 16 photos, the sum for 9, the LiT heads (fitted on clip art) for 4
#: (benchmarks/results/captioning_photos_retrieval.md).
BUNDLED = {"bundled": "label", "bundled:label": "label", "bundled:sum": "sum", "bundled:lit": "lit"}


def load_scorer(name: str = "bundled", *, device=None):
    """A scorer by name: ``bundled`` / ``bundled:label`` / ``bundled:lit`` / ``bundled:sum`` or a CLIP id/folder."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"scorer name must be a non-empty string, got {name!r}")
    if name in BUNDLED:
        from fuse.captioning.scorers.bundled import load_bundled_scorer

        return load_bundled_scorer(BUNDLED[name], device=str(device or "cpu"))
    if name.startswith("bundled:"):
        raise ValueError(f"unknown bundled scorer {name!r}; use one of {sorted(BUNDLED)}")
    from fuse.captioning.scorers.clip import load_clip

    return load_clip(name, device=device)


def as_scorer(thing):
    """A scorer from a name, a scorer, or a ``CLIPBackbone`` (wrapped so it can encode images)."""
    if thing is None:
        return load_scorer("bundled")
    if isinstance(thing, str):
        return load_scorer(thing)
    if hasattr(thing, "encode_images") and getattr(thing, "kind", None) == "image_text":
        return thing
    from fuse.models.backbones.clip import CLIPBackbone, OpenCLIPBackbone

    if isinstance(thing, CLIPBackbone):
        from fuse.captioning.scorers.clip import CLIPScorer

        return CLIPScorer(thing)
    if isinstance(thing, OpenCLIPBackbone):
        from fuse.captioning.scorers.clip import OpenCLIPScorer

        return OpenCLIPScorer(thing)
    raise ValueError(f"cannot score images with {type(thing).__name__}: pass 'bundled', a CLIP id/folder, "
                     "a CLIPBackbone or an ImageTextScorer")
