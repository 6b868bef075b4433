"""Forecasters behind one interface: ``fit``, ``predict`` (quantiles and samples), ``loss``.

Example:
    >>> import numpy as np
    >>> from fuse.forecast import get_forecaster
    >>> f = get_forecaster("auto_ets", season_length=12)  # or DEFAULT_MODEL ("auto"), the best measured
    >>> fc = f.predict(np.sin(np.arange(60) / 12 * 2 * np.pi), horizon=6)
    >>> fc.quantiles.shape, fc.samples.shape
    ((6, 9), (20, 6))
"""

from fuse.forecast.base import (QUANTILES, Forecast, Forecaster, pinball_loss, quantiles_from_samples,
                                samples_from_quantiles)
from fuse.forecast.ensemble import MedianEnsemble, median_quantiles
from fuse.forecast.select import SelectForecaster
from fuse.forecast.registry import DEFAULT_MODEL, REGISTRY, ForecasterSpec, available, get_forecaster, register
from fuse.forecast.pipeline import ForecastConfig, ForecastResult, forecast_csv, resolve_season_length
from fuse.forecast.seasonality import infer_season_length, season_length_for_freq
from fuse.forecast.serialize import Scaler, SerializerConfig, deserialize, serialize
from fuse.forecast.series import CsvSeries, as_series, read_csv_series, read_csv_timeseries

__all__ = [
    "DEFAULT_MODEL", "QUANTILES", "REGISTRY", "CsvSeries", "Forecast", "ForecastConfig", "ForecastResult", "Forecaster",
    "ForecasterSpec", "MedianEnsemble", "Scaler", "SelectForecaster", "SerializerConfig", "as_series", "available", "deserialize",
    "forecast_csv", "get_forecaster", "infer_season_length", "median_quantiles", "pinball_loss",
    "quantiles_from_samples", "read_csv_series", "read_csv_timeseries", "register", "resolve_season_length",
    "samples_from_quantiles", "season_length_for_freq", "serialize",
]
