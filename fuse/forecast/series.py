"""Validating univariate series and reading them from CSV files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def as_series(y, *, min_length: int = 1, name: str = "series") -> np.ndarray:
    """Validate a history and return it as float64 ``(T,)``.

    Leading and trailing NaNs are dropped, interior NaNs are linearly interpolated.

    Args:
        y: 1-D array-like of numbers (a list, numpy array, pandas Series or torch tensor).
        min_length: the fewest observations accepted.
        name: who asks (for the error message).

    Raises:
        ValueError: not 1-D, not numeric, infinite values, only NaN, or shorter than ``min_length``.
    """
    try:
        if hasattr(y, "detach"):
            y = y.detach().cpu().numpy()
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: the series must be numeric; could not convert it to floats ({e})") from e
    if arr.ndim != 1:
        raise ValueError(f"{name}: the series must be 1-D (one value per time step), got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name}: the series contains infinite values at positions "
                         f"{np.flatnonzero(np.isinf(arr))[:5].tolist()}; replace them with NaN or finite numbers")
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError(f"{name}: the series has no finite values (all {arr.size} are NaN or it is empty)")
    first, last = np.flatnonzero(finite)[[0, -1]]
    arr = arr[first:last + 1]
    finite = finite[first:last + 1]
    if not finite.all():
        idx = np.arange(arr.size)
        logger.info("%s: interpolating %d interior NaN value(s)", name, int((~finite).sum()))
        arr = np.interp(idx, idx[finite], arr[finite])
    if arr.size < min_length:
        raise ValueError(f"{name}: the series has {arr.size} finite observations but this model needs at least "
                         f"{min_length} (its context); pass a longer history or pick another model")
    return arr


@dataclass
class CsvSeries:
    """One series read from a CSV file.

    Attributes:
        values: ``(T,)`` float64 (NaN where missing; validate with :func:`as_series`).
        column: the value column's name.
        dates: a regular :class:`pandas.DatetimeIndex` ``(T,)``, or ``None`` without a date column.
        date_column: the date column's name, or ``None``.
        freq: the pandas frequency alias of ``dates`` (e.g. ``"MS"``), or ``None``.
    """

    values: np.ndarray
    column: str
    dates: object = None
    date_column: str | None = None
    freq: str | None = None


def read_csv_timeseries(path, column: str | None = None, *, date_column: str | None = None,
                        freq: str | None = None) -> CsvSeries:
    """Read one series and its timestamps from a CSV file.

    The value column is ``column``, else ``value``, else the last numeric column that is not the
    date column. The date column is ``date_column``, else the first column that parses entirely as
    timestamps (columns named ``date``, ``ds``, ``timestamp``, ``month``, ``year`` … first; see
    :func:`fuse.forecast.timeindex.find_date_column`). With dates the rows are sorted by time and
    the frequency inferred (or ``freq`` used: missing steps of that grid become NaN).

    Raises:
        ValueError: missing file, unparsable CSV, no numeric column, a named column absent or not
            numeric / not dates, ``freq`` without a date column, duplicated or irregular timestamps.
    """
    from fuse.forecast.timeindex import find_date_column, parse_dates, regular_index

    p, df = _read_frame(path)
    if date_column is not None:
        if date_column not in df.columns:
            raise ValueError(f"{str(p)!r} has no date column {date_column!r}; its columns are {list(df.columns)}")
        if parse_dates(df[date_column], str(date_column)) is None:
            raise ValueError(f"column {date_column!r} of {str(p)!r} does not parse as dates, e.g. "
                             f"{df[date_column].iloc[0]!r}; use ISO dates such as 2024-01-31")
    else:
        date_column = find_date_column(df, exclude=(column,) if column is not None else ())
    values, column = _value_column(df, p, column, exclude=date_column)
    if date_column is None:
        if freq is not None:
            raise ValueError(f"--freq {freq!r} needs a date column, and {str(p)!r} has none that parses as dates "
                             f"(columns: {list(df.columns)}); use --season-length for undated data")
        return CsvSeries(values, column)
    dates = parse_dates(df[date_column], str(date_column))
    reg = regular_index(dates, values, freq)
    logger.info("%s: %d rows dated by column %r at frequency %s", p.name, reg.values.size, date_column, reg.freq)
    return CsvSeries(reg.values, column, reg.dates, str(date_column), reg.freq)


def _read_frame(path):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"CSV file {str(p)!r} does not exist")
    try:
        return p, pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"could not parse {str(p)!r} as CSV: {e}") from e


def _value_column(df, p: Path, column: str | None, exclude: str | None) -> tuple[np.ndarray, str]:
    import pandas as pd

    if column is None:
        column = "value" if "value" in df.columns and "value" != exclude else None
    if column is not None:
        if column not in df.columns:
            raise ValueError(f"{str(p)!r} has no column {column!r}; its columns are {list(df.columns)}")
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna()
        if bad.any():
            raise ValueError(f"column {column!r} of {str(p)!r} is not numeric: e.g. {df[column][bad].iloc[0]!r} "
                             f"in row {int(np.flatnonzero(bad.to_numpy())[0]) + 2}")
        return values.to_numpy(dtype=np.float64), str(column)
    numeric = [c for c in df.columns if c != exclude and pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    if not numeric:
        raise ValueError(f"{str(p)!r} has no numeric column (columns: {list(df.columns)}); add a 'value' column of numbers")
    column = numeric[-1]
    return df[column].to_numpy(dtype=np.float64), str(column)


def read_csv_series(path, column: str | None = None) -> tuple[np.ndarray, str]:
    """Read one series from a CSV file, ignoring timestamps (see :func:`read_csv_timeseries`).

    Takes the ``value`` column if there is one, else the last numeric column (or ``column`` if
    given).

    Returns:
        ``(values (T,), column_name)``; values may hold NaN (validate with :func:`as_series`).

    Raises:
        ValueError: missing file, unparsable CSV, no numeric column, or the named column absent.
    """
    p, df = _read_frame(path)
    return _value_column(df, p, column, exclude=None)
