"""The bundled pretrained ``fracast`` forecaster (Apache-2.0, 85k parameters), wrapped.

``FracastModel.forecast`` runs under ``torch.inference_mode``; :meth:`FracastForecaster.quantiles`
re-implements its input normalisation with torch ops and calls ``core`` and
``head.forward_horizon`` directly, so gradients flow to the history (and to anything upstream
of it, such as a bridge from another model).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, pinball_loss, samples_from_quantiles
from fuse.forecast.seasonality import check_season_length

logger = logging.getLogger(__name__)


class FracastForecaster(Forecaster):
    """fracast-0 (context 2048, native horizon 48, quantiles 0.1…0.9).

    Args:
        weights: ``"fp32"`` (default) or ``"w8"``, the two checkpoints the package ships.
        device: torch device.
        season_length: the seasonal period (1 = none). With a period ``m > 1`` the context is
            cut to a whole number of seasons (the longest multiple of ``m`` within the history and
            the 2048-step window), so the min–max normalisation and fracast's own periodogram see
            complete cycles.
    """

    name = "fracast"
    min_context = 8

    def __init__(self, weights: str = "fp32", device: str = "cpu", season_length: int = 1):
        try:
            from fracast import FracastModel
        except ImportError as e:  # pragma: no cover - environment dependent
            raise ValueError("the fracast forecaster needs `pip install fracast==0.1.0`") from e
        if weights not in ("fp32", "w8"):
            raise ValueError(f"weights must be 'fp32' or 'w8', got {weights!r}")
        self.season_length = check_season_length(season_length)
        self.model = FracastModel.from_pretrained(weights=weights, device=device)
        self.model.core.requires_grad_(False)
        self.model.head.requires_grad_(False)
        if tuple(self.model.quantiles) != QUANTILES:
            raise ValueError(f"fracast quantiles {self.model.quantiles} differ from {QUANTILES}")

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @property
    def native_horizon(self) -> int:
        return self.model.horizon

    def context(self, y: np.ndarray) -> np.ndarray:
        """The part of the history fracast sees: the last ``context_length`` values, cut to whole seasons."""
        n = min(y.size, self.context_length)
        m = self.season_length
        if m > 1 and n >= 2 * m:
            n = (n // m) * m
        return y[-n:]

    def _predict(self, y, horizon, *, n_samples, seed, description):
        q = np.asarray(self.model.forecast(self.context(y).astype(np.float32), horizon=horizon), dtype=np.float64)
        return Forecast(q, QUANTILES, samples_from_quantiles(q, QUANTILES, n_samples, seed))

    def quantiles(self, context: torch.Tensor) -> torch.Tensor:
        """Differentiable native-horizon quantiles.

        Args:
            context: ``(B, T)`` histories (finite, ``8 <= T``; only the last 2048 are used).

        Returns:
            ``(B, 48, 9)`` quantiles in the units of ``context``; gradients flow to ``context``.
        """
        if context.dim() == 1:
            context = context.unsqueeze(0)
        if context.dim() != 2 or context.shape[1] < self.min_context:
            raise ValueError(f"context must be (B, T) with T >= {self.min_context}, got {tuple(context.shape)}")
        if not torch.isfinite(context).all():
            raise ValueError("context must be finite; interpolate NaNs first (fuse.forecast.as_series)")
        W = self.context_length
        tail = context[:, -W:].float()
        loc = tail.min(dim=1, keepdim=True).values
        span = (tail.max(dim=1, keepdim=True).values - loc).clamp_min(1e-5)
        norm = (tail - loc) / span
        B, T = norm.shape
        values = torch.cat([norm.new_zeros(B, W - T), norm], dim=1)[:, None, :]
        valid = torch.zeros(B, 1, W, dtype=torch.bool, device=values.device)
        valid[..., W - T:] = True
        hidden = self.model.core(values, valid, valid.float())
        q = self.model.head.forward_horizon(hidden, last_obs=values[:, 0, -1:], ctx=values[:, 0], ctx_mask=valid[:, 0])
        return q * span[:, :, None] + loc[:, :, None]

    def loss(self, context, future) -> torch.Tensor:
        """Pinball loss of ``future (B, H ≤ 48)`` under the forecast from ``context (B, T)``,
        in units of the context's range (scale-free); differentiable in both."""
        context = torch.as_tensor(context, dtype=torch.float32)
        future = torch.as_tensor(future, dtype=torch.float32)
        if context.dim() == 1:
            context, future = context.unsqueeze(0), future.reshape(1, -1)
        H = future.shape[-1]
        if not 1 <= H <= self.native_horizon:
            raise ValueError(f"future must have 1..{self.native_horizon} steps, got {H}")
        q = self.quantiles(context)[:, :H]
        span = (context.max(dim=1, keepdim=True).values - context.min(dim=1, keepdim=True).values).clamp_min(1e-5)
        return pinball_loss(q / span[:, :, None], future / span, QUANTILES)
