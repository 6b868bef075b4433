"""Statistical baselines from ``statsforecast`` (Nixtla): AutoETS, AutoARIMA, AutoTheta, SeasonalNaive, Naive.

The models are statsforecast's own; this module only maps their prediction intervals to the
quantile levels of :data:`~fuse.forecast.base.QUANTILES` (the central ``L`` % interval gives the
``(1 − L/100)/2`` and ``(1 + L/100)/2`` quantiles; the point forecast is the median, as their
intervals are symmetric).
"""

from __future__ import annotations

import logging

import numpy as np

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, samples_from_quantiles
from fuse.forecast.seasonality import check_season_length

logger = logging.getLogger(__name__)

_KINDS = ("auto_ets", "auto_arima", "auto_theta", "seasonal_naive", "naive")


def _levels_for(quantiles) -> list[int]:
    return sorted({int(round(abs(1 - 2 * q) * 100)) for q in quantiles if abs(q - 0.5) > 1e-9})


class StatsForecastBaseline(Forecaster):
    """One statsforecast model as a :class:`~fuse.forecast.base.Forecaster`.

    Args:
        kind: ``"auto_ets"``, ``"auto_arima"``, ``"auto_theta"``, ``"seasonal_naive"`` or ``"naive"``.
        season_length: the seasonal period (1 = none). Seasonal models fall back to
            ``season_length=1`` (logged) on histories shorter than two seasons.
    """

    def __init__(self, kind: str = "auto_ets", season_length: int = 1):
        if kind not in _KINDS:
            raise ValueError(f"unknown statsforecast baseline {kind!r}; use one of {list(_KINDS)}")
        try:
            import statsforecast  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValueError("the statsforecast baselines need `pip install statsforecast`") from e
        self.kind = kind
        self.season_length = check_season_length(season_length)
        self.name = kind
        self.min_context = 2 if kind == "naive" else 3

    def _model(self, season_length: int):
        from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, Naive, SeasonalNaive

        if self.kind == "auto_ets":
            return AutoETS(season_length=season_length)
        if self.kind == "auto_arima":
            return AutoARIMA(season_length=season_length)
        if self.kind == "auto_theta":
            return AutoTheta(season_length=season_length)
        if self.kind == "seasonal_naive":
            return SeasonalNaive(season_length=season_length)
        return Naive()

    def _predict(self, y, horizon, *, n_samples, seed, description):
        m = self.season_length
        if m > 1 and y.size < 2 * m:
            logger.info("%s: history of %d < two seasons of %d; fitting without seasonality", self.name, y.size, m)
            m = 1
        if self.kind == "auto_arima" and m > 24:
            logger.warning("auto_arima: a seasonal ARIMA with season %d can take many minutes per forecast "
                           "(over 9 min at season 52 and 1000 values); --model auto_ets or --season-length 1 are fast", m)
        levels = _levels_for(QUANTILES)
        out = self._model(m).forecast(y=y.astype(np.float64), h=horizon, level=levels)
        mean = np.asarray(out["mean"], dtype=np.float64)
        q = np.empty((horizon, len(QUANTILES)))
        for j, tau in enumerate(QUANTILES):
            if abs(tau - 0.5) < 1e-9:
                q[:, j] = mean
                continue
            level = int(round(abs(1 - 2 * tau) * 100))
            q[:, j] = np.asarray(out[f"{'lo' if tau < 0.5 else 'hi'}-{level}"], dtype=np.float64)
        # A perfectly fitted model can return NaN interval widths; collapse them onto the mean.
        q = np.where(np.isfinite(q), q, mean[:, None])
        return Forecast(q, QUANTILES, samples_from_quantiles(q, QUANTILES, n_samples, seed))
