"""Timestamps of a series: finding the date column, inferring and checking the frequency, and
dating the future steps.

A regular index (one observation per period, no duplicates) is what every forecaster assumes.
:func:`regular_index` checks that; it infers the frequency with :func:`pandas.infer_freq`, or,
when the user names a frequency, places the observations on that grid and leaves missing steps
as NaN (interpolated later by :func:`~fuse.forecast.series.as_series`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Column names taken as the time column when present (case-insensitive), before any other column is tried.
DATE_NAMES = ("date", "ds", "timestamp", "time", "datetime", "period", "month", "week", "day", "year", "quarter")


@dataclass
class RegularSeries:
    """Values on a regular time grid.

    Attributes:
        values: ``(T,)`` float64, NaN where a step of the grid had no observation.
        dates: the grid, a :class:`pandas.DatetimeIndex` of length ``T``.
        freq: the pandas frequency alias of the grid (e.g. ``"MS"``, ``"QS-OCT"``, ``"D"``, ``"h"``).
    """

    values: np.ndarray
    dates: "object"
    freq: str


def _looks_like_year(s) -> bool:
    import pandas as pd

    if not pd.api.types.is_integer_dtype(s) and not (pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all()):
        return False
    v = s.dropna()
    return len(v) > 0 and bool(((v >= 1000) & (v <= 2999)).all())


def parse_dates(s, name: str = "date"):
    """Parse one column as timestamps; ``None`` when it is not a date column.

    Strings and datetimes parse with :func:`pandas.to_datetime`; integers from 1000 to 2999 in a
    column named like a year are years; other numbers are not dates.
    """
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s):
        return pd.DatetimeIndex(s)
    if pd.api.types.is_bool_dtype(s):
        return None
    if pd.api.types.is_numeric_dtype(s):
        if name.lower() in ("year", "yr") and _looks_like_year(s):
            return pd.DatetimeIndex(pd.to_datetime(s.astype("Int64").astype(str), format="%Y", errors="coerce"))
        return None
    text = s.astype(str).str.strip()
    if text.str.fullmatch(r"[-+]?\d+(\.\d+)?").all():  # numbers stored as text are values, not dates
        return None
    try:
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        return None
    if parsed.isna().any():
        return None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DatetimeIndex(parsed)


def find_date_column(df, *, exclude: tuple[str, ...] = ()) -> str | None:
    """The name of the column holding timestamps, or ``None``.

    Columns named like a time (:data:`DATE_NAMES`) are tried first, then every other
    non-numeric column; the first that parses entirely as timestamps wins.
    """
    cols = [c for c in df.columns if c not in exclude]
    named = [c for c in cols if str(c).strip().lower() in DATE_NAMES]
    others = [c for c in cols if c not in named]
    for c in named + others:
        if parse_dates(df[c], str(c)) is not None:
            return c
    return None


def _ts(t) -> str:
    """A timestamp as text: the date alone at midnight."""
    return t.date().isoformat() if t == t.normalize() else t.isoformat(sep=" ")


def _describe_gaps(dates) -> str:
    """Where an index stops being regular, in words (for the error message)."""
    import pandas as pd

    guess = None
    for k in (5, 4, 3):
        if dates.size >= k:
            try:
                guess = pd.infer_freq(dates[:k])
            except (ValueError, TypeError):
                guess = None
            if guess:
                break
    if guess:
        grid = pd.date_range(dates[0], dates[-1], freq=guess)
        n = min(grid.size, dates.size)
        bad = np.flatnonzero(grid[:n] != dates[:n])
        i = int(bad[0]) if bad.size else n
        off = int((~dates.isin(grid)).sum())
        missing = int((~grid.isin(dates)).sum())
        where = (f"row {i + 1} is {_ts(dates[i])} where {_ts(grid[i])} was due" if i < dates.size and i < grid.size
                 else f"the rows end at {_ts(dates[-1])}")
        return (f"they start at frequency {guess!r}, but {where}; {missing} step(s) of that grid are missing and "
                f"{off} timestamp(s) lie off it (pass --freq {guess} to interpolate the missing steps)")
    d = pd.Series(dates).diff().iloc[1:]
    common = d.mode().iloc[0]
    odd = np.flatnonzero((d != common).to_numpy())
    i = int(odd[0]) + 1
    return (f"most steps are {common} apart, but row {i + 1} ({_ts(dates[i])}) comes {d.iloc[i - 1]} after row {i} "
            f"({_ts(dates[i - 1])}); {len(odd)} step(s) differ")


def regular_index(dates, values, freq: str | None = None) -> RegularSeries:
    """Check that ``dates`` form a regular grid and return the series on it.

    Args:
        dates: timestamps ``(T,)`` (any order; they are sorted, with ``values``).
        values: ``(T,)`` observations.
        freq: a pandas frequency alias to use instead of inferring one. The observations are
            placed on the grid from the first to the last timestamp; steps without one become NaN.

    Raises:
        ValueError: duplicated timestamps, fewer than 3 timestamps without ``freq``, an irregular
            index without ``freq`` (naming the first odd step), timestamps off the ``freq`` grid, or
            an unknown ``freq``.
    """
    import pandas as pd

    idx = pd.DatetimeIndex(dates)
    v = np.asarray(values, dtype=np.float64)
    if idx.size != v.size:
        raise ValueError(f"{idx.size} timestamps for {v.size} values")
    if idx.hasnans:
        raise ValueError("the date column has missing timestamps; fill them or drop those rows")
    dup = idx.duplicated()
    if dup.any():
        raise ValueError(f"the date column has duplicated timestamps, e.g. {_ts(idx[dup][0])} ({int(dup.sum())} repeated); "
                         "keep one row per time step (aggregate the duplicates first)")
    if not idx.is_monotonic_increasing:
        logger.info("sorting %d rows by their timestamps", idx.size)
        order = np.argsort(idx.asi8, kind="stable")
        idx, v = idx[order], v[order]
    if freq is not None:
        try:
            grid = pd.date_range(idx[0], idx[-1], freq=freq)
        except (ValueError, TypeError) as e:
            raise ValueError(f"unknown frequency {freq!r}; use a pandas alias such as 'D', 'W', 'MS', 'QS', 'YS' or 'h' ({e})") from e
        off = ~idx.isin(grid)
        if off.any():
            raise ValueError(f"timestamp {_ts(idx[off][0])} is not on the {freq!r} grid starting at {_ts(idx[0])}; "
                             f"{int(off.sum())} timestamp(s) are off it (check --freq, e.g. 'MS' for month starts, 'ME' for month ends)")
        missing = grid.size - idx.size
        if missing:
            logger.info("%d missing step(s) of the %r grid left as NaN (interpolated)", missing, freq)
        full = pd.Series(v, index=idx).reindex(grid)
        return RegularSeries(full.to_numpy(dtype=np.float64), grid, _alias(grid.freq, freq))
    if idx.size < 3:
        raise ValueError(f"cannot infer a frequency from {idx.size} timestamps; pass --freq (e.g. 'MS' or 'D')")
    inferred = pd.infer_freq(idx)
    if inferred is None:
        raise ValueError(f"the timestamps are irregular: {_describe_gaps(idx)}. Fix the file, or pass --freq "
                         "to place the rows on a regular grid (missing steps are interpolated; off-grid rows are an error)")
    return RegularSeries(v, pd.DatetimeIndex(idx.to_numpy(), freq=inferred), inferred)


def _alias(offset, fallback: str) -> str:
    return getattr(offset, "freqstr", None) or fallback


def future_dates(dates, freq: str, horizon: int):
    """The ``horizon`` timestamps after the last of ``dates`` on the ``freq`` grid."""
    import pandas as pd

    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return pd.date_range(pd.DatetimeIndex(dates)[-1], periods=horizon + 1, freq=freq)[1:]


def format_dates(dates, freq: str) -> list[str]:
    """Timestamps as ISO text: the date alone for daily and coarser grids at midnight, else date and time."""
    import pandas as pd

    idx = pd.DatetimeIndex(dates)
    off = pd.tseries.frequencies.to_offset(freq)
    sub_daily = (isinstance(off, pd.tseries.offsets.Tick) and pd.Timedelta(off) < pd.Timedelta(days=1)) or \
        bool((idx.normalize() != idx).any())
    return [d.isoformat(sep=" ") if sub_daily else d.date().isoformat() for d in idx]
