"""Zero-shot image captioning: an LM writes, an image–text scorer judges, and the scorer's gradient
reaches the LM's tokens through the adapter (the FUSE recipe).

For each image the objective is ``α_LM · NLL_LM(text) + α_img · (1 − cos(text, image))`` (plus an
optional steering term ``w · (−log p(label | text))`` from a classifier), minimized over the tokens
after a fixed prefix by AutoDAN-style left-to-right growth with beam search (or any optimizer in
:mod:`fuse.optim`). Defaults: prefix "An image of", α = (1, 22) and AutoDAN + beam 4 as in the published
FUSE code, with 8 tokens × 128 candidates per step (1,024 exact evaluations) and ``lm_weight=0.25``, measured
in docs/captioning.md; the published search (16 tokens × 64, ``lm_weight=1``) is :data:`PUBLISHED_CONFIG`.

Example:
    >>> import fuse.captioning as fc                                  # doctest: +SKIP
    >>> import skimage.data
    >>> out = fc.caption([skimage.data.chelsea()])                    # doctest: +SKIP
    >>> out[0].caption                                                # doctest: +SKIP
    'An image of a cat ...'
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace

import torch
from tqdm.auto import tqdm

from fuse.optim import OPTIMIZERS as OPTIMIZER_CLASSES
from fuse.optim.chain import Chain
from fuse.objectives import ClassifierLabel, Fluency, ImageText, Objective
from fuse.captioning.vision.images import load_images

logger = logging.getLogger(__name__)

__all__ = ["CaptionConfig", "DEFAULT_CONFIG", "PUBLISHED_CONFIG", "Caption", "caption", "Captioner", "steering_objective"]
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)  # every optimizer of fuse.optim can write captions


@dataclass
class CaptionConfig:
    """Options of the caption search (all seeded).

    Attributes:
        prefix: fixed text the caption starts with.
        n_tokens: tokens grown after the prefix (AutoDAN steps).
        alpha: weights ``(LM NLL, 1 − cos(text, image))``.
        optimizer: ``"autodan"`` (default), ``"gcg"``, ``"random"`` or ``"pez"``.
        use_gradient: rank AutoDAN's candidates by the scorer's gradient through the adapter
            (``False``: by LM logits only — the control without the cross-model gradient).
        lm_weight: weight of the LM log-probability in AutoDAN's candidate ranking (0.25, tuned on the
            optimized objective; the published code's 1 lets the LM's own top tokens fill the candidate list).
        complete_only: AutoDAN returns the best caption of exactly ``n_tokens`` tokens (``False``: the
            best of any length, which a fluency term pulls towards "An image of a").
        search, beam_width: ``"beam"`` with 4 beams by default.
        batch_size: candidates evaluated exactly per step.
        budget: exact evaluations per image (default ``n_tokens × batch_size``).
        steer_weight: weight of the steering term (when a ``steer`` objective is given).
        image_batch_size: images encoded per batch by the scorer.
        seed: seeds the search.
        num_threads: torch CPU threads while captioning (restored afterwards). A float sum split over
            a different number of threads rounds differently, and one flipped near-tie among thousands
            of candidate comparisons sends the beam elsewhere: with the same thread count (1 by
            default) the same seed gives the same captions on any machine with the same package
            versions and CPU instruction set. ``None`` keeps torch's setting (faster on a many-core
            machine; captions may then differ between machines). GPU work is unaffected.
    """

    prefix: str = "An image of"
    n_tokens: int = 8
    alpha: tuple[float, float] = (1.0, 22.0)
    optimizer: str = "autodan"
    use_gradient: bool = True
    lm_weight: float = 0.25
    complete_only: bool = True
    search: str = "beam"
    beam_width: int = 4
    batch_size: int = 128
    budget: int | None = None
    steer_weight: float = 5.0
    image_batch_size: int = 16
    seed: int = 0
    num_threads: int | None = 1

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}")
        if len(tuple(self.alpha)) != 2 or self.alpha[0] < 0 or not self.alpha[1] > 0:
            raise ValueError(f"alpha is (LM weight >= 0, image weight > 0), got {self.alpha!r}")
        self.alpha = tuple(float(a) for a in self.alpha)
        if int(self.n_tokens) < 1 or int(self.batch_size) < 1 or int(self.image_batch_size) < 1:
            raise ValueError("n_tokens, batch_size and image_batch_size must be >= 1")
        if self.budget is not None and int(self.budget) < 1:
            raise ValueError(f"budget must be >= 1 evaluation, got {self.budget}")
        if self.steer_weight < 0:
            raise ValueError(f"steer_weight must be >= 0, got {self.steer_weight}")
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 (or None to keep torch's setting), got {self.num_threads}")

    @property
    def evaluations(self) -> int:
        return int(self.budget) if self.budget is not None else int(self.n_tokens) * int(self.batch_size)


DEFAULT_CONFIG = CaptionConfig()
"""What ``fuse caption`` uses (8 tokens × 128 candidates per step, ``lm_weight=0.25``: measured in docs/captioning.md)."""

PUBLISHED_CONFIG = CaptionConfig(n_tokens=16, batch_size=64, lm_weight=1.0)
"""The published FUSE code's search (16 tokens, 64 candidates per step, LM log-probability at weight 1): the COCO protocol."""


@dataclass
class Caption:
    """One image's caption.

    Attributes:
        image: the image's name (its path, or ``image[i]`` for in-memory images).
        caption: the caption (prefix included), or ``None`` when the image could not be read.
        image_score: cosine between caption and image under the scorer optimized against.
        nll: the LM's mean NLL of the caption (nats/token).
        loss: the weighted objective; ``losses`` each term by label.
        evaluations, seconds: the search's cost.
        error: why the image was skipped (``None`` when it was captioned).
    """

    image: str
    caption: str | None
    image_score: float | None = None
    nll: float | None = None
    loss: float | None = None
    losses: dict = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def steering_objective(steer, encoder=None) -> Objective:
    """The steering term from a spec.

    Args:
        steer: an :class:`~fuse.objectives.Objective`; a pair ``(classifier, label)``; or a
            sentiment label ``"positive"`` / ``"negative"`` (the zero-shot MiniLM classifier).
        encoder: the text encoder for the zero-shot classifier (default ``bundled:minilm-l6``).
    """
    if isinstance(steer, Objective):
        return steer
    if isinstance(steer, (tuple, list)) and len(steer) == 2:
        return ClassifierLabel(steer[0], steer[1])
    if isinstance(steer, str):
        from fuse.models.backbones.classifier import SENTIMENT, ZeroShotClassifier
        from fuse.models.backbones.encoder import EncoderBackbone

        if steer.lower() not in SENTIMENT:
            raise ValueError(f"steer={steer!r}: a string steers sentiment and must be one of {sorted(SENTIMENT)}; "
                             "pass (classifier, label) for any other attribute")
        if not isinstance(encoder, EncoderBackbone):
            from fuse.models.loading import load

            encoder = load("bundled:minilm-l6")
        return ClassifierLabel(ZeroShotClassifier(encoder, SENTIMENT), steer.lower())
    raise ValueError(f"cannot steer with {steer!r}: pass 'positive'/'negative', (classifier, label) or an Objective")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then restore the previous count."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _name(src, i: int) -> str:
    return os.fspath(src) if isinstance(src, (str, os.PathLike)) else f"image[{i}]"


class Captioner:
    """Holds the models and the adapters so many images share them.

    Args:
        lm: the writing causal LM (a backbone, or a name for :func:`fuse.load`); default
            ``bundled:smollm2-135m``.
        scorer: the image–text judge (see :func:`fuse.captioning.scorers.as_scorer`); default ``"bundled"``.
        config: a :class:`CaptionConfig`.
        steer: optional steering term (see :func:`steering_objective`).
        adapters: optional ``{backbone_name: TensorAdapter}`` (built on first use and cached otherwise).
    """

    def __init__(self, lm=None, scorer=None, config: CaptionConfig | None = None, *, steer=None, adapters: dict | None = None):
        from fuse.models.loading import load
        from fuse.captioning.scorers import as_scorer

        self.lm = load(lm or "bundled:smollm2-135m") if lm is None or isinstance(lm, str) else lm
        if getattr(self.lm, "kind", None) != "causal_lm":
            raise ValueError(f"the writer must be a causal LM backbone, got {type(self.lm).__name__}")
        self.scorer = as_scorer(scorer)
        self.config = config or CaptionConfig()
        self.steer = steering_objective(steer, self.scorer if getattr(self.scorer, "kind", "") == "image_text" and
                                        hasattr(self.scorer, "sentence_embedding") else None) if steer is not None else None
        if self.steer is not None and not self.config.steer_weight > 0:
            raise ValueError("a steering objective needs steer_weight > 0")
        self.adapters = dict(adapters or {})

    def chain(self, image_features: torch.Tensor, *, with_image: bool = True) -> Chain:
        """The objective for one image (``with_image=False``: the LM alone, the no-image baseline)."""
        a_lm, a_img = self.config.alpha
        terms = []
        if a_lm > 0 or not with_image:
            terms.append((Fluency(self.lm), a_lm if a_lm > 0 else 1.0))
        if with_image:
            terms.append((ImageText(self.scorer, image_features), a_img))
        if self.steer is not None:
            terms.append((self.steer, self.config.steer_weight))
        chain = Chain(self.lm, terms, adapters=self.adapters)
        self.adapters.update(chain.adapters)
        return chain

    def optimizer(self, chain, config: CaptionConfig | None = None):
        from fuse.optim import make_optimizer

        c = config or self.config
        kwargs = dict(n_tokens=c.n_tokens, prefix=c.prefix, budget=c.evaluations, batch_size=c.batch_size, seed=c.seed)
        if c.optimizer == "autodan":
            kwargs.update(search=c.search, beam_width=c.beam_width, lm_weight=c.lm_weight, use_gradient=c.use_gradient,
                          complete_only=c.complete_only)
        elif c.optimizer in ("gcg", "random"):
            kwargs.update(search=c.search, beam_width=c.beam_width)
        return make_optimizer(c.optimizer, chain, **kwargs)

    def caption_features(self, image_features: torch.Tensor, name: str = "image", *, with_image: bool = True,
                         config: CaptionConfig | None = None) -> Caption:
        """Caption one image given its scorer features ``(D,)``."""
        t0 = time.perf_counter()
        with torch_threads((config or self.config).num_threads):  # adapters built on first use, too
            chain = self.chain(image_features, with_image=with_image)
            res = self.optimizer(chain, config).run()
        labels = chain.labels
        score = next((1.0 - v for k, v in res.losses.items() if k.endswith(ImageText.name)), None)
        if score is None and with_image is False:
            with torch.no_grad():
                score = float(1.0 - ImageText(self.scorer, image_features).loss_texts([res.best_text])[0])
        nll = next((v for k, v in res.losses.items() if k.endswith(":" + Fluency.name)), None)
        return Caption(name, res.best_text.strip(), score, nll, res.best_loss, dict(zip(labels, res.losses.values())),
                       res.evaluations, time.perf_counter() - t0)

    def __call__(self, images, *, on_error: str = "report", progress: bool = False) -> list[Caption]:
        """Caption images (paths, PIL images or arrays); see :func:`caption`."""
        if isinstance(images, (str, os.PathLike)) or hasattr(images, "mode") or (hasattr(images, "ndim") and images.ndim in (2, 3) and not isinstance(images, list)):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("no images to caption")
        if on_error not in ("report", "raise"):
            raise ValueError(f"on_error must be 'report' or 'raise', got {on_error!r}")
        out: list[Caption | None] = [None] * len(images)
        bs = self.config.image_batch_size
        bar = tqdm(total=len(images), desc="captions", disable=not progress)
        try:
            for start in range(0, len(images), bs):
                chunk = images[start : start + bs]
                loaded, errors = load_images(chunk, on_error="raise" if on_error == "raise" else "skip")
                ok = [i for i, im in enumerate(loaded) if im is not None]
                for i, err in enumerate(errors):
                    if err is not None:
                        out[start + i] = Caption(_name(chunk[i], start + i), None, error=err)
                        bar.update(1)
                if not ok:
                    continue
                with torch_threads(self.config.num_threads):
                    feats = self.scorer.encode_images([loaded[i] for i in ok], batch_size=bs)
                for j, i in enumerate(ok):
                    out[start + i] = self.caption_features(feats[j], _name(chunk[i], start + i))
                    bar.update(1)
                    bar.set_postfix(last=out[start + i].caption[-30:])
        finally:
            bar.close()
        bad = [c for c in out if c.error]
        if bad:
            logger.warning("%d of %d images could not be read: %s", len(bad), len(out), "; ".join(c.error for c in bad))
        return out


def caption(images, lm=None, scorer=None, *, steer=None, config: CaptionConfig | None = None, on_error: str = "report",
            progress: bool = False, adapters: dict | None = None, **options) -> list[Caption]:
    """Caption images zero-shot.

    Args:
        images: paths, PIL images or arrays (one, or a list).
        lm: the writing causal LM (default ``bundled:smollm2-135m``).
        scorer: ``"bundled"`` (default: the label bridge, best on photos), ``"bundled:lit"`` (clip art),
            ``"bundled:sum"``, a CLIP hub id or folder, a ``CLIPBackbone``, or an :class:`~fuse.captioning.scorers.ImageTextScorer`.
        steer: optional steering (``"positive"``, ``"negative"``, ``(classifier, label)`` or an Objective).
        config: a :class:`CaptionConfig`; keyword ``options`` override its fields.
        on_error: ``"report"`` (default): an unreadable image gets a :class:`Caption` with
            ``error`` set and the batch goes on; ``"raise"``: stop with the error.
        progress: show a progress bar over images.

    Returns:
        one :class:`Caption` per image, in order.
    """
    config = replace(config or CaptionConfig(), **options) if options else (config or CaptionConfig())
    return Captioner(lm, scorer, config, steer=steer, adapters=adapters)(images, on_error=on_error, progress=progress)
