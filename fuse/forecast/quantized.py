"""A Chronos-style forecaster: mean-scaled, uniformly quantized values as tokens of a small causal
transformer trained from scratch on synthetic series (Ansari et al., 2024, in miniature).

Values are divided by the mean absolute value of the context, mapped to the nearest of
``n_bins`` uniform bin centres in ``[low, high]`` (token ``id = 1 + bin``; ``0`` is padding),
and a decoder-only transformer is trained with cross-entropy on the next token. Forecasts are
sampled autoregressively and mapped back through the bin centres and the scale.
"""

from __future__ import annotations

import json
import math
import logging

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, quantiles_from_samples

logger = logging.getLogger(__name__)

PAD = 0


@dataclass(frozen=True)
class QuantizedConfig:
    """Model, tokenizer and training settings (all of it determines the cached weights)."""

    n_bins: int = 1024
    low: float = -8.0
    high: float = 8.0
    context: int = 96
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    train_series: int = 2000
    train_length: int = 128
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        if self.n_bins < 2 or not self.low < self.high:
            raise ValueError(f"need n_bins >= 2 and low < high, got {self.n_bins}, [{self.low}, {self.high}]")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.train_length <= 8 or self.context < 8:
            raise ValueError("train_length and context must be > 8")

    def key(self) -> str:
        from fuse.models.cache import config_key

        return config_key(self)


class MeanScaleTokenizer:
    """Mean scaling + uniform quantization.

    ``encode(x (B, T), scale (B,)) -> ids (B, T)``, ``decode(ids) -> values``; NaN encodes to PAD.
    """

    def __init__(self, n_bins: int, low: float, high: float):
        self.centers = torch.linspace(low, high, n_bins, dtype=torch.float64)
        self.edges = (self.centers[1:] + self.centers[:-1]) / 2

    @property
    def vocab_size(self) -> int:
        return self.centers.numel() + 1

    @staticmethod
    def scale(context: torch.Tensor) -> torch.Tensor:
        """Mean absolute value of each row ``(B,)`` (NaN ignored; 1 where it is 0)."""
        a = torch.nan_to_num(context.abs(), nan=0.0)
        n = torch.isfinite(context).sum(-1).clamp_min(1)
        s = a.sum(-1) / n
        return torch.where(s > 0, s, torch.ones_like(s))

    def encode(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        z = (x.double() / scale.double()[:, None])
        ids = torch.bucketize(z.nan_to_num(0.0), self.edges) + 1
        return torch.where(torch.isfinite(z), ids, torch.full_like(ids, PAD))

    def decode(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        c = self.centers.to(scale.dtype)
        return c[(ids - 1).clamp_min(0)] * scale[:, None]


class QuantizedLM(nn.Module):
    """A small pre-norm causal transformer over value tokens."""

    def __init__(self, cfg: QuantizedConfig):
        super().__init__()
        self.cfg = cfg
        V = cfg.n_bins + 1
        self.tok = nn.Embedding(V, cfg.d_model)
        self.pos = nn.Embedding(cfg.context + 64, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, V)

    @property
    def max_len(self) -> int:
        return self.pos.num_embeddings

    def forward_embeds(self, inputs_embeds: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, L, V)`` from token embeddings ``(B, L, d)`` (differentiable in them)."""
        L = inputs_embeds.shape[1]
        x = inputs_embeds + self.pos.weight[:L]
        causal = torch.triu(torch.full((L, L), float("-inf"), device=x.device), 1)
        h = self.body(x, mask=causal, src_key_padding_mask=pad_mask)
        return self.head(self.norm(h))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_embeds(self.tok(ids), None)


class QuantizedForecaster(Forecaster):
    """The Chronos-style forecaster. Build with :meth:`pretrained` (trains once, then caches).

    Args:
        model: a trained :class:`QuantizedLM`.
        temperature: sampling temperature.
        batch_size: sample paths decoded together.
    """

    name = "chronos-tiny"
    min_context = 8

    def __init__(self, model: QuantizedLM, *, temperature: float = 1.0, batch_size: int = 100):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model.eval().requires_grad_(False)
        self.cfg = model.cfg
        self.tokenizer = MeanScaleTokenizer(self.cfg.n_bins, self.cfg.low, self.cfg.high)
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)

    # -- training / caching --------------------------------------------------------------------
    @classmethod
    def train(cls, cfg: QuantizedConfig = QuantizedConfig(), *, progress: bool = False) -> "QuantizedForecaster":
        """Train on :func:`~fuse.forecast.synthetic.synthetic_series` (seeded by ``cfg.seed``)."""
        from tqdm.auto import tqdm

        from fuse.forecast.synthetic import synthetic_series

        torch.manual_seed(cfg.seed)
        data = torch.tensor(synthetic_series(cfg.train_series, cfg.train_length, seed=cfg.seed))
        tok = MeanScaleTokenizer(cfg.n_bins, cfg.low, cfg.high)
        model = QuantizedLM(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
        warm = max(1, cfg.steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
        gen = torch.Generator().manual_seed(cfg.seed)
        win = min(cfg.train_length, cfg.context + 32)
        bar = tqdm(range(cfg.steps), disable=not progress, desc="train chronos-tiny")
        for step in bar:
            rows = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
            start = torch.randint(0, cfg.train_length - win + 1, (cfg.batch_size,), generator=gen)
            ctx_len = torch.randint(8, win - 1, (1,), generator=gen).item()
            x = torch.stack([data[r, s:s + win] for r, s in zip(rows.tolist(), start.tolist())])
            ids = tok.encode(x, tok.scale(x[:, :ctx_len]))
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
                logger.debug("step %d loss %.4f", step, loss.item())
        return cls(model)

    def save(self, folder) -> None:
        """Write ``config.json`` (sorted, with the fuse version) and ``model.safetensors``."""
        from safetensors.torch import save_file

        from fuse._version import __version__

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**asdict(self.cfg), "fuse_version": __version__,
                                                         "kind": "chronos-tiny"}, indent=2, sort_keys=True))
        state = {k: v.detach().contiguous().clone() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def load(cls, folder, **kwargs) -> "QuantizedForecaster":
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise ValueError(f"{str(folder)!r} holds no chronos-tiny model (config.json + model.safetensors)")
        raw = json.loads((folder / "config.json").read_text())
        cfg = QuantizedConfig(**{k: v for k, v in raw.items() if k in QuantizedConfig.__dataclass_fields__})
        model = QuantizedLM(cfg)
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return cls(model, **kwargs)

    @classmethod
    def pretrained(cls, cfg: QuantizedConfig = QuantizedConfig(), *, progress: bool = False, **kwargs) -> "QuantizedForecaster":
        """Load from the fuse cache, training and caching first if needed (a few minutes on CPU)."""
        from fuse.models.cache import cache_dir, trained_once

        dest = cache_dir("forecast") / f"chronos-tiny-{cfg.key()}"
        if not dest.exists():
            logger.info("training chronos-tiny (%d steps); cached at %s afterwards", cfg.steps, dest)
        return cls.load(trained_once(dest, lambda: cls.train(cfg, progress=progress)), **kwargs)

    # -- forecasting ---------------------------------------------------------------------------
    def _context_ids(self, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = torch.tensor(y[-self.cfg.context:], dtype=torch.float64)[None]
        scale = self.tokenizer.scale(ctx)
        return self.tokenizer.encode(ctx, scale), scale

    def _predict(self, y, horizon, *, n_samples, seed, description):
        ids, scale = self._context_ids(y)
        gen = torch.Generator().manual_seed(seed)
        out = []
        with torch.no_grad():
            for start in range(0, n_samples, self.batch_size):
                n = min(self.batch_size, n_samples - start)
                seq = ids.expand(n, -1)
                new = []
                for _ in range(horizon):
                    window = seq[:, -(self.model.max_len):]
                    logits = self.model(window)[:, -1].float() / self.temperature
                    logits[:, PAD] = float("-inf")
                    nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
                    new.append(nxt)
                    seq = torch.cat([seq, nxt], 1)
                out.append(self.tokenizer.decode(torch.cat(new, 1), scale.expand(n)))
        samples = torch.cat(out).numpy()
        return Forecast(quantiles_from_samples(samples, QUANTILES), QUANTILES, samples)

    def loss(self, context, future, *, prefix_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy (nats per step) of the tokens of ``future (H,)`` after ``context (T,)``.

        ``prefix_embeds (P, d)`` is an optional soft prefix; gradients flow into it.
        """
        ctx = np.asarray(context, dtype=np.float64)
        fut = np.asarray(future, dtype=np.float64).reshape(-1)
        if fut.size == 0 or not np.isfinite(fut).all():
            raise ValueError("future must be a non-empty array of finite values")
        from fuse.forecast.series import as_series

        ctx = as_series(ctx, min_length=self.min_context, name=self.name)
        ids, scale = self._context_ids(ctx)
        fid = self.tokenizer.encode(torch.tensor(fut)[None], scale)
        all_ids = torch.cat([ids, fid], 1)
        emb = self.model.tok(all_ids)
        P = 0
        if prefix_embeds is not None:
            pe = prefix_embeds if prefix_embeds.dim() == 3 else prefix_embeds.unsqueeze(0)
            P = pe.shape[1]
            emb = torch.cat([pe, emb], 1)
        if emb.shape[1] - 1 > self.model.max_len:
            raise ValueError(f"context + future + prefix is {emb.shape[1]} tokens; this model takes {self.model.max_len}")
        logits = self.model.forward_embeds(emb[:, :-1])
        n_ctx = ids.shape[1]
        return F.cross_entropy(logits[0, P + n_ctx - 1:], fid[0])


def bin_width(cfg: QuantizedConfig) -> float:
    """Width of one quantization bin in scaled units."""
    return (cfg.high - cfg.low) / (cfg.n_bins - 1)


__all__ = ["QuantizedConfig", "MeanScaleTokenizer", "QuantizedLM", "QuantizedForecaster", "bin_width"]
