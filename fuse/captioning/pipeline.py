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
import functools
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from tqdm.auto import tqdm

from fuse.optim import CONFIGS, AutoDANConfig, OptimizerConfig
from fuse.optim import OPTIMIZERS as OPTIMIZER_CLASSES
from fuse.optim.chain import Chain
from fuse.objectives import ClassifierLabel, Fluency, ImageText, Objective
from fuse.captioning.vision.images import load_images

logger = logging.getLogger(__name__)

__all__ = ["CaptionConfig", "DEFAULT_CONFIG", "PUBLISHED_CONFIG", "Caption", "caption", "Captioner", "steering_objective"]
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)  # every optimizer of fuse.optim can write captions


def _caption_search() -> AutoDANConfig:
    """The default caption search (docs/captioning.md): AutoDAN + beam 4 after "An image of", 8 tokens × 128
    candidates per step (1,024 exact evaluations), the LM's log-probability at weight 0.25 in the ranking."""
    return AutoDANConfig(prefix="An image of", n_tokens=8, batch_size=128, budget=8 * 128, search="beam", beam_width=4,
                         lm_weight=0.25, seed=0)


@dataclass
class CaptionConfig:
    """Options of the caption search (all seeded): the optimizer's own config, and what only captioning has.

    Attributes:
        optim: the search, as the config of any :mod:`fuse.optim` optimizer (its class picks the optimizer):
            by default ``AutoDANConfig(prefix="An image of", n_tokens=8, batch_size=128, budget=1024,
            search="beam", beam_width=4, lm_weight=0.25, seed=0)``. Every field of it applies (``top_k`` of a
            ``GCGConfig``, ``patience``, ``eval_batch_size``, ...). Its ``budget`` is the exact evaluations per
            image: AutoDAN's growth needs ``n_tokens × batch_size`` to reach ``n_tokens`` tokens. With AutoDAN,
            ``lm_weight`` 0.25 was tuned on the optimized objective (the published code's 1 lets the LM's own top
            tokens fill the candidate list), ``use_gradient=False`` is the control without the cross-model
            gradient, and ``complete_only`` (default) keeps captions of exactly ``n_tokens`` tokens (the best of
            any length is pulled towards "An image of a" by the fluency term).
        alpha: weights ``(LM NLL, 1 − cos(text, image))``.
        steer_weight: weight of the steering term (when a ``steer`` objective is given).
        image_batch_size: images encoded per batch by the scorer.
        num_threads: torch CPU threads while captioning (restored afterwards). A float sum split over
            a different number of threads rounds differently, and one flipped near-tie among thousands
            of candidate comparisons sends the beam elsewhere: with the same thread count (1 by
            default) the same seed gives the same captions on any machine with the same package
            versions and CPU instruction set. ``None`` keeps torch's setting (faster on a many-core
            machine; captions may then differ between machines). GPU work is unaffected.

    The search's fields given to ``CaptionConfig`` itself, the form before the config tree
    (``CaptionConfig(n_tokens=16, optimizer="gcg")``, ``replace(config, lm_weight=1.0)``), still work through
    :meth:`override`, with a ``DeprecationWarning``; reading them (``config.n_tokens``) reads ``config.optim``.

    Example:
        >>> from fuse.captioning import CaptionConfig
        >>> from fuse.optim import AutoDANConfig
        >>> cfg = CaptionConfig(optim=AutoDANConfig(prefix="An image of", n_tokens=16, batch_size=64, budget=1024,
        ...                                         search="beam", lm_weight=1.0))
        >>> cfg.optimizer, cfg.evaluations
        ('autodan', 1024)
        >>> CaptionConfig().override(optimizer="gcg", n_tokens=4).optim.budget   # 4 × 128, the shared fields kept
        512
    """

    optim: OptimizerConfig = field(default_factory=_caption_search)
    alpha: tuple[float, float] = (1.0, 22.0)
    steer_weight: float = 5.0
    image_batch_size: int = 16
    num_threads: int | None = 1

    def __post_init__(self):
        if type(self.optim) not in CONFIGS:
            raise ValueError(f"optim must be the config of a fuse optimizer ({', '.join(c.__name__ for c in CONFIGS)}), "
                             f"got {type(self.optim).__name__}: CaptionConfig(optim=AutoDANConfig(n_tokens=8, ...))")
        if len(tuple(self.alpha)) != 2 or self.alpha[0] < 0 or not self.alpha[1] > 0:
            raise ValueError(f"alpha is (LM weight >= 0, image weight > 0), got {self.alpha!r}")
        self.alpha = tuple(float(a) for a in self.alpha)
        if isinstance(self.image_batch_size, bool) or not isinstance(self.image_batch_size, int) or self.image_batch_size < 1:
            raise ValueError(f"image_batch_size must be an integer >= 1, got {self.image_batch_size!r}")
        if self.steer_weight < 0:
            raise ValueError(f"steer_weight must be >= 0, got {self.steer_weight}")
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 (or None to keep torch's setting), got {self.num_threads}")

    @property
    def optimizer(self) -> str:
        """The name of the optimizer ``optim`` configures (``"autodan"``, ``"gcg"``, ``"random"``, ``"pez"``)."""
        return _NAMES[type(self.optim)]

    @property
    def evaluations(self) -> int:
        """Exact evaluations per image: the search's ``budget``."""
        return self.optim.budget

    def override(self, **options) -> CaptionConfig:
        """A copy with ``options`` set wherever they live: on this config (``alpha``, ``num_threads``, ...) or on
        its search (``n_tokens``, ``lm_weight``, ``top_k``, ...).

        ``optimizer="gcg"`` (``"autodan"``, ``"random"``, ``"pez"``) switches the search to that optimizer's config,
        keeping the fields every optimizer shares (prefix, n_tokens, budget, batch_size, search, seed, ...; PEZ
        searches greedily). A search whose budget was ``n_tokens × batch_size`` keeps that relation when
        ``n_tokens`` or ``batch_size`` change and no ``budget`` is given; ``budget=None`` sets it.

        Raises:
            ValueError: for an option neither this config nor the search's config has, naming the classes.
        """
        options = dict(options)
        name = options.pop("optimizer", None)
        mine = {f.name for f in fields(self)} - {"optim"}
        own = {k: options.pop(k) for k in list(options) if k in mine}
        optim = self.optim
        if name is not None or options:
            target = _optimizer_class(name).config_class if name is not None else type(optim)
            names = {f.name for f in fields(target)}
            unknown = [k for k in options if k not in names]
            if unknown:
                raise ValueError(f"{target.__name__} (the {_NAMES[target]} search) has no {', '.join(unknown)}; "
                                 f"CaptionConfig has {sorted(mine | {'optim'})}")
            if options.get("budget", 0) is None or ("budget" not in options and {"n_tokens", "batch_size"} & set(options)
                                                    and optim.budget == optim.n_tokens * optim.batch_size):
                options["budget"] = options.get("n_tokens", optim.n_tokens) * options.get("batch_size", optim.batch_size)
            if target is type(optim):
                optim = replace(optim, **options)
            else:  # another optimizer: the fields both configs have are kept
                values = {f.name: getattr(optim, f.name) for f in fields(optim) if f.name in names}
                if not _optimizer_class(name).supports_beam:
                    values["search"] = "greedy"
                optim = target(**{**values, **options})
        return replace(self, optim=optim, **own)

    def to_dict(self) -> dict:
        """JSON-ready options: the search as its optimizer's :meth:`~fuse.optim.OptimizerConfig.to_dict`."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "optim"}
        return {"optimizer": self.optimizer, "optim": self.optim.to_dict(), **out, "alpha": list(self.alpha)}

    def __setattr__(self, name, value):
        if name in _SEARCH_FIELDS:
            raise AttributeError(f"CaptionConfig has no field {name!r}: it is the search's; use "
                                 f"config.override({name}=...) or replace(config, optim=replace(config.optim, {name}=...))")
        object.__setattr__(self, name, value)


_NAMES = {cls.config_class: name for name, cls in OPTIMIZER_CLASSES.items()}
# the search fields of the flat CaptionConfig before the config tree, and their defaults
_FLAT_DEFAULTS = dict(lm_weight=0.25, use_gradient=True, complete_only=True, search="beam")
_SEARCH_FIELDS = frozenset(f.name for c in CONFIGS for f in fields(c))


def _deprecated_search_field(name: str) -> property:
    """``CaptionConfig.<name>`` for a field of the search (the form before the config tree): reads ``optim.<name>``
    with a DeprecationWarning."""

    def read(self):
        warnings.warn(f"CaptionConfig.{name} is deprecated: the search's options live in its optimizer's config; "
                      f"read config.optim.{name}", DeprecationWarning, stacklevel=2)
        return getattr(self.optim, name)

    return property(read, doc=f"Deprecated: ``config.optim.{name}``.")


for _name in sorted(_SEARCH_FIELDS):  # one explicit read-only property per old flat field, no attribute forwarding
    setattr(CaptionConfig, _name, _deprecated_search_field(_name))


def _optimizer_class(name: str):
    if name not in OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")
    return OPTIMIZER_CLASSES[name]


_dataclass_init = CaptionConfig.__init__


@functools.wraps(_dataclass_init)
def _init(self, *args, **kwargs):
    """The dataclass's ``__init__``, also taking the search's fields the old flat way (deprecated; see
    :meth:`CaptionConfig.override`). ``dataclasses.replace`` goes through here as well."""
    old = {k: kwargs.pop(k) for k in list(kwargs) if k in _SEARCH_FIELDS or k == "optimizer"}
    if not old:
        return _dataclass_init(self, *args, **kwargs)
    # the flat config had every field for every optimizer, and the mapping ignored those the optimizer lacked
    # (AutoDAN's for GCG, the search for PEZ): at their old defaults they are dropped, otherwise override refuses them
    name = old.get("optimizer") or _NAMES.get(type(kwargs.get("optim")), "autodan")
    if name in OPTIMIZER_CLASSES:
        cls = OPTIMIZER_CLASSES[name]
        lacks = (_SEARCH_FIELDS - {f.name for f in fields(cls.config_class)}) | (set() if cls.supports_beam else {"search"})
        old = {k: v for k, v in old.items() if not (k in lacks and k in _FLAT_DEFAULTS and v == _FLAT_DEFAULTS[k])}
    shown = ", ".join(f"{k}={v!r}" for k, v in old.items())
    warnings.warn(f"CaptionConfig({shown}) is deprecated: the search's options live in its optimizer's config, "
                  f"CaptionConfig(optim=AutoDANConfig(...)) (or GCGConfig, ...); config.override({shown}) "
                  "applies them to an existing config", DeprecationWarning, stacklevel=2)
    _dataclass_init(self, *args, **kwargs)
    new = self.override(**old)
    object.__setattr__(self, "optim", new.optim)


CaptionConfig.__init__ = _init


DEFAULT_CONFIG = CaptionConfig()
"""What ``fuse caption`` uses (8 tokens × 128 candidates per step, ``lm_weight=0.25``: measured in docs/captioning.md)."""

PUBLISHED_CONFIG = CaptionConfig(optim=AutoDANConfig(prefix="An image of", n_tokens=16, batch_size=64, budget=16 * 64,
                                                     search="beam", beam_width=4, lm_weight=1.0, seed=0))
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
        """The optimizer of ``config.optim`` (default: this captioner's config) on ``chain``."""
        c = config or self.config
        return CONFIGS[type(c.optim)](chain, c.optim)

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
        config: a :class:`CaptionConfig`; keyword ``options`` override its fields or its search's
            (:meth:`CaptionConfig.override`: ``n_tokens=8``, ``use_gradient=False``, ``optimizer="random"``).
        on_error: ``"report"`` (default): an unreadable image gets a :class:`Caption` with
            ``error`` set and the batch goes on; ``"raise"``: stop with the error.
        progress: show a progress bar over images.

    Returns:
        one :class:`Caption` per image, in order.
    """
    config = (config or CaptionConfig()).override(**options) if options else (config or CaptionConfig())
    return Captioner(lm, scorer, config, steer=steer, adapters=adapters)(images, on_error=on_error, progress=progress)
