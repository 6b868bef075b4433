"""LLMTime-style forecasting with any causal LM: numbers as text, sampled digit by digit.

The history is scaled (:class:`~fuse.forecast.serialize.Scaler`), written as text
(:func:`~fuse.forecast.serialize.serialize`), optionally preceded by a text description of the
series (prompt-as-prefix, as in Time-LLM), and the LM continues it. Decoding is constrained to
the number format (digits, the minus sign, the separator), so every sample parses.
:meth:`LMForecaster.loss` is the differentiable NLL of a future given a history and an optional
soft prefix, which is what a description optimised through a bridge from another tokenizer
minimises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, quantiles_from_samples
from fuse.forecast.seasonality import check_season_length
from fuse.forecast.serialize import Scaler, SerializerConfig, deserialize, serialize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _TokenTable:
    """Tokens the number format may use, as boolean masks over the vocabulary ``(V,)``."""

    digits: torch.Tensor  # pure digit strings
    n_digits: torch.Tensor  # (V,) digit count of each pure-digit token
    sep: torch.Tensor  # exactly the separator
    sep_minus: torch.Tensor  # separator followed by the minus sign (merged tokens such as ",-")
    minus: torch.Tensor  # exactly the minus sign


def _token_table(tokenizer, vocab_rows: int, config: SerializerConfig) -> _TokenTable:
    allowed = set("0123456789") | set(config.time_sep) | set(config.minus)
    digits = torch.zeros(vocab_rows, dtype=torch.bool)
    n_digits = torch.zeros(vocab_rows, dtype=torch.long)
    sep, sep_minus, minus = (torch.zeros(vocab_rows, dtype=torch.bool) for _ in range(3))
    raw = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    for i, tok in enumerate(raw):
        if tok is None or i in special or not tok or not set(tok) <= allowed:
            continue
        text = tokenizer.decode([i])
        if text.isdigit() and text.isascii():
            digits[i], n_digits[i] = True, len(text)
        elif text == config.time_sep:
            sep[i] = True
        elif text == config.time_sep + config.minus:
            sep_minus[i] = True
        elif text == config.minus:
            minus[i] = True
    if not digits.any() or not sep.any():
        raise ValueError(f"the tokenizer has no single-token digits or no token for the separator {config.time_sep!r}; "
                         "pick another SerializerConfig.time_sep")
    return _TokenTable(digits, n_digits, sep, sep_minus, minus)


class LMForecaster(Forecaster):
    """A frozen causal LM that forecasts by continuing a serialized series.

    Args:
        backbone: a :class:`~fuse.models.backbones.CausalLMBackbone` or a name for :func:`fuse.models.loading.load`
            (e.g. ``"bundled:smollm2-135m"``).
        serializer: the number format.
        alpha, beta, basic: :class:`~fuse.forecast.serialize.Scaler` settings (LLMTime defaults).
        temperature: sampling temperature.
        max_history: only the last ``max_history`` values are written into the prompt (cost grows
            with it: about ``precision + 2`` tokens per value).
        batch_size: sample paths decoded together.
        progress: show a tqdm bar over sample batches.
        season_length: the seasonal period; with ``1 < m <= max_history`` the prompt holds a whole
            number of seasons (the last ``m · (max_history // m)`` values), so it starts at the
            same phase of the cycle as the forecast will.
    """

    min_context = 3

    def __init__(self, backbone="bundled:smollm2-135m", *, serializer: SerializerConfig = SerializerConfig(),
                 alpha: float = 0.95, beta: float = 0.3, basic: bool = False, temperature: float = 0.7,
                 max_history: int = 300, batch_size: int = 20, progress: bool = False, season_length: int = 1):
        if isinstance(backbone, str):
            from fuse.models.loading import load

            backbone = load(backbone)
        if getattr(backbone, "kind", None) != "causal_lm":
            raise ValueError(f"LMForecaster needs a causal LM backbone, got {backbone!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if max_history < self.min_context:
            raise ValueError(f"max_history must be >= {self.min_context}, got {max_history}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.season_length = check_season_length(season_length)
        self.backbone = backbone
        self.serializer = serializer
        self.scaler_args = dict(alpha=alpha, beta=beta, basic=basic)
        self.temperature = float(temperature)
        self.max_history = int(max_history)
        self.batch_size = int(batch_size)
        self.progress = progress
        self.name = f"llmtime:{backbone.name.removeprefix('bundled:')}"
        self._table: _TokenTable | None = None

    # -- text ----------------------------------------------------------------------------------
    def prompt(self, history: np.ndarray, description: str | None = None) -> tuple[str, Scaler]:
        """The prompt text for a (validated) history, and the scaler fitted on it."""
        n, m = self.max_history, self.season_length
        if 1 < m <= n:
            n = m * (n // m)
        history = history[-n:]
        scaler = Scaler(**self.scaler_args).fit(history)
        body = serialize(scaler.transform(history), self.serializer) + self.serializer.time_sep
        return ((description.strip() + "\n") if description else "") + body, scaler

    def _ids(self, text: str) -> torch.Tensor:
        return self.backbone.tokenizer(text, return_tensors="pt")["input_ids"].to(self.backbone.device)

    # -- sampling ------------------------------------------------------------------------------
    def _predict(self, y, horizon, *, n_samples, seed, description):
        from tqdm.auto import tqdm

        if self._table is None:
            self._table = _token_table(self.backbone.tokenizer, self.backbone.embeddings.shape[0], self.serializer)
        text, scaler = self.prompt(y, description)
        ids = self._ids(text)
        hist_digits = max(len(f.lstrip(self.serializer.minus)) for f in text.rsplit("\n", 1)[-1].split(self.serializer.time_sep)[:-1])
        cap = min(self.serializer.max_digits, hist_digits + 1)
        gen = torch.Generator().manual_seed(seed)
        paths = []
        batches = range(0, n_samples, self.batch_size)
        for start in tqdm(batches, disable=not self.progress, desc=f"{self.name} samples"):
            n = min(self.batch_size, n_samples - start)
            texts = self._sample(ids, n, horizon, cap, gen)
            for t in texts:
                v = deserialize(t, self.serializer, horizon)
                v = np.concatenate([v, np.full(horizon - v.size, np.nan)])
                paths.append(v)
        z = np.stack(paths)
        # A path that did not finish (never, with the constrained decoder, unless max steps ran out)
        # carries its last value forward.
        last = scaler.transform(y[-1:])[0]
        for row in z:
            for h in range(horizon):
                if not np.isfinite(row[h]):
                    row[h] = row[h - 1] if h else last
        samples = scaler.inverse(z)
        return Forecast(quantiles_from_samples(samples, QUANTILES), QUANTILES, samples)

    @torch.no_grad()
    def _sample(self, ids: torch.Tensor, n: int, horizon: int, cap: int, gen: torch.Generator) -> list[str]:
        tab = self._table
        model = self.backbone.model
        dev = ids.device
        out = model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        if hasattr(cache, "batch_repeat_interleave"):
            cache.batch_repeat_interleave(n)
            logits = out.logits[:, -1].expand(n, -1).float()
        else:  # pragma: no cover - older caches
            out = model(input_ids=ids.expand(n, -1), use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1].float()
        neg = torch.tensor(float("-inf"))
        m_start = tab.digits | tab.minus  # no empty value
        m_minus = tab.digits
        m_mid = tab.digits | tab.sep | tab.sep_minus
        m_full = tab.sep | tab.sep_minus
        n_sep = torch.zeros(n, dtype=torch.long)
        n_dig = torch.zeros(n, dtype=torch.long)
        after_minus = torch.zeros(n, dtype=torch.bool)
        pieces: list[list[int]] = [[] for _ in range(n)]
        attn = torch.ones(n, ids.shape[1], dtype=torch.long, device=dev)
        for _ in range(horizon * (cap + 2)):
            done = n_sep >= horizon
            if bool(done.all()):
                break
            mask = torch.where(after_minus[:, None], m_minus, torch.where((n_dig == 0)[:, None], m_start,
                               torch.where((n_dig >= cap)[:, None], m_full, m_mid)))
            lg = logits[:, : mask.shape[1]].cpu() / self.temperature
            lg = torch.where(mask, lg, neg)
            probs = torch.softmax(lg, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            is_digit = tab.digits[nxt]
            is_sep = tab.sep[nxt] | tab.sep_minus[nxt]
            n_dig = torch.where(is_sep, torch.zeros_like(n_dig), n_dig + tab.n_digits[nxt])
            after_minus = tab.sep_minus[nxt] | (tab.minus[nxt] & ~is_digit)
            n_sep = n_sep + is_sep.long()
            for i in range(n):
                if not done[i]:
                    pieces[i].append(int(nxt[i]))
            attn = torch.cat([attn, torch.ones(n, 1, dtype=torch.long, device=dev)], dim=1)
            out = model(input_ids=nxt[:, None].to(dev), past_key_values=cache, attention_mask=attn, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1].float()
        return [self.backbone.tokenizer.decode(p) for p in pieces]

    # -- differentiable loss -------------------------------------------------------------------
    def loss(self, context, future, *, description: str | None = None, prefix_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL (nats per token) of the serialized ``future`` after the serialized ``context``.

        Args:
            context: history ``(T,)``.
            future: the values that followed ``(H,)`` (scaled with the history's scaler).
            description: optional text written before the numbers.
            prefix_embeds: optional soft prefix ``(P, d)`` or ``(1, P, d)`` prepended to the
                embedded text; gradients flow into it (and into anything it came from).

        Returns:
            a scalar tensor.
        """
        hist = np.asarray(context, dtype=np.float64)
        fut = np.asarray(future, dtype=np.float64).reshape(-1)
        if fut.size == 0 or not np.isfinite(fut).all():
            raise ValueError("future must be a non-empty array of finite values")
        from fuse.forecast.series import as_series

        hist = as_series(hist, min_length=self.min_context, name=self.name)
        text, scaler = self.prompt(hist, description)
        target_text = serialize(scaler.transform(fut), self.serializer)
        ids_ctx = self._ids(text)
        ids = self._ids(text + target_text)
        n_ctx = ids_ctx.shape[1]
        if not torch.equal(ids[0, :n_ctx], ids_ctx[0]):  # merged token across the boundary
            n_ctx -= 1
        emb = self.backbone.embed(ids)
        P = 0
        if prefix_embeds is not None:
            pe = prefix_embeds if prefix_embeds.dim() == 3 else prefix_embeds.unsqueeze(0)
            if pe.shape[-1] != emb.shape[-1]:
                raise ValueError(f"prefix_embeds has width {pe.shape[-1]}, the LM expects {emb.shape[-1]}")
            P = pe.shape[1]
            emb = torch.cat([pe.to(emb.dtype), emb], dim=1)
        logits = self.backbone.logits(emb)[0, P + n_ctx - 1: -1].float()
        return torch.nn.functional.cross_entropy(logits, ids[0, n_ctx:])
