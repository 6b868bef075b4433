"""CaLMFlow as a probabilistic forecaster: the history conditions, the future is the generated trajectory.

A window of ``context + chunk`` consecutive values, standardized by the mean and standard
deviation of its first ``context`` values, is one CaLMFlow path of 1-D states
(``dim = space_dim = n_traj = 1``, ``n_times = context + chunk``). The flow LM (a small random-init
GPT-2 with the Gaussian head, :mod:`fuse.flow`) is trained teacher-forced on such windows cut from
:func:`~fuse.forecast.synthetic.synthetic_series` (and, optionally, from the series given to
``fit``): each step predicts the Gaussian increment to the next value. To forecast, the last
``context`` values are fed as the first states of the path (one KV-cached prefill) and the
remaining states are generated autoregressively, ``n_samples`` trajectories at once; their
empirical quantiles are the forecast. Horizons longer than ``chunk`` roll forward: each sample
path is re-standardized on its own last ``context`` values and continued.

Text (Time-LLM's prompt-as-prefix, through CaLMFlow's own text conditioning): every training
window gets a short keyword description computed from the whole window, future included
(``"upward trend cycle 12 smooth"``: trend direction, a dominant cycle and its length, smooth or
noisy), replaced by the neutral prompt ``"series"`` with probability ``text_dropout``. At
prediction a free-text ``description`` is reduced to the words of that vocabulary (the others
are logged and ignored), so ``"Monthly CO2 in ppm: a steady upward trend with a yearly cycle."``
conditions on ``"upward trend yearly cycle"``.

Example:
    >>> import numpy as np
    >>> from fuse.forecast.calmflow import CaLMFlowForecastConfig, CaLMFlowForecaster
    >>> cfg = CaLMFlowForecastConfig(context=8, chunk=4, hidden_size=16, n_layers=1, n_heads=2,
    ...                              train_series=20, train_length=24, steps=2, batch_size=4)
    >>> f = CaLMFlowForecaster(cfg).fit(seed=0)
    >>> f.predict(np.arange(20.0), horizon=6, n_samples=10, seed=0).quantiles.shape
    (6, 9)
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, quantiles_from_samples
from fuse.forecast.seasonality import check_season_length
from fuse.forecast.series import as_series

logger = logging.getLogger(__name__)

NEUTRAL = "series"
_NUMBERS = tuple(str(p) for p in range(2, 65))
#: every word a training description can hold (the text-conditioned model's vocabulary).
VOCABULARY = (NEUTRAL, "upward", "downward", "level", "trend", "cycle", "yearly", "smooth", "noisy", *_NUMBERS)
_SCALE_FLOOR = 1e-6
_CLIP = 1e4  # standardized values are clipped to ±this (protects the MLP encoder from wild samples)


@dataclass(frozen=True)
class CaLMFlowForecastConfig:
    """The forecaster's model, data and training settings (all of them determine the cached weights).

    Attributes:
        context: history values the flow is conditioned on (``predict`` needs at least this many).
        chunk: future steps generated per rollout; longer horizons roll forward.
        hidden_size, n_layers, n_heads: the random-init GPT-2 flow LM.
        text: train a text-conditioned model (descriptions as a prompt prefix).
        max_prompt_tokens: prompt length (left-padded); descriptions are cut to this many words.
        text_dropout: probability a training window gets the neutral prompt instead of its description.
        word_dropout: probability each word of a training description is dropped (so that partial
            descriptions, e.g. "yearly cycle" without its length, are in distribution).
        train_series, train_length: the synthetic training pool.
        steps, batch_size, lr: AdamW with a cosine schedule and warm-up.
        history_weight: fraction of each batch cut from the series given to ``fit`` (when one is given).
        temperature: sampling temperature τ (Δ = μ + τσε).
        seed: seeds the data, the initialization and the batches.
    """

    context: int = 48
    chunk: int = 16
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 4
    text: bool = True
    max_prompt_tokens: int = 8
    text_dropout: float = 0.3
    word_dropout: float = 0.3
    train_series: int = 2000
    train_length: int = 96
    steps: int = 2500
    batch_size: int = 32
    lr: float = 2e-3
    history_weight: float = 0.5
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("context", "chunk", "hidden_size", "n_layers", "n_heads", "train_series", "steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"CaLMFlowForecastConfig.{name} must be a positive int, got {v!r}")
        if self.context < 2:
            raise ValueError(f"CaLMFlowForecastConfig.context must be >= 2 (it is standardized), got {self.context}")
        if self.train_length < self.context + self.chunk:
            raise ValueError(f"train_length={self.train_length} must be >= context + chunk = {self.context + self.chunk}")
        if not all(0 <= v <= 1 for v in (self.text_dropout, self.word_dropout, self.history_weight)):
            raise ValueError("text_dropout, word_dropout and history_weight must lie in [0, 1]")
        if self.temperature <= 0 or self.lr <= 0:
            raise ValueError(f"temperature and lr must be > 0, got {self.temperature}, {self.lr}")
        if self.text and self.max_prompt_tokens < 1:
            raise ValueError("a text-conditioned forecaster needs max_prompt_tokens >= 1")

    @property
    def window(self) -> int:
        return self.context + self.chunk

    def key(self) -> str:
        from fuse.models.cache import config_key

        return config_key(self)


# -- descriptions ---------------------------------------------------------------------------------
def describe_window(w: np.ndarray) -> str:
    """A keyword description of a window (trend direction, a dominant cycle, smooth/noisy).

    Computed from the whole window (history and future), so in training the text carries what a
    person describing the series would know.
    """
    w = np.asarray(w, dtype=np.float64)
    n = w.size
    t = np.arange(n, dtype=np.float64)
    slope, icpt = np.polyfit(t, w, 1)
    r = w - (slope * t + icpt)
    sd = r.std()
    words = []
    rise = slope * (n - 1)
    if sd == 0 or abs(rise) > 1.5 * sd:
        words += ["upward" if rise > 0 else "downward", "trend"] if rise != 0 else ["level"]
    else:
        words += ["level"]
    if sd > 0:
        z = (r - r.mean()) / sd
        acf = np.array([np.mean(z[:-k] * z[k:]) for k in range(1, n // 2 + 1)])
        neg = np.flatnonzero(acf < 0)
        if neg.size:
            lags = np.arange(neg[0], acf.size)
            best = lags[np.argmax(acf[lags])] if lags.size else None
            if best is not None and acf[best] > 0.3 and best + 1 >= 2:
                p = int(best + 1)
                words += (["yearly", "cycle"] if 11 <= p <= 13 else ["cycle"]) + [str(min(p, 64))]
        rough = np.diff(r).std() / sd
        if rough > 1.1:
            words.append("noisy")
        elif rough < 0.6:
            words.append("smooth")
    return " ".join(words)


def season_keywords(season_length: int) -> str | None:
    """The cycle words :func:`describe_window` writes for a period (``None`` outside 2…64)."""
    m = int(season_length)
    if not 2 <= m <= 64:
        return None
    return " ".join((["yearly", "cycle"] if 11 <= m <= 13 else ["cycle"]) + [str(m)])


def keywords(description: str | None, max_words: int) -> str:
    """Reduce a free-text description to the forecaster's vocabulary (order kept, duplicates dropped)."""
    if description is None:
        return NEUTRAL
    if not isinstance(description, str):
        raise ValueError(f"description must be a string or None, got {type(description).__name__}")
    found, dropped = [], []
    for w in re.findall(r"[a-z0-9]+", description.lower()):
        (found if w in VOCABULARY and w != NEUTRAL and w not in found else dropped).append(w)
    if dropped:
        logger.debug("description words outside the vocabulary ignored: %s", dropped)
    found = found[:max_words]
    return " ".join(found) if found else NEUTRAL


# -- the forecaster -------------------------------------------------------------------------------
class CaLMFlowForecaster(Forecaster):
    """CaLMFlow (:class:`fuse.flow.CaLMFlow`) trained on windows of series, sampled as a forecaster.

    Build with :meth:`pretrained` (trains once on synthetic series, then caches) or
    ``CaLMFlowForecaster(cfg).fit(...)``.

    Args:
        config: the settings.
        model: a trained :class:`fuse.flow.CaLMFlow` matching ``config`` (else built untrained).
        season_length: the series' seasonal period. When ``predict`` gets no description, a
            text-conditioned model is prompted with the cycle keywords of its training
            descriptions (``"yearly cycle 12"``, ``"cycle 7"``; periods 2–64), else the neutral prompt.
    """

    name = "calmflow"

    def __init__(self, config: CaLMFlowForecastConfig = CaLMFlowForecastConfig(), model=None, *, season_length: int = 1):
        self.season_length = check_season_length(season_length)
        self.cfg = config
        self.min_context = config.context
        self.model = model if model is not None else self._build(config)
        self.model.eval().requires_grad_(False)

    @staticmethod
    def _build(cfg: CaLMFlowForecastConfig):
        from fuse.flow import CaLMFlow, CaLMFlowConfig, build_prompt_tokenizer

        torch.manual_seed(cfg.seed)
        tok = build_prompt_tokenizer([" ".join(VOCABULARY)], n_common=0) if cfg.text else None
        fc = CaLMFlowConfig(dim=1, space_dim=1, n_times=cfg.window, n_traj=1, encoder="mlp", head="gaussian",
                            path_noise=0.0, temperature=cfg.temperature, arch="gpt2", hidden_size=cfg.hidden_size,
                            n_layers=cfg.n_layers, n_heads=cfg.n_heads, vocab_size=len(tok) if tok is not None else 8,
                            max_prompt_tokens=cfg.max_prompt_tokens if cfg.text else 0,
                            task={"kind": "forecast", "context": cfg.context, "chunk": cfg.chunk})
        return CaLMFlow(fc, tok)

    # -- scaling ---------------------------------------------------------------------------------
    @staticmethod
    def _scale(ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of each row ``(B, C)`` → ``(B, 1)`` each (floored)."""
        mu = ctx.mean(-1, keepdim=True)
        sd = ctx.std(-1, unbiased=False, keepdim=True)
        return mu, torch.maximum(sd, torch.clamp(mu.abs() * 1e-3, min=_SCALE_FLOOR))

    def _prompt_embeds(self, prompts: list[str]) -> torch.Tensor | None:
        if not self.cfg.text:
            return None
        return self.model.embed_prompts(prompts)

    # -- training --------------------------------------------------------------------------------
    def fit(self, y=None, *, seed: int | None = None, progress: bool = False) -> "CaLMFlowForecaster":
        """Train on synthetic windows (plus windows of ``y`` if given). Returns ``self``.

        Args:
            y: optional history ``(T,)`` (at least ``context + chunk`` values) mixed into every batch
                (``history_weight`` of it).
            seed: overrides ``config.seed`` for the batches and the initialization (re-built).
            progress: a tqdm bar.
        """
        from tqdm.auto import tqdm

        from fuse.forecast.synthetic import synthetic_series

        cfg = self.cfg
        seed = cfg.seed if seed is None else int(seed)
        if seed != cfg.seed:
            from dataclasses import replace

            self.cfg = cfg = replace(cfg, seed=seed)
            self.model = self._build(cfg)
        own = None
        if y is not None:
            own = torch.tensor(as_series(y, min_length=cfg.window, name=self.name))
        data = torch.tensor(synthetic_series(cfg.train_series, cfg.train_length, seed=seed))
        model = self.model.train().requires_grad_(True)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
        warm = max(1, cfg.steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
        gen = torch.Generator().manual_seed(seed)
        W, C = cfg.window, cfg.context
        n_own = int(round(cfg.batch_size * cfg.history_weight)) if own is not None else 0
        bar = tqdm(range(cfg.steps), disable=not progress, desc="train calmflow")
        for step in bar:
            rows = torch.randint(0, data.shape[0], (cfg.batch_size - n_own,), generator=gen)
            start = torch.randint(0, cfg.train_length - W + 1, (cfg.batch_size - n_own,), generator=gen)
            x = data[rows[:, None], start[:, None] + torch.arange(W)]
            if n_own:
                s2 = torch.randint(0, own.numel() - W + 1, (n_own,), generator=gen)
                x = torch.cat([x, own[s2[:, None] + torch.arange(W)]], 0)
            mu, sd = self._scale(x[:, :C])
            z = ((x - mu) / sd).clamp(-_CLIP, _CLIP).float()
            prompts = None
            if cfg.text:
                drop = (torch.rand(x.shape[0], generator=gen) < cfg.text_dropout).tolist()
                prompts = []
                for d, w in zip(drop, x.numpy()):
                    words = [] if d else keywords(describe_window(w), cfg.max_prompt_tokens).split()
                    keep = (torch.rand(len(words), generator=gen) >= cfg.word_dropout).tolist()
                    prompts.append(" ".join(wd for wd, k in zip(words, keep) if k) or NEUTRAL)
            out = model.loss(z[:, None, :, None], self._prompt_embeds(prompts) if prompts else None, generator=gen)
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % 50 == 0:
                bar.set_postfix(nll=f"{out.loss.item():.3f}")
                logger.debug("calmflow step %d nll %.4f mse %.4f", step, out.loss.item(), out.recon.item())
        self.model = model.eval().requires_grad_(False)
        return self

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder) -> Path:
        """Write ``forecast_config.json`` and the CaLMFlow checkpoint (safetensors, no pickle)."""
        from fuse._version import __version__

        folder = Path(folder)
        self.model.save_pretrained(folder)
        (folder / "forecast_config.json").write_text(json.dumps({**asdict(self.cfg), "fuse_version": __version__,
                                                                  "kind": "calmflow-forecaster"}, indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder, *, season_length: int = 1) -> "CaLMFlowForecaster":
        from fuse.flow import CaLMFlow

        folder = Path(folder)
        path = folder / "forecast_config.json"
        if not path.is_file():
            raise ValueError(f"{str(folder)!r} holds no CaLMFlow forecaster (forecast_config.json missing)")
        raw = json.loads(path.read_text())
        cfg = CaLMFlowForecastConfig(**{k: v for k, v in raw.items() if k in CaLMFlowForecastConfig.__dataclass_fields__})
        return cls(cfg, CaLMFlow.from_pretrained(folder), season_length=season_length)

    @classmethod
    def pretrained(cls, config: CaLMFlowForecastConfig = CaLMFlowForecastConfig(), *,
                   progress: bool = False, season_length: int = 1) -> "CaLMFlowForecaster":
        """Load from the fuse cache, training on synthetic series and caching first if needed (~1–2 min CPU)."""
        from fuse.models.cache import cache_dir, trained_once

        dest = cache_dir("forecast") / f"calmflow-{config.key()}"
        if not dest.exists():
            logger.info("training the CaLMFlow forecaster (%d steps); cached at %s afterwards", config.steps, dest)
        return cls.load(trained_once(dest, lambda: cls(config).fit(progress=progress)), season_length=season_length)

    # -- forecasting ---------------------------------------------------------------------------
    def _rollout(self, ctx: torch.Tensor, steps: int, prompt_embeds, gen: torch.Generator) -> torch.Tensor:
        """Continue each row of ``ctx (S, C)`` (original units) by ``steps ≤ chunk`` values."""
        from transformers import DynamicCache

        m = self.model
        mu, sd = self._scale(ctx)
        z = ((ctx - mu) / sd).clamp(-_CLIP, _CLIP).float()
        S, C = z.shape
        tokens = m.embed_states(z[:, None, :, None])  # (S, C, H)
        if prompt_embeds is not None:
            tokens = torch.cat([m.pad_prompt_embeds(prompt_embeds).expand(S, -1, -1), tokens], 1)
        cache = DynamicCache()
        x = z[:, -1:, None]  # (S, 1, 1)
        out = []
        for k in range(steps):
            h, cache = m.hidden_states(tokens, cache)
            eps = torch.randn((S, 1, 1), generator=gen)
            delta, _, _ = m.head(h[:, -1:], eps, self.cfg.temperature)
            x = (x + delta).clamp(-_CLIP, _CLIP)
            out.append(x[:, 0, 0])
            tokens = m.embed_states(x, C + k)
        return torch.stack(out, 1).double() * sd + mu

    def _predict(self, y, horizon, *, n_samples, seed, description):
        gen = torch.Generator().manual_seed(seed)
        C = self.cfg.context
        if description is None and self.cfg.text:
            description = season_keywords(self.season_length)
        prompt = keywords(description, self.cfg.max_prompt_tokens) if self.cfg.text else None
        if description is not None and not self.cfg.text:
            logger.info("%s: this model is not text-conditioned; the description is ignored", self.name)
        with torch.no_grad():
            pe = self._prompt_embeds([prompt]) if prompt is not None else None
            path = torch.tensor(y[-C:], dtype=torch.float64).expand(n_samples, -1)
            new = []
            done = 0
            while done < horizon:
                k = min(self.cfg.chunk, horizon - done)
                nxt = self._rollout(path[:, -C:], k, pe, gen)
                new.append(nxt)
                path = torch.cat([path, nxt], 1)
                done += k
        samples = torch.cat(new, 1).numpy()
        if not np.isfinite(samples).all():
            raise ValueError(f"{self.name} generated non-finite values; the history's scale may be extreme")
        return Forecast(quantiles_from_samples(samples, QUANTILES), QUANTILES, samples)

    def loss(self, context, future, *, description: str | None = None,
             prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Gaussian NLL (nats per step, standardized units) of ``future (H ≤ chunk,)`` after ``context``.

        Differentiable in ``prompt_embeds (1, L, H)`` (a soft prompt replacing ``description``) and
        in the model's parameters when they require gradients.
        """
        from fuse.flow import GaussianHead

        C = self.cfg.context
        ctx = torch.tensor(as_series(context, min_length=C, name=self.name)[-C:])
        fut = np.asarray(future, dtype=np.float64).reshape(-1)
        if fut.size == 0 or fut.size > self.cfg.chunk or not np.isfinite(fut).all():
            raise ValueError(f"future must hold 1..{self.cfg.chunk} finite values, got {fut.size}")
        if prompt_embeds is None and self.cfg.text:
            prompt_embeds = self._prompt_embeds([keywords(description, self.cfg.max_prompt_tokens)])
        mu, sd = self._scale(ctx[None])
        z = ((torch.cat([ctx, torch.tensor(fut)])[None] - mu) / sd).clamp(-_CLIP, _CLIP).float()
        m = self.model
        tokens = m.embed_states(z[:, None, :-1, None])
        P = 0
        if prompt_embeds is not None:
            pe = m.pad_prompt_embeds(prompt_embeds)
            P = pe.shape[1]
            tokens = torch.cat([pe.to(tokens.dtype), tokens], 1)
        h, _ = m.hidden_states(tokens)
        h = h[:, P + C - 1:]
        target = (z[:, C:] - z[:, C - 1:-1])[..., None]
        _, mean, var = m.head(h, torch.zeros_like(target))
        return GaussianHead.nll(mean, var, target).mean()


__all__ = ["CaLMFlowForecastConfig", "CaLMFlowForecaster", "VOCABULARY", "describe_window", "keywords"]
