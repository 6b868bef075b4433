"""Per-series model selection by rolling-origin validation inside the history.

For a history ``y`` of length ``T`` and horizon ``H``, fold ``j = 1 … folds`` fits every
candidate on ``y[:T − jH]`` and scores its median forecast of the next ``H`` values
``y[T − jH : T − (j − 1)H]`` by MASE (mean absolute error over the in-sample mean absolute
seasonal difference of the fold's training part, as ``utilsforecast.losses.mase``). A
candidate's validation error is its mean MASE over the folds; the forecast is the quantile-wise
mean of the ``top`` candidates with the lowest error, each refitted on the whole history
(``top=1``: the single best), or with ``weighting="inverse_error"`` the mean of all candidates
weighted by ``1 / error``. With ``median=True`` the quantile-wise median of all candidates (what
:class:`~fuse.forecast.ensemble.MedianEnsemble` forecasts) is one more candidate, validated on the
same folds from the same member forecasts. This is what ``statsforecast``'s ``cross_validation`` is used for,
done per series and per call. Only ``y`` is seen: no value after the cut-off can reach the choice.

``cache`` (a dict shared between forecasters) memoizes member forecasts by member, season,
horizon, samples, seed and the history's bytes, so that a benchmark that has already forecast
the same history with the same member (or a second selector with other settings) does not fit it
again; the forecasts are the same with or without it.
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, samples_from_quantiles
from fuse.forecast.ensemble import median_quantiles

logger = logging.getLogger(__name__)

#: Fold training parts shorter than this (or than two seasons) are not used.
MIN_TRAIN = 10
WEIGHTINGS = ("top", "inverse_error")


def fold_mase(train: np.ndarray, actual: np.ndarray, forecast: np.ndarray, season: int) -> float:
    """MASE of ``forecast`` against ``actual``, scaled by the mean absolute ``season``-lag difference of ``train``.

    Falls back to lag 1 when ``train`` has no full season difference; a zero scale (a constant
    training part) gives the raw mean absolute error over a tiny number instead of a division by zero.
    """
    train, actual, forecast = (np.asarray(a, dtype=np.float64) for a in (train, actual, forecast))
    m = season if train.size > season else 1
    scale = float(np.mean(np.abs(train[m:] - train[:-m]))) if train.size > m else 0.0
    return float(np.mean(np.abs(actual - forecast))) / max(scale, 1e-12)


def selection_weights(errors: np.ndarray, top: int = 2, weighting: str = "top") -> np.ndarray:
    """Combination weights ``(K,)`` from the candidates' validation errors ``(K,)``.

    ``weighting="top"``: equal weights on the ``top`` lowest errors (ties broken by order);
    ``"inverse_error"``: weights proportional to ``1 / error`` over all. Non-finite errors (a
    candidate that failed) get weight 0; if every error is non-finite, all get equal weights.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    e = np.asarray(errors, dtype=np.float64)
    ok = np.isfinite(e)
    w = np.zeros(e.size)
    if not ok.any():
        return np.full(e.size, 1.0 / e.size)
    if weighting == "top":
        order = [i for i in np.argsort(np.where(ok, e, np.inf), kind="stable") if ok[i]][:top]
        w[order] = 1.0 / len(order)
        return w
    inv = np.where(ok, 1.0 / np.maximum(e, 1e-12), 0.0)
    return inv / inv.sum()


def combine_quantiles(quantiles: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted quantile-wise mean ``(H, Q)`` of members' quantiles ``[(H, Q), …]``."""
    w = np.asarray(weights, dtype=np.float64)
    if len(quantiles) != w.size:
        raise ValueError(f"{len(quantiles)} forecasts but {w.size} weights")
    stack = np.stack([np.asarray(q, dtype=np.float64) for q in quantiles])
    used = w > 0
    return np.tensordot(w[used] / w[used].sum(), stack[used], axes=1)


def _mean_over_folds(errors: np.ndarray) -> np.ndarray:
    """Mean of ``(K, folds)`` errors over each candidate's finite folds (NaN where it has none)."""
    with np.errstate(all="ignore"):
        counts = np.isfinite(errors).sum(axis=1)
        return np.where(counts > 0, np.nansum(errors, axis=1) / np.maximum(counts, 1), np.nan)


def _key(member: Forecaster, y: np.ndarray, horizon: int, n_samples: int, seed: int) -> tuple:
    digest = hashlib.sha1(np.ascontiguousarray(y, dtype=np.float64).tobytes()).hexdigest()
    return (member.name, int(getattr(member, "season_length", 1)), int(horizon), int(n_samples), int(seed), digest)


def cached_forecast(member: Forecaster, y: np.ndarray, horizon: int, *, n_samples: int, seed: int,
                    cache: dict | None) -> tuple[Forecast, float]:
    """``member.predict(y, horizon)`` through ``cache``; returns the forecast and the seconds it took when made."""
    key = _key(member, y, horizon, n_samples, seed)
    if cache is not None and key in cache:
        return cache[key]
    t = time.perf_counter()
    fc = member.predict(y, horizon, n_samples=n_samples, seed=seed)
    out = (fc, time.perf_counter() - t)
    if cache is not None:
        cache[key] = out
    return out


class SelectForecaster(Forecaster):
    """Choose (or weight) candidate forecasters per series by rolling-origin validation on the history.

    Args:
        members: the candidate forecasters (at least two), each already given the season length.
        season_length: the season used to scale the validation MASE.
        folds: validation folds of one horizon each, cut from the end of the history (≥ 1).
        top: how many of the best candidates are averaged (``weighting="top"``).
        weighting: ``"top"`` or ``"inverse_error"``.
        median: also a candidate: the quantile-wise median of all members (as ``MedianEnsemble``),
            validated on the same folds from the same member forecasts.
        name: the forecaster's name.
        cache: optional dict memoizing member forecasts (see the module docstring).

    A fold whose training part is shorter than ``max(MIN_TRAIN, 2 · season_length)`` or a member's
    ``min_context`` is skipped for that member; with no usable fold at all the candidates are
    averaged with equal weights (logged). After :meth:`predict`, ``last_errors`` holds the
    candidates' validation errors (members in order, then the median when ``median``),
    ``last_weights`` the weights used and ``last_seconds`` the seconds the member forecasts took
    (validation and final, cached ones counted at their original cost).
    """

    def __init__(self, members: list[Forecaster], season_length: int = 1, *, folds: int = 2, top: int = 2,
                 weighting: str = "top", median: bool = False, name: str = "auto", cache: dict | None = None):
        if len(members) < 2:
            raise ValueError(f"selection needs at least two candidates, got {len(members)}")
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
            raise ValueError(f"folds must be a positive integer, got {folds!r}")
        n_candidates = len(members) + bool(median)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= n_candidates:
            raise ValueError(f"top must be an integer in 1..{n_candidates}, got {top!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.members = list(members)
        self.season_length = int(season_length)
        self.folds, self.top, self.weighting, self.median = folds, top, weighting, bool(median)
        self.name = name
        self.cache = cache
        self.min_context = min(m.min_context for m in self.members)
        self.last_errors = self.last_weights = None
        self.last_seconds = 0.0

    @property
    def candidate_names(self) -> list[str]:
        return [m.name for m in self.members] + (["median"] if self.median else [])

    def _member_quantiles(self, y, horizon, n_samples, seed, wanted=None, strict=False):
        """Member quantiles ``[(H, Q) or None]`` from history ``y`` (None: too short, not wanted, or failed)."""
        out, seconds = [], 0.0
        for i, m in enumerate(self.members):
            if (wanted is not None and not wanted[i]) or y.size < m.min_context:
                out.append(None)
                continue
            try:
                fc, sec = cached_forecast(m, y, horizon, n_samples=n_samples, seed=seed, cache=self.cache)
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as e:  # a member failing on a fold loses it
                if strict:
                    raise
                logger.info("%s: %s failed on a history of %d: %s", self.name, m.name, y.size, e)
                out.append(None)
                continue
            out.append(fc.quantiles)
            seconds += sec
        if self.median:
            got = [q for q in out if q is not None]
            out.append(median_quantiles(got) if got and (wanted is None or wanted[-1]) else None)
        return out, seconds

    def validation_errors(self, y: np.ndarray, horizon: int, *, n_samples: int = 20, seed: int = 0) -> np.ndarray:
        """Mean fold MASE per candidate ``(K,)`` (NaN where a candidate had no usable fold)."""
        return _mean_over_folds(self.fold_errors(y, horizon, n_samples=n_samples, seed=seed))

    def fold_errors(self, y: np.ndarray, horizon: int, *, n_samples: int = 20, seed: int = 0) -> np.ndarray:
        """MASE per candidate and fold ``(K, folds)``; NaN for a fold too short for a member (or where it failed).

        Fold ``j`` forecasts from ``y[:T − jH]`` only and is scored on ``y[T − jH : T − (j−1)H]``.
        """
        return self._fold_errors(y, horizon, n_samples, seed)[0]

    def _fold_errors(self, y, horizon, n_samples, seed) -> tuple[np.ndarray, float]:
        """:meth:`fold_errors` and the seconds its member forecasts took."""
        y = np.asarray(y, dtype=np.float64)
        need = max(MIN_TRAIN, 2 * self.season_length)
        errors = np.full((len(self.candidate_names), self.folds), np.nan)
        seconds = 0.0
        for j in range(1, self.folds + 1):
            cut = y.size - j * horizon
            if cut < need:
                break
            train, actual = y[:cut], y[cut:cut + horizon]
            qs, sec = self._member_quantiles(train, horizon, n_samples, seed)
            seconds += sec
            for i, q in enumerate(qs):
                if q is not None:
                    errors[i, j - 1] = fold_mase(train, actual, Forecast(q, QUANTILES).median, self.season_length)
        return errors, seconds

    def _predict(self, y, horizon, *, n_samples, seed, description):
        per_fold, validation_seconds = self._fold_errors(y, horizon, n_samples, seed)
        errors = _mean_over_folds(per_fold)
        if not np.isfinite(errors).any():
            logger.info("%s: history of %d too short to validate on; averaging all candidates", self.name, y.size)
        usable = np.array([y.size >= m.min_context for m in self.members] + ([True] if self.median else []))
        weights = selection_weights(np.where(usable, errors, np.nan), self.top, self.weighting)
        weights = np.where(usable, weights, 0.0)
        if weights.sum() <= 0:
            weights = usable / usable.sum()
        wanted = weights > 0
        if self.median and wanted[-1]:  # the median needs every member
            wanted[:-1] = True
        qs, seconds = self._member_quantiles(y, horizon, n_samples, seed, wanted=wanted, strict=True)
        q = combine_quantiles([np.zeros((horizon, len(QUANTILES))) if x is None else x for x in qs], weights)
        self.last_errors, self.last_weights, self.last_seconds = errors, weights, validation_seconds + seconds
        return Forecast(q, QUANTILES, samples_from_quantiles(q, QUANTILES, n_samples, seed))

    def __repr__(self) -> str:
        return (f"SelectForecaster(name={self.name!r}, members={[m.name for m in self.members]}, folds={self.folds}, "
                f"top={self.top}, weighting={self.weighting!r}, median={self.median})")

