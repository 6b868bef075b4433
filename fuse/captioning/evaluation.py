"""Caption quality: the COCO metrics (pycocoevalcap), CLIP-S, and whether a caption names the object.

``coco_metrics`` computes BLEU-4, CIDEr and ROUGE-L with pycocoevalcap (the ``bench`` extra), and
METEOR and SPICE where Java is installed (SPICE also needs its Stanford CoreNLP jars, which it
downloads on first use: offline it is reported as missing, never silently zero). Captions and
references are normalised the same way first (lower case, punctuation removed, the search prefix
stripped). ``clip_score`` is CLIP-S (Hessel et al., 2021): ``w · max(cos(image, "A photo depicts " +
caption), 0)`` with ``w = 2.5``, under any scorer with ``encode_texts``.

Example:
    >>> coco_metrics({"1": "a cat on a mat"}, {"1": ["a cat sits on a mat", "a cat"]})["BLEU-4"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import shutil

import torch

logger = logging.getLogger(__name__)

ALWAYS = ("BLEU-4", "CIDEr", "ROUGE-L")
NEEDS_JAVA = ("METEOR", "SPICE")
CLIP_S_WEIGHT = 2.5
CLIP_S_PREFIX = "A photo depicts "


def normalize_caption(text: str, prefix: str = "") -> str:
    """Lower case, ``prefix`` removed from the start, anything but letters, digits and spaces dropped.

    An empty result becomes ``"empty"`` (pycocoevalcap refuses empty hypotheses)."""
    t = str(text).strip()
    if prefix and t.lower().startswith(prefix.lower()):
        t = t[len(prefix):]
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", t.lower()).split()) or "empty"


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH (METEOR and SPICE run in Java)."""
    return shutil.which("java") is not None


def coco_metrics(hyps: dict[str, str], refs: dict[str, list[str]], *, prefix: str = "",
                 metrics: tuple[str, ...] | None = None) -> dict[str, float | None]:
    """Corpus-level caption metrics of ``hyps`` (one caption per key) against ``refs``.

    Args:
        hyps: ``{image_id: caption}``.
        refs: ``{image_id: [reference, ...]}``; every key of ``hyps`` must be here.
        prefix: search prefix removed from the hypotheses before scoring (``"An image of"``).
        metrics: which to compute (default: BLEU-4, CIDEr, ROUGE-L, METEOR, SPICE). A metric that cannot run (no Java; SPICE's jars missing offline) is ``None``
            and the reason is logged.

    Returns:
        ``{metric: value or None}``.
    """
    if not hyps:
        raise ValueError("no captions to score")
    missing = [k for k in hyps if k not in refs or not refs[k]]
    if missing:
        raise ValueError(f"{len(missing)} captions have no references (e.g. {missing[:3]}); pass refs for every key")
    wanted = tuple(metrics) if metrics is not None else ALWAYS + NEEDS_JAVA
    unknown = [m for m in wanted if m not in ALWAYS + NEEDS_JAVA]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; use any of {ALWAYS + NEEDS_JAVA}")
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as e:
        raise ValueError("caption metrics need pycocoevalcap: pip install 'fuse-tensor-bridge[bench]'") from e
    keys = sorted(hyps)
    res = {k: [normalize_caption(hyps[k], prefix)] for k in keys}
    gts = {k: [normalize_caption(r) for r in refs[k]] for k in keys}
    out: dict[str, float | None] = {}
    for m in wanted:
        try:
            if m == "BLEU-4":
                out[m] = float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
            elif m == "CIDEr":
                out[m] = float(Cider().compute_score(gts, res)[0])
            elif m == "ROUGE-L":
                out[m] = float(Rouge().compute_score(gts, res)[0])
            elif not java_available():
                logger.warning("%s needs Java (apt-get install default-jre-headless); reported as None", m)
                out[m] = None
            elif m == "METEOR":
                from pycocoevalcap.meteor.meteor import Meteor

                out[m] = float(Meteor().compute_score(gts, res)[0])
            else:
                from pycocoevalcap.spice.spice import Spice

                out[m] = float(Spice().compute_score(gts, res)[0])
        except Exception as e:  # METEOR/SPICE subprocesses fail in many ways offline; the others must not
            if m in ALWAYS:
                raise
            logger.warning("%s could not run (%s: %s); reported as None", m, type(e).__name__, e)
            out[m] = None
    return out


def clip_score(scorer, image_features: torch.Tensor, captions: list[str], *, prefix: str = "",
               weight: float = CLIP_S_WEIGHT, batch_size: int = 64) -> torch.Tensor:
    """CLIP-S per caption: ``weight · max(cos(image_i, "A photo depicts " + caption_i), 0)``.

    Args:
        scorer: an image–text scorer (``encode_texts(texts) -> (N, D)`` unit vectors).
        image_features: ``(N, D)`` unit image features from ``scorer.encode_images``.
        captions: N captions; ``prefix`` (the search prefix) is removed first.
        weight: 2.5 in the paper (for CLIP ViT-B/32).

    Returns:
        ``(N,)`` float32 on the CPU.
    """
    if len(captions) != len(image_features):
        raise ValueError(f"{len(captions)} captions for {len(image_features)} images; pass one caption per image")
    texts = []
    for c in captions:
        c = str(c).strip()
        if prefix and c.lower().startswith(prefix.lower()):
            c = c[len(prefix):].strip()
        texts.append(CLIP_S_PREFIX + c)
    t = scorer.encode_texts(texts, batch_size=batch_size).float().cpu()
    cos = (t * image_features.float().cpu()).sum(-1)
    return weight * cos.clamp_min(0.0)
