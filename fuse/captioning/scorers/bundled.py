"""The bundled scorer (EfficientNet-Lite0 + MiniLM) and its LiT heads.

The heads are the project's own: trained by ``benchmarks/captioning.py --train-heads`` on cached
tower embeddings of the clip-art training split and committed under ``fuse/captioning/scorers/weights/``
(≈1.7 MB safetensors). When that folder is missing they are trained on first use into the cache
(needs the Debian clip-art packages).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from fuse.models.cache import atomic_dir, cache_dir
from fuse.captioning.scorers.image_text import MODES, ImageTextScorer
from fuse.captioning.scorers.label_bridge import LabelBridge, LabelBridgeConfig
from fuse.captioning.scorers.lit import CONFIG_NAME, LiTConfig, LiTHeads, train_lit_heads

logger = logging.getLogger(__name__)
WEIGHTS = Path(__file__).resolve().parent / "weights" / "lit"
TEXT_ENCODER = "bundled:minilm-l6"


def openclipart_training_data(encoder, tower, *, seed: int = 0, split: str = "train", batch_size: int = 32,
                              progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Cached tower features ``(N, 1280)`` and text embeddings ``(N, 2, 384)`` (caption; caption + keywords)
    of a clip-art split (the seeded sample of :func:`fuse.captioning.data.openclipart.subsets`)."""
    from fuse.captioning.data.openclipart import subsets
    from fuse.captioning.scorers.features import cached_image_features

    items = subsets(seed=seed)[split]
    feats = cached_image_features([i.png for i in items], tower, batch_size=batch_size, progress=progress)
    with torch.no_grad():
        views = []
        for texts in ([i.caption for i in items], [i.training_text for i in items]):
            views.append(torch.cat([encoder.embed_text(texts[j : j + 128]).float().cpu() for j in range(0, len(texts), 128)]))
    return feats["features"], torch.stack(views, 1), items


def build_heads(encoder, tower, config: LiTConfig = LiTConfig(), *, progress: bool = False) -> tuple[LiTHeads, list[float]]:
    """Train the LiT heads on the clip-art training split (seeded)."""
    X, T, items = openclipart_training_data(encoder, tower, seed=config.seed, progress=progress)
    config.data = f"openclipart train sample ({len(items)} images, seed {config.seed}); text = title + description [+ keywords]"
    return train_lit_heads(X, T, config, progress=progress)


def bundled_heads(encoder=None, tower=None) -> LiTHeads:
    """The committed heads, or heads trained on first use into the cache."""
    if (WEIGHTS / CONFIG_NAME).exists():
        return LiTHeads.from_pretrained(WEIGHTS)
    dest = cache_dir("scorers") / "lit-efficientnet-lite0-minilm-l6"
    if not dest.exists():
        with atomic_dir(dest) as tmp:
            if tmp is not None:
                logger.info("training the LiT heads on first use (cached in %s)", dest)
                from fuse.models.loading import load
                from fuse.captioning.vision.tower import load_efficientnet_lite0

                heads, _ = build_heads(encoder or load(TEXT_ENCODER), tower or load_efficientnet_lite0())
                heads.save_pretrained(tmp)
    return LiTHeads.from_pretrained(dest)


@functools.lru_cache(maxsize=4)
def _encoder(device: str):
    from fuse.models.loading import load

    return load(TEXT_ENCODER, device=device)


def load_bundled_scorer(mode: str = "sum", *, device: str = "cpu", bridge_config: LabelBridgeConfig = LabelBridgeConfig(),
                        encoder=None) -> ImageTextScorer:
    """EfficientNet-Lite0 + MiniLM joined by the label bridge, the LiT heads, or both."""
    from fuse.captioning.vision.tower import load_efficientnet_lite0

    if mode not in MODES:
        raise ValueError(f"unknown bundled scorer mode {mode!r}; use one of {MODES}")
    encoder = encoder or _encoder(str(device))
    tower = load_efficientnet_lite0(str(device))
    bridge = LabelBridge.from_encoder(encoder, bridge_config) if mode in ("label", "sum") else None
    heads = bundled_heads(encoder, tower) if mode in ("lit", "sum") else None
    return ImageTextScorer(encoder, tower, mode=mode, bridge=bridge, heads=heads)
