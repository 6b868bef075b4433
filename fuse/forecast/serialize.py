"""Numbers as text, LLMTime-style (Gruver et al., 2023).

A history is affinely scaled (:class:`Scaler`), then each value is written with a fixed number
of decimals and no decimal point (``0.734 → "73"`` at ``precision=2``), values joined by a
separator: ``"73,81,-5,102"``. Tokenizers that split digits one by one (SmolLM2, Gemma, Llama)
then see one token per digit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SerializerConfig:
    """How numbers become text.

    Attributes:
        precision: decimals kept (values are rounded to ``10**-precision``).
        time_sep: text between time steps.
        minus: sign written before negative values.
        nan: text for a missing value, or ``None`` to refuse NaN.
        max_digits: longest digit string a single value may have when decoded; longer parses are
            clipped (guards against run-away generations).
    """

    precision: int = 2
    time_sep: str = ","
    minus: str = "-"
    nan: str | None = "NaN"
    max_digits: int = 6

    def __post_init__(self):
        if not 0 <= self.precision <= 8:
            raise ValueError(f"precision must be between 0 and 8, got {self.precision}")
        if not self.time_sep or any(c.isdigit() for c in self.time_sep) or self.minus in self.time_sep:
            raise ValueError(f"time_sep must be non-empty and contain no digit or minus sign, got {self.time_sep!r}")
        if self.max_digits < 1:
            raise ValueError(f"max_digits must be >= 1, got {self.max_digits}")


def serialize(values, config: SerializerConfig = SerializerConfig()) -> str:
    """Write already-scaled values as text.

    Args:
        values: 1-D array-like ``(T,)``.
        config: the format.

    Returns:
        the values joined by ``config.time_sep`` (no trailing separator).

    Raises:
        ValueError: on infinite values, on NaN when ``config.nan`` is None, or on values whose
            digit string would exceed ``config.max_digits``.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isinf(arr).any():
        raise ValueError("cannot serialize infinite values; scale the series or replace them with NaN")
    out = []
    limit = 10 ** config.max_digits
    for v in arr:
        if np.isnan(v):
            if config.nan is None:
                raise ValueError("the series contains NaN; interpolate it first or set SerializerConfig(nan='NaN')")
            out.append(config.nan)
            continue
        n = int(round(abs(v) * 10 ** config.precision))
        if n >= limit:
            raise ValueError(f"value {v!r} needs more than max_digits={config.max_digits} digits at precision "
                             f"{config.precision}; scale the series first (Scaler) or raise max_digits")
        out.append((config.minus if v < 0 and n != 0 else "") + str(n))
    return config.time_sep.join(out)


def deserialize(text: str, config: SerializerConfig = SerializerConfig(), horizon: int | None = None) -> np.ndarray:
    """Parse text written by :func:`serialize` (or generated in its format) back to floats.

    Parsing is tolerant: surrounding whitespace is ignored, a field that is not a number (or
    the NaN marker) becomes NaN, a trailing empty field is dropped, and at most ``horizon``
    values are returned.

    Returns:
        float64 ``(n,)`` with ``n <= horizon``.
    """
    fields = text.split(config.time_sep)
    if fields and not fields[-1].strip():
        fields = fields[:-1]
    if horizon is not None:
        fields = fields[:horizon]
    pattern = re.compile(r"^\s*(" + re.escape(config.minus) + r")?\s*(\d+)\s*$")
    vals = np.full(len(fields), np.nan)
    for i, f in enumerate(fields):
        m = pattern.match(f)
        if m is None:
            continue
        digits = m.group(2)[: config.max_digits]
        v = int(digits) / 10 ** config.precision
        vals[i] = -v if m.group(1) else v
    return vals


@dataclass
class Scaler:
    """LLMTime's affine scaling ``x → (x − offset) / scale`` fitted on a history.

    ``offset = min(x) − beta·(max(x) − min(x))`` and ``scale`` is the ``alpha``-quantile of
    ``x − offset``, so the history lies in ``[beta·r/scale, ~1]`` and is non-negative; with
    ``basic=True`` the offset is 0 and ``scale`` the ``alpha``-quantile of ``|x|``.
    """

    alpha: float = 0.95
    beta: float = 0.3
    basic: bool = False
    offset: float = 0.0
    scale: float = 1.0

    def fit(self, history) -> "Scaler":
        x = np.asarray(history, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise ValueError("Scaler.fit: the history has no finite values")
        if self.basic:
            self.offset = 0.0
            q = np.quantile(np.abs(x), self.alpha)
        else:
            self.offset = float(x.min() - self.beta * (x.max() - x.min()))
            q = np.quantile(x - self.offset, self.alpha)
        self.scale = float(q) if q > 1e-12 else 1.0
        return self

    def transform(self, x) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.offset) / self.scale

    def inverse(self, z) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.scale + self.offset
