"""Forecasting a CSV file end to end: read the series and its dates, settle the season length,
forecast with the chosen (by default the measured-best) model, and date the future rows.

``fuse forecast`` is a thin wrapper around :func:`forecast_csv`; both take their defaults from
:class:`ForecastConfig`.

Example:
    >>> from fuse.forecast.pipeline import ForecastConfig, forecast_csv
    >>> result = forecast_csv("monthly.csv", ForecastConfig(horizon=12))  # doctest: +SKIP
    >>> result.season_length, result.frame.columns[0]                     # doctest: +SKIP
    (12, 'date')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from fuse.forecast.base import QUANTILES, Forecast
from fuse.forecast.registry import DEFAULT_MODEL, REGISTRY
from fuse.forecast.seasonality import check_season_length, infer_season_length, season_length_for_freq
from fuse.forecast.series import CsvSeries, as_series, read_csv_timeseries

logger = logging.getLogger(__name__)


@dataclass
class ForecastConfig:
    """Options of one forecast (the CLI's defaults are these).

    Attributes:
        model: a registered forecaster name (``fuse forecast --list``); the default is the one
            with the best geometric-mean relative MASE and CRPS in ``benchmarks/forecasting.py``.
        horizon: future steps to forecast.
        season_length: the seasonal period; ``None`` takes it from the dates' frequency, or, for
            undated data, from the autocorrelation test of :func:`~fuse.forecast.seasonality.infer_season_length`.
        freq: a pandas frequency alias imposed on the dates (``None`` infers it); missing steps
            of that grid are interpolated.
        samples: sample paths drawn by sampling models.
        seed: seeds every random choice.
    """

    model: str = DEFAULT_MODEL
    horizon: int | None = None
    season_length: int | None = None
    freq: str | None = None
    samples: int = field(default=20, metadata={"help": "sample paths for sampling models"})
    seed: int = 0

    def __post_init__(self):
        if self.model not in REGISTRY:
            raise ValueError(f"unknown forecaster {self.model!r}; choose one of {sorted(REGISTRY)} (see `fuse forecast --list`)")
        if self.horizon is not None and (isinstance(self.horizon, bool) or not isinstance(self.horizon, (int, np.integer))
                                         or self.horizon < 1):
            raise ValueError(f"horizon must be a positive integer, got {self.horizon!r}")
        if self.season_length is not None:
            check_season_length(self.season_length)
        if isinstance(self.samples, bool) or not isinstance(self.samples, (int, np.integer)) or self.samples < 1:
            raise ValueError(f"samples must be a positive integer, got {self.samples!r}")


def resolve_season_length(values: np.ndarray, freq: str | None, season_length: int | None = None) -> tuple[int, str]:
    """The season length to use and where it came from.

    ``season_length`` when given, else the frequency's (:func:`season_length_for_freq`), else
    the data's (:func:`infer_season_length`).

    Returns:
        ``(m, source)`` with ``source`` one of ``"given"``, ``"frequency <alias>"``, ``"autocorrelation"``.
    """
    if season_length is not None:
        return check_season_length(season_length), "given"
    if freq is not None:
        return season_length_for_freq(freq), f"frequency {freq}"
    y = as_series(values, name="series")
    return infer_season_length(y), "autocorrelation"


@dataclass
class ForecastResult:
    """What :func:`forecast_csv` returns.

    Attributes:
        frame: one row per future step: the date column (when the input had dates), ``step``,
            ``median`` and ``q0.1 … q0.9``.
        forecast: the :class:`~fuse.forecast.base.Forecast`.
        series: the series as read (values, column, dates, frequency).
        history: the validated history the model saw ``(T,)``.
        season_length: the season length used, and ``season_source`` where it came from.
        model: the forecaster's name.
    """

    frame: object
    forecast: Forecast
    series: CsvSeries
    history: np.ndarray
    season_length: int
    season_source: str
    model: str


def forecast_csv(path, config: ForecastConfig, *, column: str | None = None, date_column: str | None = None,
                 description: str | None = None, progress: bool = False) -> ForecastResult:
    """Forecast the series in a CSV file.

    Args:
        path: the CSV file.
        config: model, horizon (required), season length, frequency, samples, seed.
        column: the value column (default ``value``, else the last numeric column).
        date_column: the date column (default: found, see :func:`~fuse.forecast.timeindex.find_date_column`).
        description: text describing the series (for the LM and CaLMFlow forecasters).
        progress: tqdm bars in the slow forecasters.

    Raises:
        ValueError: no horizon, bad file or columns, irregular or duplicated timestamps, too short a history.
    """
    import pandas as pd

    from fuse.forecast.registry import get_forecaster
    from fuse.forecast.timeindex import format_dates, future_dates

    if config.horizon is None:
        raise ValueError("give a horizon (--horizon H): the number of future steps to forecast")
    series = read_csv_timeseries(path, column, date_column=date_column, freq=config.freq)
    m, source = resolve_season_length(series.values, series.freq, config.season_length)
    logger.info("season length %d (%s)", m, source)
    model = get_forecaster(config.model, season_length=m, progress=progress)
    y = as_series(series.values, min_length=model.min_context, name=f"{path}:{series.column}")
    fc = model.predict(y, config.horizon, n_samples=config.samples, seed=config.seed, description=description)
    cols = {}
    if series.dates is not None:  # the future starts after the last observed step (trailing NaNs are dropped)
        last = int(np.flatnonzero(np.isfinite(series.values))[-1])
        cols[series.date_column] = format_dates(future_dates(series.dates[:last + 1], series.freq, fc.horizon), series.freq)
    cols["step"] = np.arange(1, fc.horizon + 1)
    cols["median"] = fc.median
    for j, q in enumerate(QUANTILES):
        cols[f"q{q:g}"] = fc.quantiles[:, j]
    return ForecastResult(pd.DataFrame(cols), fc, series, y, m, source, model.name)
