"""Forecasters behind one interface: ``fit``, ``predict`` (quantiles and samples), ``loss``.

Example:
    >>> import numpy as np
    >>> from fuse.forecast import get_forecaster
    >>> f = get_forecaster("auto_ets", season_length=12)
    >>> fc = f.predict(np.sin(np.arange(60) / 12 * 2 * np.pi), horizon=6)
    >>> fc.quantiles.shape, fc.samples.shape
    ((6, 9), (20, 6))
"""

from fuse.forecast.base import (QUANTILES, Forecast, Forecaster, pinball_loss, quantiles_from_samples,
                                samples_from_quantiles)
from fuse.forecast.registry import REGISTRY, ForecasterSpec, available, get_forecaster, register
from fuse.forecast.serialize import Scaler, SerializerConfig, deserialize, serialize
from fuse.forecast.series import as_series, read_csv_series

__all__ = [
    "QUANTILES", "REGISTRY", "Forecast", "Forecaster", "ForecasterSpec", "Scaler", "SerializerConfig",
    "as_series", "available", "deserialize", "get_forecaster", "pinball_loss", "quantiles_from_samples",
    "read_csv_series", "register", "samples_from_quantiles", "serialize",
]
