"""Per-series selection by rolling-origin validation (fuse.forecast.select, the default ``auto``)."""

import numpy as np
import pytest

from fuse.forecast import QUANTILES, Forecast, Forecaster, get_forecaster
from fuse.forecast.registry import AUTO_CANDIDATES, AUTO_MAX_ARIMA_SEASON, AUTO_SETTINGS, DEFAULT_MODEL
from fuse.forecast.select import (SelectForecaster, combine_quantiles, fold_mase, selection_weights)

TOL = 1e-12


class MeanForecaster(Forecaster):
    """The history's mean, flat; every call's history recorded (``seen``)."""

    min_context = 2

    def __init__(self, name="mean"):
        self.name, self.seen = name, []

    def _predict(self, y, horizon, *, n_samples, seed, description):
        self.seen.append(y.copy())
        q = np.full((horizon, len(QUANTILES)), y.mean()) + np.linspace(-1, 1, len(QUANTILES))
        return Forecast(q, QUANTILES)


class SeasonalRepeat(MeanForecaster):
    """The last season repeated (a seasonal naive), plus ``offset``; records its histories too."""

    def __init__(self, m, name="repeat", offset=0.0):
        super().__init__(name)
        self.season_length, self.offset = m, offset

    def _predict(self, y, horizon, *, n_samples, seed, description):
        self.seen.append(y.copy())
        med = np.resize(y[-self.season_length:], horizon) + self.offset
        return Forecast(med[:, None] + np.linspace(-1, 1, len(QUANTILES)), QUANTILES)


def _seasonal(n, m=12, noise=0.05, seed=0):
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / m) + noise * np.random.default_rng(seed).standard_normal(n)


# -- the choice follows the validation error -----------------------------------------------------------
def test_picks_the_obviously_right_model_both_ways():
    # a clean yearly cycle: repeating the last season is right, the mean is far off
    sel = SelectForecaster([MeanForecaster(), SeasonalRepeat(12)], 12, folds=2, top=1)
    sel.predict(_seasonal(120), 12)
    assert sel.last_errors[1] < 1.5 < 10 < sel.last_errors[0]  # MASE ~1: repeating the season is the scale itself
    np.testing.assert_allclose(sel.last_weights, [0.0, 1.0], atol=TOL)
    # white noise around a level: the mean is right, repeating last season's noise is worse
    noise = 5 + np.random.default_rng(1).standard_normal(120)
    sel = SelectForecaster([MeanForecaster(), SeasonalRepeat(12)], 12, folds=2, top=1)
    fc = sel.predict(noise, 12)
    assert sel.last_errors[0] < sel.last_errors[1]
    np.testing.assert_allclose(sel.last_weights, [1.0, 0.0], atol=TOL)
    np.testing.assert_allclose(fc.median, np.full(12, noise.mean()), atol=1e-9)  # refitted on the whole history


def test_the_median_candidate_wins_when_the_members_err_both_ways():
    # one member a unit too high, one a unit too low: their median (= mean of two) is exactly right
    hi, lo = SeasonalRepeat(12, "hi", offset=1.0), SeasonalRepeat(12, "lo", offset=-1.0)
    y = _seasonal(120)
    sel = SelectForecaster([hi, lo], 12, folds=2, top=1, median=True)
    fc = sel.predict(y, 12)
    assert sel.candidate_names == ["hi", "lo", "median"]
    assert sel.last_errors[2] < 2 < 10 < min(sel.last_errors[:2])  # noise-level MASE vs a unit off
    np.testing.assert_allclose(sel.last_weights, [0, 0, 1])
    np.testing.assert_allclose(fc.median, y[-12:], atol=1e-9)
    without = SelectForecaster([SeasonalRepeat(12, "hi", 1.0), SeasonalRepeat(12, "lo", -1.0)], 12, folds=2, top=1)
    without.predict(y, 12)
    assert without.last_errors.shape == (2,)


def test_fold_errors_are_the_mase_of_each_fold_by_hand():
    y, h, m = _seasonal(60, 4, noise=0.3), 5, 4
    mean = MeanForecaster()
    sel = SelectForecaster([mean, SeasonalRepeat(m)], m, folds=2, top=1)
    err = sel.fold_errors(y, h)
    for j in (1, 2):
        train, actual = y[:60 - j * h], y[60 - j * h:60 - (j - 1) * h]
        want = np.mean(np.abs(actual - train.mean())) / np.mean(np.abs(train[m:] - train[:-m]))
        assert abs(err[0, j - 1] - want) < 1e-12
    np.testing.assert_allclose(sel.validation_errors(y, h), err.mean(axis=1), rtol=1e-12)


def test_weights_and_combination():
    np.testing.assert_allclose(selection_weights([0.5, 0.2, 0.9], top=1), [0, 1, 0])
    np.testing.assert_allclose(selection_weights([0.5, 0.2, 0.9], top=2), [0.5, 0.5, 0])
    np.testing.assert_allclose(selection_weights([0.5, np.nan, 0.9], top=2), [0.5, 0, 0.5])
    np.testing.assert_allclose(selection_weights([1.0, 0.5], weighting="inverse_error"), [1 / 3, 2 / 3])
    np.testing.assert_allclose(selection_weights([np.nan, np.nan]), [0.5, 0.5])
    q1, q2 = np.zeros((3, 9)), np.ones((3, 9))
    np.testing.assert_allclose(combine_quantiles([q1, q2], np.array([0.25, 0.75])), np.full((3, 9), 0.75))
    np.testing.assert_allclose(combine_quantiles([q1, q2 * np.nan], np.array([1.0, 0.0])), q1)  # a zero weight is never read
    assert fold_mase([1.0, 2.0, 3.0], [4.0, 5.0], [4.0, 6.0], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="weighting"):
        selection_weights([1.0], weighting="best")


def test_invalid_settings_raise():
    two = [MeanForecaster(), SeasonalRepeat(4)]
    with pytest.raises(ValueError, match="two candidates"):
        SelectForecaster(two[:1])
    with pytest.raises(ValueError, match="folds"):
        SelectForecaster(two, folds=0)
    with pytest.raises(ValueError, match="top"):
        SelectForecaster(two, top=3)
    with pytest.raises(ValueError, match="weighting"):
        SelectForecaster(two, weighting="median")


def test_short_history_averages_all_candidates():
    sel = SelectForecaster([MeanForecaster(), SeasonalRepeat(12)], 12, folds=2, top=1)
    sel.predict(_seasonal(20), 6)  # 20 − 6 < two seasons: no fold
    assert np.isnan(sel.last_errors).all()
    np.testing.assert_allclose(sel.last_weights, [0.5, 0.5])


# -- no look-ahead ---------------------------------------------------------------------------------------
def test_each_fold_sees_only_its_own_past():
    mean, rep = MeanForecaster(), SeasonalRepeat(4)
    y, h = _seasonal(60, 4), 6
    SelectForecaster([mean, rep], 4, folds=2, top=1).predict(y, h)
    # fold 1 on y[:54], fold 2 on y[:48], then only the chosen one refitted on all 60: prefixes, nothing else
    assert [s.size for s in mean.seen] == [54, 48] and [s.size for s in rep.seen] == [54, 48, 60]
    for s in mean.seen + rep.seen:
        np.testing.assert_array_equal(s, y[:s.size])


def test_perturbing_values_after_a_cutoff_changes_nothing_before_it():
    y, h = _seasonal(96, 12, noise=0.5), 12
    rng = np.random.default_rng(3)
    make = lambda: SelectForecaster([MeanForecaster(), SeasonalRepeat(12)], 12, folds=2, top=1)  # noqa: E731
    # fold 2 trains on y[:72] and is scored on y[72:84]: what comes after (fold 1's target) cannot move it
    z = y.copy()
    z[84:] += 100 * rng.standard_normal(12)
    e_y, e_z = make().fold_errors(y, h), make().fold_errors(z, h)
    np.testing.assert_array_equal(e_y[:, 1], e_z[:, 1])
    assert not np.allclose(e_y[:, 0], e_z[:, 0])  # fold 1 does see them (they are its target)
    # a forecast from a cut-off never depends on the values after it (the benchmark's windows)
    cut = 84
    a, b = make(), make()
    fa = a.predict(y[:cut], h, seed=0)
    fb = b.predict(z[:cut], h, seed=0)
    np.testing.assert_array_equal(fa.quantiles, fb.quantiles)
    np.testing.assert_array_equal(a.last_weights, b.last_weights)


# -- cache -----------------------------------------------------------------------------------------------
def test_cache_changes_no_forecast_and_saves_the_refits():
    y, h = _seasonal(80, 4, noise=0.3), 4
    plain = SelectForecaster([MeanForecaster(), SeasonalRepeat(4)], 4, folds=2, top=2).predict(y, h)
    cache = {}
    mean, rep = MeanForecaster(), SeasonalRepeat(4)
    first = SelectForecaster([mean, rep], 4, folds=2, top=2, cache=cache).predict(y, h)
    again = SelectForecaster([mean, rep], 4, folds=1, top=1, cache=cache).predict(y, h)  # all of it already cached
    np.testing.assert_array_equal(plain.quantiles, first.quantiles)
    assert len(mean.seen) == 3 and len(cache) == 6
    assert again.quantiles.shape == (h, len(QUANTILES))


# -- the registered default --------------------------------------------------------------------------------
def test_registered_auto_is_the_measured_selector_with_real_members():
    f = get_forecaster("auto", season_length=4)
    assert isinstance(f, SelectForecaster) and f.name == "auto"
    assert [m.name for m in f.members] == list(AUTO_CANDIDATES)
    assert {"folds": f.folds, "top": f.top, "weighting": f.weighting, "median": f.median} == AUTO_SETTINGS
    assert all(m.season_length == 4 for m in f.members) and f.season_length == 4
    y = _seasonal(48, 4, noise=0.2)
    fc = f.predict(y, 4, seed=0)
    assert fc.quantiles.shape == (4, 9) and np.all(np.diff(fc.quantiles, axis=1) >= 0)
    assert abs(f.last_weights.sum() - 1) < TOL and np.isfinite(f.last_errors).all()
    assert DEFAULT_MODEL == "auto"
    # the benchmark measured exactly this: its chosen variant's settings are the registered ones
    from benchmarks.forecasting import SELECTORS, default_selector

    assert SELECTORS[default_selector()] == AUTO_SETTINGS


def test_auto_leaves_arima_out_above_season_24():
    assert [m.name for m in get_forecaster("auto", season_length=AUTO_MAX_ARIMA_SEASON).members] == list(AUTO_CANDIDATES)
    slow = get_forecaster("auto", season_length=52)
    assert "auto_arima" not in [m.name for m in slow.members] and len(slow.members) == len(AUTO_CANDIDATES) - 1
