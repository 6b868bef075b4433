"""Season lengths from frequencies and from data (fuse.forecast.seasonality)."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

from fuse.forecast.seasonality import (acf, check_season_length, infer_season_length, season_length_for_freq,
                                       seasonality_test)


@pytest.mark.parametrize("freq,m", [
    ("YS", 1), ("YE", 1), ("YS-JUL", 1), ("QS", 4), ("QS-OCT", 4), ("QE", 4), ("MS", 12), ("ME", 12), ("BMS", 12),
    ("W", 52), ("W-MON", 52), ("D", 7), ("B", 5), ("h", 24), ("2h", 12), ("30min", 48), ("15min", 96),
    ("min", 60), ("s", 60), ("3MS", 4), ("2D", 1), ("5h", 1), ("ms", 1),
])
def test_season_length_for_freq(freq, m):
    assert season_length_for_freq(freq) == m


def test_season_length_for_freq_rejects_unknown_alias():
    with pytest.raises(ValueError, match="unknown frequency 'fortnightly'"):
        season_length_for_freq("fortnightly")


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=5, max_size=60), st.integers(1, 4))
@settings(max_examples=60, deadline=None)
@example([0.0, 0.0, 0.0, 0.0, 7.182961196520547e-159], 1)  # found by hypothesis: z @ z underflowed to a subnormal
@example([4.728512438129169e-262] * 5, 1)  # found by hypothesis: the rounded mean of a constant series left residues
def test_acf_matches_direct_sum(values, lag):
    """Against the direct sum in exact rational arithmetic (floats squared underflow for tiny series: 1e-159)."""
    from fractions import Fraction

    y = np.asarray(values)
    lag = min(lag, y.size - 1)
    q = [Fraction(v) for v in values]
    mean = sum(q) / len(q)
    z = [v - mean for v in q]
    denom = sum(v * v for v in z)
    want = 0.0 if denom == 0 else float(sum(a * b for a, b in zip(z[:-lag], z[lag:])) / denom)
    assert acf(y, lag)[lag] == pytest.approx(want, abs=1e-9)
    if denom:
        assert acf(y, lag)[0] == pytest.approx(1.0)


def _seasonal(p, n, seed, noise=0.3):
    t = np.arange(n)
    return 0.05 * t + np.sin(2 * np.pi * t / p) + np.random.default_rng(seed).normal(0, noise, n)


@pytest.mark.parametrize("p", [4, 7, 12])
def test_infer_finds_short_periods_exactly(p):
    found = [infer_season_length(_seasonal(p, 6 * p + 12, seed)) for seed in range(10)]
    assert found == [p] * 10


@pytest.mark.parametrize("p", [24, 52])
def test_infer_finds_long_periods_within_four_percent(p):
    found = np.array([infer_season_length(_seasonal(p, 10 * p, seed)) for seed in range(10)])
    assert np.all(np.abs(found - p) <= 0.04 * p), found


@pytest.mark.parametrize("kind", ["white", "walk", "ar"])
def test_infer_rarely_sees_seasons_in_nonseasonal_series(kind):
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(100):
        e = rng.normal(size=300)
        y = {"white": e, "walk": np.cumsum(e), "ar": lfilter([1.0], [1.0, -0.8], e)}[kind]
        hits += infer_season_length(y) > 1
    assert hits <= 5  # the tests run at 10 %, Bonferroni-corrected: about 1 % in practice


def test_infer_edge_cases():
    assert infer_season_length(np.ones(50)) == 1  # constant
    assert infer_season_length(np.arange(50.0)) == 1  # a pure line
    assert infer_season_length(np.array([1.0, 2.0, 1.0, 2.0, 1.0])) == 1  # too short to see 3 seasons
    assert infer_season_length(_seasonal(12, 120, 0), max_period=6) <= 6  # never beyond max_period
    with pytest.raises(ValueError, match="finite"):
        infer_season_length(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="alpha"):
        infer_season_length(np.ones(10), alpha=1.5)
    with pytest.raises(ValueError, match="max_period"):
        infer_season_length(np.ones(10), max_period=1)


def test_seasonality_test_definition():
    y = _seasonal(12, 120, 0)
    r = acf(y, 12)
    limit = 1.6448536 * np.sqrt((1 + 2 * np.sum(r[1:12] ** 2)) / y.size)
    assert seasonality_test(y, 12) == (r[12] > limit)
    assert seasonality_test(y, 12) and not seasonality_test(np.random.default_rng(0).normal(size=120), 12)
    assert not seasonality_test(y[:30], 12)  # fewer than three seasons


def test_check_season_length():
    assert check_season_length(np.int64(4)) == 4
    for bad in (0, -2, 1.5, True, "12"):
        with pytest.raises(ValueError, match="season_length"):
            check_season_length(bad)
